"""The README's and docs' links lead somewhere (every relative target exists, every #anchor is a heading),
and their commands name scripts, flags and config keys that exist (read from the scripts' flag definitions).
"""

import functools
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "RELIABILITY.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)


@functools.cache
def _anchors(path: pathlib.Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens (each file read once)."""
    headings = re.findall(r"^#+ (.+)$", CODE_BLOCK.sub("", path.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document):
    broken = []
    for target in LINK.findall(CODE_BLOCK.sub("", document.read_text())):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(target)
    assert not broken, f"{document.relative_to(ROOT)}: links to nothing: {broken}"


COMMAND = re.compile(r"(?:^|&&\s*|\s)(?:python3?|\S+/bin/python|bash)\s+((?:experiments|benchmarks|tests)/\S+)")
FLAG = re.compile(r"\s--([\w.]+)")
DEFINED = re.compile(r"""(?:DEFINE_\w+\(\s*|add_argument\(\s*"--)"?(\w+)""")


def _commands(document: pathlib.Path):
    """(script, flags, config file) of every command line in the code blocks, continuation lines joined."""
    for block in CODE_BLOCK.findall(document.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0]
            for match in COMMAND.finditer(line):
                rest = " " + line[match.end() :].split("&&")[0]
                config = re.search(r"\s--config[= ](\S+\.py)", rest)
                yield match.group(1), FLAG.findall(rest), config.group(1) if config else None


@functools.cache
def _config_keys(config_file: str) -> set[str]:
    import runpy
    import sys

    sys.path.insert(0, str(ROOT / "experiments"))  # where train.py runs them from: `from configs import ...`
    try:
        return set(runpy.run_path(str(ROOT / config_file))["get_config"]().keys())
    finally:
        sys.path.remove(str(ROOT / "experiments"))


def _defined_flags(script: pathlib.Path) -> set[str]:
    """The flags a script defines, and those of the modules beside it that it imports (shared flags)."""
    source = script.read_text()
    siblings = re.findall(r"^(?:from|import) (\w+)", source, re.MULTILINE)
    sources = [source] + [(script.parent / f"{name}.py").read_text() for name in siblings
                          if (script.parent / f"{name}.py").is_file()]  # fmt: skip
    return {name for text in sources for name in DEFINED.findall(text)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_names_a_script_and_flags_it_has(document):
    wrong = []
    for script, flags, config_file in _commands(document):
        path = ROOT / script
        if not path.is_file():
            wrong.append(f"{script}: no such file")
            continue
        if path.suffix != ".py":
            continue
        defined = _defined_flags(path) | {"helpfull", "help", "config"}
        config_file = config_file or "experiments/configs/default.py"
        if not (ROOT / config_file).is_file():
            wrong.append(f"{script}: no config file {config_file}")
            continue
        for flag in flags:
            name = flag.split("=")[0]
            if name.startswith("config."):
                if name.split(".")[1] not in _config_keys(config_file):
                    wrong.append(f"{script}: --{name} is not a key of {config_file}")
            elif name not in defined and not (name.startswith("no") and name[2:] in defined):
                wrong.append(f"{script}: no flag --{name}")
    assert not wrong, f"{document.relative_to(ROOT)}: {wrong}"
