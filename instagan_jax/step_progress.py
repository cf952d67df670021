"""A training loop's progress bar that counts steps when they have run, not when they are queued.

A jitted step returns as soon as it is dispatched. A bar moved at each call runs ahead while
steps queue up, then stalls whenever the loop reads a result (a log line, a picture, a
checkpoint): bursts of 5-10 steps/s and stalls of 1 around each log line while the true rate
is steady, and an ETA that swings with them. This bar moves for a step when its outputs are
ready, waiting on the step before the newest one, so one step stays queued and the device
never waits for the host.
"""

from __future__ import annotations

import jax
from tqdm import tqdm


class StepProgress:
    """tqdm over train steps; call `dispatched(outputs)` after each step's call."""

    def __init__(self, total: int, initial: int, desc: str, disable: bool = False):
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=disable)
        self._queued = None

    def dispatched(self, outputs) -> None:
        """Counts the previous step once it has run; `outputs` (any pytree of arrays) is the newest step's."""
        if self._queued is not None:
            jax.block_until_ready(self._queued)
            self.bar.update(1)
        self._queued = outputs

    def close(self) -> None:
        """Counts the newest step if it has run (never waits: the loop may be ending on an error)."""
        leaves = jax.tree.leaves(self._queued)
        if leaves and all(leaf.is_ready() for leaf in leaves):
            self.bar.update(1)
        self._queued = None
        self.bar.close()
