"""Stopping a diverged run before it is saved, so the newest checkpoint always resumes.

The training loop (training_loop.run_steps) calls ``checked_losses`` at every step it logs or
saves, passing the weights when it is about to save them: a step's losses are computed before
its update, so an update that overflows leaves finite losses and non-finite weights behind it.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from instagan_jax import checkpoint


class Diverged(RuntimeError):
    """A loss or a weight is NaN or infinite; the message names the step and the last good checkpoint."""


def checked_losses(metrics: dict, params, step: int, last_good: int, workdir: str) -> dict[str, float]:
    """The step's scalar losses as floats (per-chunk "chunks/..." arrays left out); Diverged if one is
    not finite or, when params are given, a weight is not."""
    scalars = {k: float(v) for k, v in jax.device_get(metrics).items() if not k.startswith("chunks/")}
    bad = [k for k, v in scalars.items() if not math.isfinite(v)]
    if bad or (params is not None and not _all_finite(params)):
        what = f"non-finite loss {bad} at step {step}" if bad else f"non-finite weights after step {step}"
        kept = (
            f"the last good checkpoint is step {last_good} in {checkpoint.checkpoint_dir(workdir)}"
            if last_good
            else "no checkpoint was written"
        )
        raise Diverged(f"{what}; {kept}")
    return scalars


def _all_finite(params) -> bool:
    """This process's copy of the (replicated) weights: no collective, no compile."""
    return all(np.isfinite(np.asarray(leaf.addressable_data(0))).all() for leaf in jax.tree.leaves(params))
