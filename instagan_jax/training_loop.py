"""The loop around a train step that every trainer shares: when to log, draw, check and save, and how a run ends.

train.py (InstaGAN, CycleGAN) and masker_train.py say how to take a step, which weights to
check, how to save and what to draw; ``run_steps`` says when. A run ends after its last step,
on SIGTERM / SIGINT (after a checkpoint of the current step; stopping.py), or on a non-finite
loss or weight (before it is saved; divergence.py). Whichever way it ends, the checkpoint
writes still in flight finish, and a failed write is explained with what survived.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from clu import metric_writers

from instagan_jax import checkpoint, divergence, stopping
from instagan_jax.step_progress import StepProgress


def run_steps(
    config: ml_collections.ConfigDict,
    workdir: str,
    mngr: ocp.CheckpointManager,
    writer: metric_writers.MetricWriter,
    *,
    start: int,
    desc: str,
    step: Callable[[], Any],
    weights: Callable[[], Any],
    save: Callable[[int], None],
    pictures: Callable[[], dict[str, np.ndarray]],
    is_chief: bool = True,
) -> None:
    """Calls ``step()`` for steps start + 1 .. config.num_train_steps.

    step() takes the next step and returns its metrics (device values, read only when logged or
    saved); weights() are what divergence checks before a save; save(n) writes checkpoint n (a
    failed write is explained here, as the last one's is); pictures() -> {name: H x W x 3
    image}, drawn by the chief every config.image_every_steps.
    """
    progress = StepProgress(config.num_train_steps, start, desc, disable=not is_chief)
    last_good, timer = start, (time.perf_counter(), start)
    with stopping.stop_signals() as stop:
        try:
            for n in range(start + 1, config.num_train_steps + 1):
                metrics = step()
                progress.dispatched(metrics)
                last = n == config.num_train_steps
                signalled = "signal" in stop
                saving = n % config.checkpoint_every_steps == 0 or last or signalled
                logging_now = n % config.log_every_steps == 0 or last
                if logging_now or saving:
                    scalars = divergence.checked_losses(metrics, weights() if saving else None, n, last_good, workdir)
                if logging_now:
                    now = time.perf_counter()
                    scalars["steps_per_sec"] = (n - timer[1]) / max(now - timer[0], 1e-9)
                    timer = (now, n)
                    writer.write_scalars(n, scalars)  # also the plain log line, through clu's logging writer
                if is_chief and (n % config.image_every_steps == 0 or last):
                    writer.write_images(n, {name: picture[None] for name, picture in pictures().items()})
                if saving:
                    with checkpoint.explained_write_errors(mngr, workdir, f"checkpoint {n}"):
                        save(n)
                    last_good = n
                if signalled:
                    raise stopping.StopRequested(stop["signal"])
        finally:
            progress.close()
            writer.flush()
            with checkpoint.explained_write_errors(mngr, workdir, "the last checkpoint"):
                mngr.wait_until_finished()
