"""The sequential mini-batch: translating an image instance-chunk by instance-chunk.

Masks arrive sorted (largest first) and padded to ins_max slots, and are cut into
ins_max / ins_per chunks. Chunk k sees the image translated by chunks 0..k-1 and its own
ins_per masks; memory is that of ins_per instances whatever ins_max is. The loop is a
rolled loop over the chunk axis (compiled once per shape) that ends after the last chunk
holding an instance.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import jax
import jax.numpy as jnp

from instagan_jax import masks as masks_lib

Generator = Callable[[jax.Array], jax.Array]  # (B, H, W, 3 + P) -> (B, H, W, 3 + P)


def scan_chunks(body, init, xs, unroll: bool = False, busy: jax.Array | None = None, skipped=None):
    """A rolled loop over the chunk axis: one compiled body, the memory of one chunk.

    ``unroll=True`` traces the body once per chunk instead, with no loop left in the program
    (for comparisons, and for exports to formats without a usable loop, e.g. ONNX through
    jax2onnx: it compiles longer and holds every chunk's activations). Both run at the same speed on CPU too, since
    ``convolution.conv2d`` writes convolution gradients in the form XLA's CPU backend runs fast
    inside a while loop (with autodiff's own form the rolled loop was 6x slower).

    ``busy`` ((K,) bool: does chunk k hold an instance anywhere in the batch?) lets the rolled
    loop stop after the last busy chunk, as the reference's loop does: a ``lax.while_loop`` over
    the first chunks, so the empty ones at the end cost nothing (through the body's own
    ``lax.cond`` each took about 0.05 s of the train step at 128x128 / ngf 32). ``skipped``
    holds the outputs of the chunks not run (stacked like the body's); the body must change
    nothing on a chunk that is not busy, so that the unrolled loop, which runs every chunk,
    gives the same result.
    """
    length = jax.tree.leaves(xs)[0].shape[0]
    if unroll:  # the chunk count is static; lax.scan(unroll=True) would keep a one-trip loop
        carry, outs = init, []
        for k in range(length):
            carry, out = body(carry, jax.tree.map(operator.itemgetter(k), xs))
            outs.append(out)
        return carry, jax.tree.map(lambda *o: jnp.stack(o), *outs)
    if busy is None:
        return jax.lax.scan(body, init, xs)
    trips = jnp.max(jnp.where(busy, jnp.arange(1, length + 1), 0))

    def run_chunk(loop):
        k, carry, outs = loop
        carry, out = body(carry, jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, k, keepdims=False), xs))
        outs = jax.tree.map(lambda buffer, o: jax.lax.dynamic_update_index_in_dim(buffer, o, k, 0), outs, out)
        return k + 1, carry, outs

    start = (jnp.zeros((), jnp.int32), init, skipped)
    _, carry, outs = jax.lax.while_loop(lambda loop: loop[0] < trips, run_chunk, start)
    return carry, outs


def translate(
    generate: Generator, images: jax.Array, masks: jax.Array, ins_per: int, unroll: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Inference: returns the translated images (B, H, W, 3) and masks (B, H, W, ins_max).

    An example whose chunk holds no instance keeps its image and passes its empty slots
    through. A chunk empty for the whole batch skips the generator entirely (``lax.cond``, and
    the loop ends after the last chunk with an instance), so the cost follows the number of
    instances, as in the reference's loop.
    """
    channels = images.shape[-1]

    def run_chunk(image, chunk):
        out = generate(jnp.concatenate([image, chunk], axis=-1))
        present = masks_lib.chunk_holds_instance(chunk)  # (B,)
        image = jnp.where(present[:, None, None, None], out[..., :channels], image)
        return image, out[..., channels:]

    def step(image, chunk):
        has_any = jnp.any(masks_lib.chunk_holds_instance(chunk))
        return jax.lax.cond(has_any, run_chunk, lambda im, ch: (im, ch), image, chunk)

    chunks = masks_lib.split_chunks(masks, ins_per)
    images, translated = scan_chunks(step, images, chunks, unroll, masks_lib.busy_chunks(chunks), skipped=chunks)
    return images, masks_lib.join_chunks(translated)
