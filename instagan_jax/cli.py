"""How the command-line tools end on bad input: one line, ``error: <message naming the file>``, exit 1.

Input errors are the user's to fix and their messages say what and where; a traceback
through orbax or PIL would only hide that. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

from absl import app

from instagan_jax.checkpoint import CheckpointError
from instagan_jax.image_io import DataError
from instagan_jax.torch_import import NotInstaGANError
from instagan_jax.torch_pickle import TorchFileError

INPUT_ERRORS = (CheckpointError, DataError, NotInstaGANError, TorchFileError, FileNotFoundError)


def run(main) -> None:
    """``absl.app.run(main)``, with INPUT_ERRORS printed as one line and exit status 1."""

    def guarded(argv):
        try:
            return main(argv)
        except INPUT_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(guarded)
