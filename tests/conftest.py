"""Shared fixtures: the golden networks converted from the authors' code, tiny sizes, CPU."""

import os
import pathlib

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Compilation is most of the suite's time and the programs run only a few steps: compile with
# less optimisation (a third faster for the tiny train step, 33 -> 21-24 s; the same numbers up
# to float rounding). In XLA_FLAGS, so the command-line tools that tests start inherit it.
# INSTAGAN_TEST_COMPILER=production (test_production_compiler.py) runs tests as users' programs
# are compiled instead: full optimisation, default precision.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
PRODUCTION = os.environ.get("INSTAGAN_TEST_COMPILER") == "production"
if not PRODUCTION:
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

if not PRODUCTION:  # comparisons against PyTorch need full-precision matmuls and convolutions
    jax.config.update("jax_default_matmul_precision", "highest")
# Training runs of the same tiny shapes recompile the same step: share compilations through
# a persistent cache (between the xdist workers too) instead of paying each time.
CACHE_ROOT = pathlib.Path(__file__).parents[1] / ".pytest_cache"
jax.config.update("jax_compilation_cache_dir", str(CACHE_ROOT / "jax"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)
# The command-line tools that tests start (train.py restarted after a kill, evaluate.py, the
# demo) share theirs in the repository too, not in the user's ~/.cache (see cli.py).
os.environ.setdefault("INSTAGAN_JAX_COMPILATION_CACHE", str(CACHE_ROOT / "jax-cli"))

GOLDEN_DIR = pathlib.Path(__file__).parent / "data" / "golden"


def pytest_report_header(config):
    flags, precision = os.environ.get("XLA_FLAGS", ""), jax.config.jax_default_matmul_precision
    return f"compiler: {'production' if PRODUCTION else 'fast'} (XLA_FLAGS={flags!r}, matmul precision {precision})"


@pytest.fixture(scope="session")
def golden_dir() -> pathlib.Path:
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def converted():
    """(ModelSpec, {G_A, G_B, D_A, D_B: variables}) of the golden InstaGAN (ngf 4, ndf 4)."""
    from instagan_jax.torch_import import convert_checkpoint_dir

    return convert_checkpoint_dir(str(GOLDEN_DIR))


@pytest.fixture(scope="session")
def converted_workdir(tmp_path_factory, converted) -> str:
    from instagan_jax import checkpoint

    workdir = str(tmp_path_factory.mktemp("converted"))
    checkpoint.save_networks(workdir, *converted)
    return workdir


@pytest.fixture(scope="session")
def masker_workdir(tmp_path_factory) -> pathlib.Path:
    """ROOT/run: a masker (width 4, one block) trained 2 steps on the tiny shapes set."""
    from helpers import masker_config

    from instagan_jax import masker_train

    root = tmp_path_factory.mktemp("masker")
    masker_train.train_masker(masker_config(root, num_train_steps=2), str(root / "run"))
    return root


@pytest.fixture(scope="session")
def inception_torch_shapes() -> dict[str, tuple[int, ...]]:
    """The tensors of pytorch-fid's Inception network, as its own model lists them."""
    import inception_weights

    return inception_weights.torch_shapes()


@pytest.fixture(scope="session")
def seeded_inception(tmp_path_factory) -> str:
    """Seeded stand-ins for pytorch-fid's weights, as a torch 0.4-1.5 .pth (the real file's format)."""
    import inception_weights

    path = tmp_path_factory.mktemp("inception") / "seeded_inception.pth"
    inception_weights.write_seeded_weights(path)
    return str(path)
