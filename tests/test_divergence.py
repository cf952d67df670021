"""divergence.checked_losses: what stops a diverged run before it is saved (the loops' end-to-end
test is tests/test_train.py::test_a_non_finite_loss_stops_training_naming_step_and_loss_and_is_never_saved)."""

import jax.numpy as jnp
import numpy as np
import pytest

from instagan_jax import divergence


def test_non_finite_weights_are_refused_even_when_the_losses_are_finite():
    """An update can overflow after its losses were computed: the weights are checked before a save."""
    losses, good = {"G_A": np.float32(0.5), "chunks/G_A": np.full(2, 0.5, np.float32)}, {"w": jnp.ones((2, 2))}
    assert divergence.checked_losses(losses, good, 7, 5, "wd") == {"G_A": 0.5}  # the per-chunk entries are not logged
    with pytest.raises(
        divergence.Diverged, match=r"^non-finite weights after step 7; the last good checkpoint is step 5"
    ):
        divergence.checked_losses(losses, {"w": jnp.array([1.0, jnp.inf])}, 7, 5, "wd")
    with pytest.raises(divergence.Diverged, match=r"^non-finite loss \['G_A'\] at step 1; no checkpoint was written$"):
        divergence.checked_losses({"G_A": np.float32(np.nan)}, None, 1, 0, "wd")
