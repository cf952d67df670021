"""The training loops' progress bar counts a step when it has run, not when it is queued."""

import jax.numpy as jnp

from instagan_jax.step_progress import StepProgress


def test_a_step_is_counted_once_the_next_one_is_queued_and_the_last_at_close():
    progress = StepProgress(total=10, initial=4, desc="train")  # resumed at step 4
    progress.dispatched({"loss": jnp.ones(())})
    assert progress.bar.n == 4  # step 5 may still be running: not counted yet
    progress.dispatched({"loss": jnp.zeros(())})
    assert progress.bar.n == 5  # step 5 has run (waited on), step 6 queued
    progress.close()
    assert progress.bar.n == 6  # step 6 has run too


def test_closing_before_any_step_counts_nothing():
    progress = StepProgress(total=10, initial=0, desc="train")
    progress.close()
    assert progress.bar.n == 0
