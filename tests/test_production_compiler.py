"""The suite compiles with XLA's optimisation off and the highest matmul precision (conftest.py),
for speed and for the comparisons against PyTorch. Users' programs are compiled with neither:
the golden train step and an exact resume, again under the settings users get."""

import os
import subprocess
import sys

import pytest
from helpers import REPO

UNDER_PRODUCTION_SETTINGS = [
    "tests/test_train_step.py::test_one_step_matches_the_reference[cpu]",
    "tests/test_train.py::test_resume_continues_exactly_like_an_uninterrupted_run",
]


@pytest.mark.slow
def test_the_golden_step_and_an_exact_resume_hold_as_users_compile_them():
    fast = ("--xla_backend_optimization_level", "--xla_llvm_disable_expensive_passes")  # conftest's
    xla_flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(fast))
    env = {**os.environ, "INSTAGAN_TEST_COMPILER": "production", "XLA_FLAGS": xla_flags}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", *UNDER_PRODUCTION_SETTINGS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:]
    assert f"compiler: production (XLA_FLAGS={xla_flags!r}, matmul precision None)" in done.stdout, done.stdout[:2000]
    assert f"{len(UNDER_PRODUCTION_SETTINGS)} passed" in done.stdout, done.stdout[-2000:]
