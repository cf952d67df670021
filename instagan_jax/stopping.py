"""Stopping a training loop cleanly: SIGTERM or Ctrl-C (SIGINT) only raise a flag, the loop
saves a checkpoint of the current step at the end of it and raises StopRequested, and the
command exits with the status a shell expects (0 for SIGTERM, 130 for Ctrl-C)."""

from __future__ import annotations

import contextlib
import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequested(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 130 if self.signum == signal.SIGINT else 0


@contextlib.contextmanager
def stop_signals():
    """Within the block, SIGTERM / SIGINT set ``flags["signal"]`` instead of stopping the process."""
    flags: dict[str, int] = {}
    previous = {s: signal.signal(s, lambda signum, _: flags.setdefault("signal", signum)) for s in SIGNALS}
    try:
        yield flags
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
