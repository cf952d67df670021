"""The command-line tools given careless input: each ends in one line, ``error: ...`` naming what
to fix, and status 1, before any work; never a traceback (RELIABILITY.md, "Careless input")."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO
from PIL import Image


def run_tool(tool, *args):
    cmd = [sys.executable, str(REPO / "experiments" / f"{tool}.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)


def assert_refused(done, message):
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert message in done.stderr, done.stderr[-2000:]


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory):
    """testA/ with x.png and x.jpg (one stem), and testB/ with one usable photo."""
    root = tmp_path_factory.mktemp("root")
    for domain in "AB":
        (root / f"test{domain}").mkdir()
        (root / f"test{domain}_seg").mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / f"test{domain}" / "x.png")
        Image.fromarray(np.full((8, 8), 255, np.uint8)).save(root / f"test{domain}_seg" / "x_0.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "testA" / "x.jpg")
    return root


@pytest.mark.parametrize(
    "args, message",
    [
        (["--load_size=abc,4"], "error: --load_size must be two integers H,W, got 'abc,4'"),
        (["--ins_max=0"], "flag --ins_max=0: 0 is not an integer in the range [1, 256]"),
        (["--direction=BtoA", "--load_size=40000,40000"], "translating 40000x40000 pixels needs at least"),
        (["--direction=AtoB"], "share the name 'x'"),
        (
            ["--masks=auto", "--masker_workdir=/no/such/run", "--masker_scale=big"],
            "error: masker scale must be 'auto' or a number, got 'big'",
        ),
    ],
)
def test_translate_refuses_careless_input_in_one_line(converted_workdir, dataroot, tmp_path, args, message):
    """A few of the refusals end to end (the rules themselves are tested in-process in test_careless_input.py)."""
    done = run_tool("translate", f"--workdir={converted_workdir}", f"--dataroot={dataroot}",
                    f"--output_dir={tmp_path / 'out'}", *args)  # fmt: skip
    assert_refused(done, message)
    if "share the name" in message:  # x.png and x.jpg: refused before any output was written
        assert "x.jpg" in done.stderr and "x.png" in done.stderr
        assert not os.path.exists(tmp_path / "out" / "x_fake_B_img.png")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config=/no/such/config.py"], r"error: --config cannot be loaded: (.|\n)*No such file or directory"),
        (["--config=experiments/configs/tiny.py", "--config.no_such_key=1"],
         "error: the config .* cannot be loaded: AttributeError: .*no_such_key"),
        (["--config=experiments/configs/tiny.py", "--config.init_from=/no/such/run"],
         "error: no checkpoints under /no/such/run/checkpoints"),
        (["--config=experiments/configs/tiny.py", "--config.max_checkpoints_to_keep=0"],
         r"error: config.max_checkpoints_to_keep must be an integer in \[1, 1000000\], got 0"),
    ],
)  # fmt: skip
def test_a_config_that_cannot_be_loaded_or_keeps_no_checkpoint_ends_in_one_line(tmp_path, args, message):
    done = run_tool("train", f"--workdir={tmp_path / 'run'}", *args)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert re.search(message, done.stderr), done.stderr[-2000:]
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_evaluate_refuses_no_examples_and_a_folder_as_its_json(converted_workdir, tmp_path):
    assert_refused(run_tool("evaluate", f"--workdir={converted_workdir}", "--num_examples=0"),
                   "flag --num_examples=0: 0 is not an integer in the range [1, 100000]")  # fmt: skip
    done = run_tool("evaluate", f"--workdir={converted_workdir}", f"--json={tmp_path}", f"--out_dir={tmp_path}")
    assert_refused(done, f"error: --json {tmp_path} is a folder; give a file name")


def test_converting_into_a_workdir_with_checkpoints_is_refused(converted_workdir, golden_dir):
    done = run_tool("convert_torch", f"--checkpoint_dir={golden_dir}", f"--workdir={converted_workdir}")
    assert_refused(done, f"error: --workdir {converted_workdir} already holds checkpoints")
