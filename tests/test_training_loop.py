"""training_loop.run_steps, with a counting step and a recording writer (nothing compiled): when it
logs, draws and saves, and how a run ends on a signal, a diverged weight or a failed last write.
The real loops end to end: tests/test_train.py, tests/test_reliability.py, tests/test_masker.py."""

import errno
import os
import signal

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from instagan_jax import checkpoint, divergence, stopping, training_loop


class RecordingWriter:
    def __init__(self):
        self.scalars, self.images, self.flushed = {}, {}, False

    def write_scalars(self, step, scalars):
        self.scalars[step] = dict(scalars)

    def write_images(self, step, images):
        self.images[step] = {name: image.shape for name, image in images.items()}

    def flush(self):
        self.flushed = True


class Manager:
    """What the loop asks of an orbax CheckpointManager: to wait for the writes in flight."""

    def __init__(self, error: OSError | None = None):
        self.error, self.waited = error, 0

    def wait_until_finished(self):
        self.waited += 1
        if self.error is not None:
            raise self.error


class FailingFrom(list):
    """A save that records steps and fails from one on, as a disk turned read-only would."""

    def __init__(self, first_failing: int):
        super().__init__()
        self.first_failing = first_failing

    def append(self, step):
        if step >= self.first_failing:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        super().append(step)


def schedule(**overrides) -> ml_collections.ConfigDict:
    every = {"num_train_steps": 7, "log_every_steps": 3, "image_every_steps": 4, "checkpoint_every_steps": 5}
    return ml_collections.ConfigDict({**every, **overrides})


START = 1  # as if resumed from checkpoint 1


class Run:
    """run_steps with a step that counts: the steps taken and saved, and what was written."""

    def __init__(self, config, workdir, mngr, on_step=lambda n: None, weights=lambda: {"w": jnp.ones(2)}):
        self.config, self.workdir, self.mngr, self.on_step, self.weights = config, str(workdir), mngr, on_step, weights
        self.taken, self.saved, self.writer = [], [], RecordingWriter()

    def step(self):
        self.taken.append(START + len(self.taken) + 1)
        self.on_step(self.taken[-1])
        return {"G_A": jnp.float32(self.taken[-1])}

    def __call__(self):
        training_loop.run_steps(
            self.config, self.workdir, self.mngr, self.writer, start=START, desc="test", step=self.step,
            weights=self.weights, save=self.saved.append,
            pictures=lambda: {"translation": np.zeros((6, 8, 3), np.uint8)},
        )  # fmt: skip
        return self


def test_the_loop_logs_draws_and_saves_on_its_schedule_and_at_the_last_step(tmp_path):
    mngr = Manager()
    run = Run(schedule(), tmp_path, mngr)()
    assert run.taken == [2, 3, 4, 5, 6, 7]
    assert sorted(run.writer.scalars) == [3, 6, 7]
    assert run.writer.scalars[6]["G_A"] == 6.0 and run.writer.scalars[6]["steps_per_sec"] > 0
    assert run.writer.images == {4: {"translation": (1, 6, 8, 3)}, 7: {"translation": (1, 6, 8, 3)}}
    assert run.saved == [5, 7]
    assert run.writer.flushed and mngr.waited == 1


def test_a_signal_saves_the_step_it_arrived_in_and_then_stops(tmp_path):
    mngr = Manager()
    run = Run(
        schedule(num_train_steps=100), tmp_path, mngr, on_step=lambda n: n == 3 and os.kill(os.getpid(), signal.SIGTERM)
    )
    with pytest.raises(stopping.StopRequested) as stopped:
        run()
    assert run.taken == [2, 3] and run.saved == [3]
    assert stopped.value.exit_status == 0
    assert mngr.waited == 1  # the signal's checkpoint is written before the process exits


def test_diverged_weights_stop_the_run_before_they_are_saved(tmp_path):
    weights = {"w": jnp.ones(2)}

    def overflow(n):
        if n == 5:
            weights["w"] = jnp.array([1.0, jnp.inf])

    run = Run(schedule(), tmp_path, Manager(), on_step=overflow, weights=lambda: weights)
    with pytest.raises(
        divergence.Diverged, match=r"non-finite weights after step 5; the last good checkpoint is step 1 in "
    ):
        run()
    assert run.taken == [2, 3, 4, 5] and run.saved == []


def test_a_failed_save_is_explained_with_the_checkpoints_that_survived(tmp_path):
    os.makedirs(checkpoint.step_dir(str(tmp_path), 1))
    run = Run(schedule(), tmp_path, Manager())
    run.saved = FailingFrom(5)
    with pytest.raises(checkpoint.CheckpointWriteError, match=r"could not write checkpoint 5 .*Read-only.*steps \[1\]"):
        run()
    assert run.taken == [2, 3, 4, 5]


def test_a_failed_last_write_is_explained_with_the_checkpoints_that_survived(tmp_path):
    os.makedirs(checkpoint.step_dir(str(tmp_path), 2))
    full = Manager(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(
        checkpoint.CheckpointWriteError, match=r"could not write the last checkpoint .*No space left.*steps \[2\]"
    ):
        Run(schedule(num_train_steps=2), tmp_path, full)()
