"""tf.data input pipeline: fixed-shape, sorted, padded batches of unpaired A and B examples.

Every batch is a function of (seed, position) alone: example g of the stream takes A image
perm_A(epoch)[g mod N_A] and B image perm_B(epoch)[g mod N_B], and its crop and flip are
drawn with stateless ops seeded by (seed, g). Resuming at a position therefore continues
with exactly the batches an uninterrupted run would have seen, without replaying any.
With several processes, process p reads the examples g = p, p + P, p + 2P, ... of the
global stream, so the shards are disjoint and together form the global batch.

The encoded PNGs of a split are held in memory (the sets InstaGAN is trained on are a few
thousand images). Decoding and the bicubic resize to load_size are deterministic, so by
default they run once per image (`decode_split`, in parallel) and the per-example map only
crops, flips, sorts and pads: the stream is bit-identical to decoding every time, and about
an order of magnitude faster per example.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    """One split as tensors of PNG bytes: images (N,), masks ragged (N, None), ids (N,)."""

    images: tf.Tensor
    masks: tf.RaggedTensor
    ids: tf.Tensor

    @property
    def size(self) -> int:
        return int(self.images.shape[0])


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> EncodedSplit:
    """Loads a prepared split's encoded examples (no decoding)."""
    if split not in builder.info.splits:
        raise ValueError(f"{builder.name}: no split {split!r} (has {sorted(builder.info.splits)})")
    decoders = {"image": tfds.decode.SkipDecoding(), "masks": tfds.decode.SkipDecoding()}
    images, masks, ids = [], [], []
    for example in tfds.as_numpy(builder.as_dataset(split, decoders=decoders, shuffle_files=False)):
        images.append(example["image"])
        masks.append(list(example["masks"]))
        ids.append(example["id"])
    if not images:
        raise ValueError(f"{builder.name}: split {split!r} is empty")
    order = sorted(range(len(ids)), key=ids.__getitem__)  # storage order is tfds's; keep the files' order
    images, masks, ids = ([seq[i] for i in order] for seq in (images, masks, ids))
    return EncodedSplit(tf.constant(images), tf.ragged.constant(masks, dtype=tf.string), tf.constant(ids))


def decode(image_png: tf.Tensor, mask_pngs: tf.Tensor) -> tf.Tensor:
    """PNG bytes -> (H, W, 3 + n) float32 in [0, 255]; masks are decoded as grayscale."""
    image = tf.io.decode_png(image_png, channels=3)
    masks = tf.map_fn(
        lambda png: tf.io.decode_png(png, channels=1)[..., 0],
        mask_pngs,
        fn_output_signature=tf.TensorSpec([None, None], tf.uint8),
    )  # (n, H, W)
    masks = tf.ensure_shape(masks, [None, None, None])
    masks = tf.transpose(masks, [1, 2, 0])
    return tf.concat([tf.cast(image, tf.float32), tf.cast(masks, tf.float32)], axis=-1)


def resize(stack: tf.Tensor, size_hw: tuple[int, int]) -> tf.Tensor:
    """Joint bicubic resize of image and masks, rounded back to 8-bit levels as PIL does."""
    resized = tf.image.resize(stack, size_hw, method="bicubic", antialias=True)
    return tf.clip_by_value(tf.round(resized), 0.0, 255.0)


def load(image_png: tf.Tensor, mask_pngs: tf.Tensor, load_size: tuple[int, int]) -> tf.Tensor:
    """PNG bytes -> (H, W, 3 + n) uint8 at load_size: the deterministic part of preprocessing."""
    return tf.cast(resize(decode(image_png, mask_pngs), load_size), tf.uint8)


@dataclasses.dataclass(frozen=True)
class DecodedSplit:
    """One split decoded at load_size: stacks[i] is image i and its masks, flattened uint8."""

    stacks: tf.RaggedTensor  # (N, None) uint8, row i of length H * W * (3 + n_i)
    ids: tf.Tensor
    load_size: tuple[int, int]

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.stacks.flat_values.shape[0])

    def stack(self, index: tf.Tensor) -> tf.Tensor:
        return tf.reshape(self.stacks[index], [self.load_size[0], self.load_size[1], -1])


