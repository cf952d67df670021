"""The data of a run: its tfds dataset prepared once, the shuffled training stream from any
position (for exact resumes), a held-out batch for pictures, held-out images for evaluation
and, on the shapes set, their perfect translations.

Reads the data keys of the training config (dataset, dataroot, data_dir, shapes_*,
coco_categories, sizes, batch_size, ins_max, set_order, seed, decode_once).
"""

from __future__ import annotations

import os

import jax
import numpy as np
import tensorflow as tf

from instagan_jax import checks, input_pipeline, parallel, training_config
from instagan_jax.datasets import builders, shapes


def prepare_dataset(config, workdir: str):
    """The prepared tfds builder of config.dataset (generated on first use, under config.data_dir)."""
    data_dir = config.data_dir or os.path.join(os.path.dirname(os.path.abspath(workdir)), "tfds_data")
    checks.owned_folder(data_dir, "config.data_dir", builders.DATA_DIR_MARKER, known=builders.BUILDER_NAMES)
    task = training_config.shapes_task(config)
    shapes = builders.ShapesConfig(
        name=f"s{config.shapes_size}_n{config.shapes_num_train}_{config.shapes_num_test}_i{config.shapes_max_instances}"
             + ("" if task == "squares" else f"_{task}"),
        size=config.shapes_size, num_train=config.shapes_num_train, num_test=config.shapes_num_test,
        max_instances=config.shapes_max_instances, task=task,
    )  # fmt: skip
    coco = builders.CocoConfig(name="_".join(config.coco_categories), category_a=config.coco_categories[0],
                               category_b=config.coco_categories[1])  # fmt: skip

    def prepare():
        return builders.prepare(config.dataset, data_dir, dataroot=config.dataroot or None, shapes=shapes, coco=coco,
                                skip_bad_files=config.skip_bad_files)  # fmt: skip

    # Process 0 generates the dataset first; the others then find it (or, on hosts without a
    # shared data_dir, generate their own copy) instead of racing to write the same files.
    builder = prepare() if jax.process_index() == 0 else None
    parallel.wait_for_every_process("dataset prepared")
    return builder or prepare()


def build_data(config, workdir: str):
    """(position -> iterator of training batches, held-out batch for pictures)."""
    builder = prepare_dataset(config, workdir)
    train = {x: input_pipeline.read_split(builder, f"{config.phase}{x}") for x in "AB"}
    eval_phase = config.eval_phase if f"{config.eval_phase}A" in builder.info.splits else config.phase
    held_out = {x: input_pipeline.read_split(builder, f"{eval_phase}{x}") for x in "AB"}
    local_batch = config.batch_size // jax.process_count()

    def train_iterator(position: int):
        ds = input_pipeline.make_dataset(
            train["A"], train["B"], batch_size=local_batch, load_size=tuple(config.load_size),
            fine_size=tuple(config.fine_size), ins_max=config.ins_max, set_order=config.set_order, seed=config.seed,
            start_position=position, process_index=jax.process_index(), process_count=jax.process_count(),
            decode_once=config.decode_once, binary_masks=training_config.binary_masks(config),
        )  # fmt: skip
        return ds.as_numpy_iterator()

    fine = tuple(config.fine_size)
    eval_ds = input_pipeline.make_dataset(
        held_out["A"], held_out["B"], batch_size=min(4, held_out["A"].size), load_size=fine, fine_size=fine,
        ins_max=config.ins_max, train=False, binary_masks=training_config.binary_masks(config),
    )  # fmt: skip
    return train_iterator, next(eval_ds.as_numpy_iterator())


def held_out_examples(config, workdir: str, phase: str, limit: int) -> dict:
    """{image_A, masks_A, image_B, masks_B}: the first ``limit`` images of each domain, at fine_size."""
    builder = prepare_dataset(config, workdir)
    if f"{phase}A" not in builder.info.splits:
        raise ValueError(f"{builder.name} has no split {phase}A (splits: {sorted(builder.info.splits)})")
    splits = {x: input_pipeline.read_split(builder, f"{phase}{x}") for x in "AB"}
    fine = tuple(config.fine_size)
    out = {}
    for x, other in (("A", "B"), ("B", "A")):  # each domain read in order, paired with anything
        ds = input_pipeline.make_dataset(splits[x], splits[other], batch_size=64, load_size=fine, fine_size=fine,
                                         ins_max=config.ins_max, train=False,
                                         binary_masks=training_config.binary_masks(config))  # fmt: skip
        chunks = [(b["image_A"], b["masks_A"]) for b in ds.as_numpy_iterator()]
        out[f"image_{x}"] = np.concatenate([c[0] for c in chunks])[:limit]
        out[f"masks_{x}"] = np.concatenate([c[1] for c in chunks])[:limit]
    return out


def perfect_translations(config, limit: int) -> dict:
    """held_out_examples' shapes (tasks squares and chosen), rendered rather than read, and their perfect translations.

    {image_X, masks_X}: the first ``limit`` held-out images of domain X, as held_out_examples
    reads them; {translated_X, translated_masks_X}: each as a perfect translation to the other
    domain draws it (shapes.render(translated=True)), read the same way.
    """
    task = training_config.shapes_task(config)
    if config.dataset != "shapes" or task == "bars":
        raise ValueError(
            f"perfect translations exist for the shapes set's squares and chosen tasks, not {config.dataset} / {task}"
        )
    return {**rendered_held_out(config, limit), **rendered_held_out(config, limit, translated=True)}


def rendered_held_out(config, limit: int, scale: int = 1, translated: bool = False) -> dict:
    """{image_X, masks_X} (prefixed "translated_" if ``translated``): the first ``limit`` held-out
    shapes of each domain, rendered as the test split renders them and read as held_out_examples
    reads them; at ``scale`` > 1 rendered and read at ``scale`` times the size, so that every
    object is that many times larger than in training."""
    if config.dataset != "shapes":
        raise ValueError(f"only the shapes set can be rendered, not {config.dataset}")
    task = training_config.shapes_task(config)
    seed = builders.ShapesConfig.seed + builders.SHAPES_TEST_SEED_OFFSET  # as prepare_dataset's builder renders it
    size = (scale * config.shapes_size,) * 2
    fine = tuple(scale * side for side in config.fine_size)
    binary = training_config.binary_masks(config)
    prefix = "translated_" if translated else ""
    out = {}
    for x in "AB":
        drawn = (shapes.render(x, seed, i, size, config.shapes_max_instances, task=task, translated=translated)
                 for i in range(limit))  # fmt: skip
        read = [_as_read(image, masks, fine, config.ins_max, binary) for image, masks in drawn]
        out[f"{prefix}image_{x}"] = np.stack([image for image, _ in read])
        out[f"{prefix}masks_{x}"] = np.stack([masks for _, masks in read])
    return out


def _as_read(image, masks, fine_size, ins_max: int, binary_masks: bool) -> tuple[np.ndarray, np.ndarray]:
    """A rendered example through the held-out pipeline: input_pipeline's resize to fine_size, then its augment."""
    stack = tf.concat([tf.constant(image), tf.transpose(tf.constant(masks), [1, 2, 0])], axis=-1)
    loaded = tf.cast(input_pipeline.resize(tf.cast(stack, tf.float32), fine_size), tf.uint8)  # as load() leaves it
    ex = input_pipeline.augment(loaded, tf.constant([0, 0], tf.int64), fine_size=fine_size, flip=False,
                                ins_max=ins_max, set_order="decreasing", binary_masks=binary_masks)  # fmt: skip
    return ex["image"].numpy(), ex["masks"].numpy()
