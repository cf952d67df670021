"""What every command-line tool does around its main: keep compiled programs on disk, and end
bad input in one line, ``error: <message naming the file>``, exit status 1.

Input errors are the user's to fix and their messages say what and where; a traceback
through orbax or PIL would only hide that. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys

import jax
from absl import app, logging

from instagan_jax import divergence, stopping
from instagan_jax.checkpoint import CheckpointError, CheckpointWriteError
from instagan_jax.checks import InputError
from instagan_jax.image_io import DataError
from instagan_jax.torch_import import NotInstaGANError
from instagan_jax.torch_pickle import TorchFileError

INPUT_ERRORS = (CheckpointError, DataError, InputError, NotInstaGANError, TorchFileError, FileNotFoundError)


CACHE_VARIABLE = "INSTAGAN_JAX_COMPILATION_CACHE"


def enable_compilation_cache() -> str | None:
    """JAX's persistent compilation cache, so that a second start of the same step skips compiling.

    The folder is $INSTAGAN_JAX_COMPILATION_CACHE (empty: off), by default
    ~/.cache/instagan_jax/xla; returns it (None when off).
    """
    folder = os.environ.get(CACHE_VARIABLE, os.path.join(os.path.expanduser("~"), ".cache", "instagan_jax", "xla"))
    if not folder:
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return folder


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, where a config file that cannot be loaded (missing, not Python, an
    override of a key it lacks) ends in one line and status 1 instead of a traceback."""
    try:
        return app.parse_flags_with_usage(argv)
    except (OSError, SyntaxError, AttributeError, KeyError, TypeError, ValueError) as e:
        print(f"error: the config (--config and its --config.* overrides) cannot be loaded: "
              f"{type(e).__name__}: {e}", file=sys.stderr)  # fmt: skip
        sys.exit(1)


def run(main) -> None:
    """``absl.app.run(main)`` with the compilation cache on, and INPUT_ERRORS (and a config that cannot
    be loaded) as one line and exit status 1."""

    def guarded(argv):
        enable_compilation_cache()
        try:
            return main(argv)
        except INPUT_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(guarded, flags_parser=parse_flags)


def train_or_exit(train, config, workdir: str, errors: tuple[type[Exception], ...] = ()) -> None:
    """Runs ``train(config, workdir)`` as a command ends it: a signal's stop (after its checkpoint) with the
    shell's status, a diverged run, a failed checkpoint write, a bad config value or ``errors`` as one
    line and status 1."""
    try:
        config.get("model")  # ml_collections defers a config file's load error to the first access
    except OSError as e:
        print(f"error: --config cannot be loaded: {e}", file=sys.stderr)
        sys.exit(1)
    logging.info("config:\n%s", config)
    try:
        train(config, workdir)
    except stopping.StopRequested as stop:
        logging.warning("stopped by %s after saving a checkpoint", stop)
        sys.exit(stop.exit_status)
    except (divergence.Diverged, CheckpointWriteError, *INPUT_ERRORS, ValueError, *errors) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
