"""InstaGAN's losses, per example, so that an example whose chunk is empty adds nothing.

Each function returns a (B,) vector; ``masked_mean`` averages it over the examples that
take part. At batch size 1 this is exactly the reference's scalar losses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from instagan_jax import masks as masks_lib


def _per_example_mean(x: jax.Array) -> jax.Array:
    return jnp.mean(x.reshape(x.shape[0], -1), axis=1)


def adversarial(logits: jax.Array, target_is_real: bool, kind: str = "lsgan") -> jax.Array:
    """Least squares (default) or binary cross-entropy against an all-1 or all-0 target.

    With "vanilla" the discriminator has no sigmoid layer and the loss takes logits, which
    is the numerically stable form of the reference's Sigmoid + BCELoss.
    """
    target = jnp.full_like(logits, 1.0 if target_is_real else 0.0)
    if kind == "lsgan":
        return _per_example_mean(jnp.square(logits - target))
    if kind == "vanilla":
        return _per_example_mean(optax.sigmoid_binary_cross_entropy(logits, target))
    raise ValueError(f"gan_loss must be 'lsgan' or 'vanilla', got {kind!r}")


def l1(x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean absolute error per example (cycle and identity losses, over image and masks)."""
    return _per_example_mean(jnp.abs(x - y))


def context_preserving(real_image, fake_image, real_masks, fake_masks) -> jax.Array:
    """mean(w * |real - fake|) with w = 1 on the background of both input and output instances."""
    weight = masks_lib.context_weight(real_masks, fake_masks)  # (B, H, W, 1)
    return _per_example_mean(weight * jnp.abs(real_image - fake_image))


def masked_mean(values: jax.Array, present: jax.Array) -> jax.Array:
    """Mean of values (B,) over the examples where present (B,) is True; 0 if none."""
    present = present.astype(values.dtype)
    return jnp.sum(values * present) / jnp.maximum(jnp.sum(present), 1.0)
