"""JSON files: read as untrusted input, written so that a crash never leaves half a file.

Annotation files, evaluation reports and a study's notes come from elsewhere or from a run
that may have been killed. ``read_json`` ends in the content or a DataError naming the
file (never a hang on a FIFO, never a crash on deep nesting); ``write_json`` writes a
temporary file beside the target and renames it over the target, so a reader sees the old
file or the new one, whole (``write_whole`` does the same for any file).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from typing import IO

from instagan_jax import checks
from instagan_jax.image_io import DataError

MAX_JSON_BYTES = 256 * 2**20  # annotation files for a folder of photos are far smaller


def read_json(path: str):
    """A JSON file's content, or DataError naming it (not a regular file, too large, malformed)."""
    size = checks.regular_file_size(path, DataError)
    if size > MAX_JSON_BYTES:
        raise DataError(f"{path}: {size} bytes is over the limit of {MAX_JSON_BYTES} (MAX_JSON_BYTES)")
    try:
        with open(path, "rb") as f:
            return json.loads(f.read(MAX_JSON_BYTES + 1), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number")


def write_json(path: str, content, indent: int | None = None) -> None:
    """Writes ``content`` to ``path`` whole or not at all (a temporary file renamed over it)."""
    write_whole(path, lambda f: json.dump(content, f, indent=indent))


def write_whole(path: str, write: Callable[[IO], None], binary: bool = False) -> None:
    """Calls ``write`` on a temporary file beside ``path``, then renames it over ``path``: a crash
    leaves the old file or the new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    mode = "wb" if binary else "w"
    with tempfile.NamedTemporaryFile(mode, dir=folder, prefix=f".{os.path.basename(path)}.", delete=False) as f:
        try:
            os.chmod(f.name, _mode_of_a_plain_write(path))  # a temporary file is private (0600)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            f.close()
            os.unlink(f.name)
            raise
    os.replace(f.name, path)


def _mode_of_a_plain_write(path: str) -> int:
    """The permissions ``open(path, "w")`` would leave: the file's own if it exists, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # the only way to read it is to set it
        os.umask(umask)
        return 0o666 & ~umask
