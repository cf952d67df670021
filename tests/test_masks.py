"""Mask-set helpers: order, padding, chunking, merging, context weight."""

import chex
import jax.numpy as jnp
import numpy as np

from instagan_jax import masks as masks_lib


def square(h, w, top, left, size):
    m = -np.ones((h, w), np.float32)
    m[top : top + size, left : left + size] = 1
    return m


def test_order_and_pad_sorts_by_area_and_pads_with_empty_slots():
    small, big, mid = square(10, 10, 0, 0, 2), square(10, 10, 0, 0, 6), square(10, 10, 5, 5, 4)
    out = np.asarray(masks_lib.order_and_pad(np.stack([small, big, mid], -1), 5))
    chex.assert_shape(out, (10, 10, 5))
    np.testing.assert_array_equal(out[..., 0], big)
    np.testing.assert_array_equal(out[..., 1], mid)
    np.testing.assert_array_equal(out[..., 2], small)
    np.testing.assert_array_equal(out[..., 3:], -1)


def test_order_and_pad_keeps_the_largest_when_there_are_too_many():
    masks = np.stack([square(10, 10, 0, 0, s) for s in (1, 5, 3, 4, 2)], -1)
    out = np.asarray(masks_lib.order_and_pad(masks, 2))
    np.testing.assert_array_equal(out, masks[..., [1, 3]])


def test_validity_is_per_example_and_slot():
    m = -jnp.ones((2, 4, 4, 3)).at[1, 0, 0, 2].set(0.5)
    np.testing.assert_array_equal(masks_lib.slot_validity(m), [[False] * 3, [False, False, True]])


def test_a_chunk_is_busy_if_any_example_has_an_instance_in_it():
    m = -jnp.ones((2, 4, 4, 6)).at[1, 0, 0, 2].set(0.5)  # only example 1's slot 2: chunk 1 of three
    np.testing.assert_array_equal(masks_lib.busy_chunks(masks_lib.split_chunks(m, 2)), [False, True, False])


def test_split_and_join_chunks_round_trip():
    m = jnp.arange(2 * 3 * 5 * 4, dtype=jnp.float32).reshape(2, 3, 5, 4)
    chunks = masks_lib.split_chunks(m, 2)
    chex.assert_shape(chunks, (2, 2, 3, 5, 2))
    np.testing.assert_array_equal(chunks[1], m[..., 2:4])
    np.testing.assert_array_equal(masks_lib.join_chunks(chunks), m)


def test_merge_and_context_weight():
    a, b = square(6, 6, 0, 0, 3), square(6, 6, 2, 2, 3)
    merged = np.asarray(masks_lib.merge(jnp.stack([a, b], -1)[None]))[0, ..., 0]
    np.testing.assert_array_equal(merged, np.maximum(a, b))
    weight = np.asarray(masks_lib.context_weight(a[None, ..., None], b[None, ..., None]))[0, ..., 0]
    np.testing.assert_array_equal(weight, (merged < 0).astype(np.float32))