def decode_split(split: EncodedSplit, load_size: tuple[int, int]) -> DecodedSplit:
    """Decodes and resizes every image of a split once (parallel), kept in memory as uint8."""
    load_size = tuple(load_size)
    ds = tf.data.Dataset.range(split.size).map(
        lambda i: tf.reshape(load(split.images[i], split.masks[i], load_size), [-1]),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    rows = list(ds.as_numpy_iterator())
    logging.info("Decoded %d images at %s: %.1f MiB in memory", len(rows), load_size, sum(map(len, rows)) / 2**20)
    stacks = tf.RaggedTensor.from_row_lengths(np.concatenate(rows), [len(r) for r in rows])
    return DecodedSplit(stacks, split.ids, load_size)


def crop_and_flip(stack: tf.Tensor, fine_hw: tuple[int, int], seed: tf.Tensor, flip: bool) -> tf.Tensor:
    """The same random crop and horizontal flip for the image and all its masks."""
    channels = tf.shape(stack)[-1]
    stack = tf.image.stateless_random_crop(stack, tf.stack([fine_hw[0], fine_hw[1], channels]), seed=seed)
    if flip:
        stack = tf.image.stateless_random_flip_left_right(stack, seed=seed + 1)
    return stack


def order_and_pad(masks: tf.Tensor, ins_max: int, set_order: str, seed: tf.Tensor) -> tf.Tensor:
    """(H, W, n) in [-1, 1] -> (H, W, ins_max): largest first (or shuffled), padded with -1.

    With more than ins_max instances the largest ins_max are kept, in both orders.
    """
    n = tf.shape(masks)[-1]
    pad = tf.maximum(ins_max - n, 0)
    masks = tf.concat([masks, -tf.ones(tf.concat([tf.shape(masks)[:2], [pad]], 0), masks.dtype)], axis=-1)
    _, by_area = tf.math.top_k(tf.reduce_mean(masks, axis=[0, 1]), k=ins_max)
    masks = tf.gather(masks, by_area, axis=-1)
    if set_order == "random":
        valid = tf.reduce_any(masks > -1.0, axis=[0, 1])
        keys = tf.where(
            valid, tf.random.stateless_uniform([ins_max], seed=seed + 2), -1.0 - tf.range(ins_max, dtype=tf.float32)
        )
        _, order = tf.math.top_k(keys, k=ins_max)
        masks = tf.gather(masks, order, axis=-1)
    elif set_order != "decreasing":
        raise ValueError(f"set_order must be 'decreasing' or 'random', got {set_order!r}")
    return masks


def augment(stack, seed, *, fine_size, flip, ins_max, set_order, binary_masks=False):
    """(H, W, 3 + n) uint8 -> {"image": (h, w, 3), "masks": (h, w, ins_max), "count": ()}, in [-1, 1].

    The resize leaves soft mask edges (as the authors' PIL resize does); ``binary_masks``
    thresholds them at half, so that an edge is in or out along its whole length.
    """
    stack = crop_and_flip(stack, fine_size, seed, flip)
    stack = tf.cast(stack, tf.float32) / 127.5 - 1.0
    masks = stack[..., 3:]
    if binary_masks:
        masks = tf.where(masks > 0.0, 1.0, -1.0)
    masks = order_and_pad(masks, ins_max, set_order, seed)
    count = tf.reduce_sum(tf.cast(tf.reduce_any(masks > -1.0, axis=[0, 1]), tf.int32))
    return {"image": stack[..., :3], "masks": masks, "count": count}


def preprocess(image_png, mask_pngs, seed, *, load_size, **augment_options):
    """One encoded example -> augment(load(...)): what the pipeline does to each example."""
    return augment(load(image_png, mask_pngs, load_size), seed, **augment_options)


def _stack_reader(split: EncodedSplit, load_size: tuple[int, int], decode_once: bool):
    """index -> (H, W, 3 + n) uint8 stack of one image of the split, from memory or from PNG."""
    if decode_once:
        return decode_split(split, load_size).stack
    return lambda index: load(split.images[index], split.masks[index], load_size)


def _permuted(position: tf.Tensor, size: int, seed: int, stream: int) -> tf.Tensor:
    """Element position mod size of a permutation of range(size) redrawn every epoch."""
    epoch, offset = position // size, position % size
    keys = tf.random.stateless_uniform([size], seed=tf.stack([tf.cast(seed * 2 + stream, tf.int64), epoch]))
    return tf.gather(tf.argsort(keys), offset)


def make_dataset(
    split_a: EncodedSplit,
    split_b: EncodedSplit,
    *,
    batch_size: int,
    load_size: tuple[int, int],
    fine_size: tuple[int, int],
    ins_max: int,
    set_order: str = "decreasing",
    seed: int = 0,
    start_position: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    train: bool = True,
    decode_once: bool = True,
    binary_masks: bool = False,
) -> tf.data.Dataset:
    """Batches of {image_A, masks_A, count_A, id_A, image_B, ...}, position = examples consumed globally.

    With ``train=False`` the stream is A in order (paired with B in order), without crop
    (fine_size must equal load_size) or flip, and ends after one pass over A. With
    ``decode_once`` both splits are first decoded at load_size into memory
    (`decode_split`); without it every example is decoded from PNG again.
    """
    if fine_size[0] > load_size[0] or fine_size[1] > load_size[1]:
        raise ValueError(f"fine_size {fine_size} is larger than load_size {load_size}")
    if not train and tuple(fine_size) != tuple(load_size):
        raise ValueError("evaluation reads whole images: fine_size must equal load_size")
    options = dict(fine_size=tuple(fine_size), ins_max=ins_max, set_order=set_order, binary_masks=binary_masks)
    end = np.iinfo(np.int64).max if train else split_a.size
    read_a, read_b = (_stack_reader(split, tuple(load_size), decode_once) for split in (split_a, split_b))

    def example(position):
        if train:
            index_a = _permuted(position, split_a.size, seed, 0)
            index_b = _permuted(position, split_b.size, seed, 1)
        else:
            index_a, index_b = position, position % split_b.size
        aug_seed = tf.stack([tf.cast(seed, tf.int64), position])
        out = {}
        for name, split, read, index, stream in (
            ("A", split_a, read_a, index_a, 0),
            ("B", split_b, read_b, index_b, 1),
        ):
            ex = augment(read(index), aug_seed + 4 * stream, flip=train, **options)
            out.update({f"{k}_{name}": v for k, v in ex.items()})
            out[f"id_{name}"] = split.ids[index]
        return out

    ds = tf.data.Dataset.range(start_position + process_index, end, process_count)
    ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=train)
    options_ = tf.data.Options()
    options_.deterministic = True
    return ds.with_options(options_).prefetch(tf.data.AUTOTUNE)
