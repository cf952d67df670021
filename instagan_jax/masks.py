"""Instance-mask set operations: validity, area order, padding, chunking, merging.

Masks live in [-1, 1] (-1 background, +1 instance) with a fixed number of slots in the
last axis, (B, H, W, N); an empty slot is all -1. All functions are pure jnp and work on
static shapes, so they run the same inside jit, scan and tf-free host code; order_and_pad,
which prepares a photo's masks on the host, is numpy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from instagan_jax import checks


def slot_validity(masks: jax.Array) -> jax.Array:
    """(B, H, W, N) -> (B, N) bool: does the slot hold any instance pixel?

    The reference tests ``mean(mask + 1) > 0``, i.e. any pixel above -1.
    """
    return jnp.any(masks > -1.0, axis=(1, 2))


def order_and_pad(masks: np.ndarray, ins_max: int) -> np.ndarray:
    """(H, W, N) -> (H, W, ins_max): largest area first, padded with empty slots.

    With more than ins_max masks the largest ins_max are kept (the reference's
    ``select_masks_decreasing``, a top-k of the per-mask mean; ties keep their order). numpy,
    not jnp: it prepares one photo on the host, and eager jnp compiled each of its operations
    once per mask count, seconds of a short translation.
    """
    masks = np.asarray(masks, np.float32)
    h, w, n = masks.shape
    if n < ins_max:
        masks = np.concatenate([masks, -np.ones((h, w, ins_max - n), np.float32)], axis=-1)
    order = np.argsort(-masks.mean(axis=(0, 1)), kind="stable")[:ins_max]
    return masks[..., order]


def largest_first(masks: jax.Array, ins_max: int) -> jax.Array:
    """order_and_pad for a batch inside a traced program: (B, H, W, N) -> (B, H, W, ins_max), N <= ins_max."""
    b, h, w, n = masks.shape
    masks = jnp.concatenate([masks, -jnp.ones((b, h, w, ins_max - n), masks.dtype)], axis=-1)
    order = jnp.argsort(-masks.mean(axis=(1, 2)), axis=-1, stable=True)
    return jnp.take_along_axis(masks, order[:, None, None], axis=-1)


def split_chunks(masks: jax.Array, ins_per: int) -> jax.Array:
    """(B, H, W, ins_max) -> (ins_max / ins_per, B, H, W, ins_per), the scan's leading axis."""
    b, h, w, n = masks.shape
    checks.check_chunking(n, ins_per)
    return masks.reshape(b, h, w, n // ins_per, ins_per).transpose(3, 0, 1, 2, 4)


def chunk_holds_instance(chunk: jax.Array) -> jax.Array:
    """(B, H, W, P) -> (B,) bool: does the example's chunk hold an instance in any of its slots?
    The one test of a chunk's emptiness: training and translation skip by it."""
    return jnp.any(slot_validity(chunk), axis=-1)


def busy_chunks(chunks: jax.Array) -> jax.Array:
    """(K, B, H, W, P) -> (K,) bool: does chunk k hold an instance in any example?"""
    per_example = chunk_holds_instance(chunks.reshape(-1, *chunks.shape[2:]))  # (K * B,)
    return jnp.any(per_example.reshape(chunks.shape[0], -1), axis=1)


def join_chunks(chunks: jax.Array) -> jax.Array:
    """Inverse of split_chunks: (K, B, H, W, P) -> (B, H, W, K * P)."""
    k, b, h, w, p = chunks.shape
    return chunks.transpose(1, 2, 3, 0, 4).reshape(b, h, w, k * p)


def merge(masks: jax.Array) -> jax.Array:
    """(B, H, W, N) -> (B, H, W, 1): the union of the instances, in [-1, 1]."""
    total = jnp.sum((masks + 1.0) / 2.0, axis=-1, keepdims=True)
    return jnp.clip(total, 0.0, 1.0) * 2.0 - 1.0


def context_weight(real_masks: jax.Array, fake_masks: jax.Array) -> jax.Array:
    """Weight of the context-preserving loss: 1 on the background of input and output, 0 on instances."""
    return (1.0 - merge(jnp.concatenate([real_masks, fake_masks], axis=-1))) / 2.0
