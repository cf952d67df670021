"""The sequential mini-batch at inference: chunk k sees chunks < k's output, empty chunks pass."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from instagan_jax import sequential

H = W = 6


def instance_masks(counts, slots=4):
    """(B, H, W, slots): example b has counts[b] instances, each one pixel row."""
    m = -np.ones((len(counts), H, W, slots), np.float32)
    for b, n in enumerate(counts):
        for i in range(n):
            m[b, i, :, i] = 1.0
    return jnp.asarray(m)


def brighten(x):
    """A stand-in generator: image + 0.1 per instance in its chunk; masks come out negated."""
    image, masks = x[..., :3], x[..., 3:]
    count = jnp.sum(jnp.any(masks > -1, axis=(1, 2)), axis=-1).astype(x.dtype)
    return jnp.concatenate([image + 0.1 * count[:, None, None, None], -masks], axis=-1)


def test_each_chunk_translates_the_previous_chunks_output():
    images = jnp.zeros((3, H, W, 3))
    masks = instance_masks([4, 1, 0])
    out, out_masks = jax.jit(sequential.translate, static_argnums=(0, 3))(brighten, images, masks, 2)
    chex.assert_shape(out, (3, H, W, 3))
    chex.assert_shape(out_masks, (3, H, W, 4))
    # 4 instances in 2 chunks: +0.2 twice; 1 instance: +0.1 once; no instance: unchanged
    np.testing.assert_allclose(out[:, 0, 0, 0], [0.4, 0.1, 0.0], atol=1e-6)
    # masks: the generator's, chunk by chunk, in their slots (negated here)
    np.testing.assert_array_equal(out_masks[0], -masks[0])


def test_a_chunk_empty_for_the_whole_batch_passes_its_slots_through():
    masks = instance_masks([2, 1])  # slots 2 and 3 empty everywhere: chunk 1 is skipped
    _, out_masks = sequential.translate(brighten, jnp.zeros((2, H, W, 3)), masks, 2)
    np.testing.assert_array_equal(out_masks[..., 2:], masks[..., 2:])  # still empty (-1), not negated
    np.testing.assert_array_equal(out_masks[..., :2], -masks[..., :2])


def test_the_rolled_and_unrolled_scans_agree():
    def body(carry, x):
        return carry * 2 + x, carry + x

    xs = jnp.arange(5.0)
    rolled = sequential.scan_chunks(body, 1.0, xs, unroll=False)
    unrolled = sequential.scan_chunks(body, 1.0, xs, unroll=True)
    chex.assert_trees_all_close(rolled, unrolled)
    one = sequential.scan_chunks(body, 1.0, xs[:1], unroll=True)  # a one-trip loop keeps its leading axis
    chex.assert_shape(one[1], (1,))


def test_the_rolled_loop_stops_after_the_last_busy_chunk():
    def body(carry, x):  # x == 0: an empty chunk, which leaves the carry as it is
        return carry + x, carry * x

    xs = jnp.asarray([1.0, 0.0, 2.0, 0.0, 0.0])
    skipped = jnp.full(5, -1.0)  # unlike anything the body outputs: shows which chunks ran
    run = jax.jit(sequential.scan_chunks, static_argnums=(0, 3))
    carry, outs = run(body, 1.0, xs, False, xs > 0, skipped)
    # the empty chunk 1 comes before a busy one, so it runs; 3 and 4 do not
    np.testing.assert_array_equal(outs, [1.0, 0.0, 4.0, -1.0, -1.0])
    assert float(carry) == 4.0
    carry, outs = run(body, 1.0, xs, False, jnp.zeros(5, bool), skipped)  # nothing busy: nothing runs
    np.testing.assert_array_equal(outs, skipped)
    assert float(carry) == 1.0
    unrolled = sequential.scan_chunks(body, 1.0, xs, True, xs > 0, skipped)  # the unrolled loop runs them all
    np.testing.assert_array_equal(unrolled[1], [1.0, 0.0, 4.0, 0.0, 0.0])
