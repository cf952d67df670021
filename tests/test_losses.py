"""The losses, per example, against their definitions written out in numpy."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from instagan_jax import losses

RNG = np.random.default_rng(0)


def test_lsgan_is_the_mean_squared_distance_to_the_target_per_example():
    logits = RNG.normal(size=(3, 4, 4, 1)).astype(np.float32)
    real, fake = losses.adversarial(logits, True), losses.adversarial(logits, False)
    chex.assert_shape([real, fake], (3,))
    np.testing.assert_allclose(real, ((logits - 1) ** 2).mean(axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(fake, (logits**2).mean(axis=(1, 2, 3)), rtol=1e-6)


def test_vanilla_is_binary_cross_entropy_of_the_sigmoid():
    logits = RNG.normal(size=(2, 3, 3, 1)).astype(np.float32)
    p = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(losses.adversarial(logits, True, "vanilla"), -np.log(p).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(
        losses.adversarial(logits, False, "vanilla"), -np.log(1 - p).mean(axis=(1, 2, 3)), rtol=1e-5
    )
    with pytest.raises(ValueError, match="gan_loss must be"):
        losses.adversarial(logits, True, "wgan")


def test_l1_is_per_example():
    x, y = np.zeros((2, 2, 2, 3), np.float32), np.zeros((2, 2, 2, 3), np.float32)
    y[1] = 0.5
    np.testing.assert_allclose(losses.l1(x, y), [0.0, 0.5])


def test_context_preserving_ignores_pixels_of_input_or_output_instances():
    real = RNG.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    real_masks, fake_masks = -np.ones((1, 8, 8, 2), np.float32), -np.ones((1, 8, 8, 2), np.float32)
    real_masks[0, :4, :4, 0] = 1  # an input instance
    fake_masks[0, 4:, 4:, 1] = 1  # an output instance
    changed_inside = real.copy()
    changed_inside[0, :4, :4] += 1.0
    changed_inside[0, 4:, 4:] -= 1.0
    assert float(losses.context_preserving(real, changed_inside, real_masks, fake_masks)[0]) == 0.0
    changed_outside = real.copy()
    changed_outside[0, :4, 4:] += 0.5  # 16 background pixels x 3 channels of the 192 values
    np.testing.assert_allclose(losses.context_preserving(real, changed_outside, real_masks, fake_masks), [0.125])


def test_masked_mean_averages_over_present_examples_only():
    values = jnp.array([1.0, 2.0, 6.0])
    np.testing.assert_allclose(losses.masked_mean(values, jnp.array([True, False, True])), 3.5)
    assert float(losses.masked_mean(values, jnp.zeros(3, bool))) == 0.0
