"""train(config, workdir): the one training loop.

It builds the data (training_data.py) and the sharded, jitted train step, resumes
from the workdir's newest readable checkpoint (checkpoint.py's policy; or starts fresh, or
fine-tunes from a converted authors' checkpoint), and then steps, logs, draws and saves
through training_loop.run_steps, which also ends the run cleanly on SIGTERM / SIGINT (after a
checkpoint of the current step) and on a non-finite loss or weight (naming the step and the
loss, keeping the last good checkpoint; divergence.py).
"""

from __future__ import annotations

import itertools
import os

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging
from clu import metric_writers

from instagan_jax import (
    checkpoint,
    checks,
    convolution,
    domains,
    parallel,
    summaries,
    training_config,
    training_data,
    training_loop,
    workdir_lock,
    xla_options,
)
from instagan_jax import train_step as ts
from instagan_jax.inference import translate_arrays


class TrainingError(RuntimeError):
    """Training cannot start as asked (config.init_from holds other networks than the config asks for)."""


def _device_batch(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k.startswith(("image_", "masks_"))}


def translation_picture(cfg: ts.StepConfig, state: ts.TrainState, batch: dict) -> np.ndarray:
    """real | masks | translated | masks | reconstructed | masks, A -> B rows then B -> A rows."""
    params = jax.tree.map(lambda x: x.addressable_data(0), state.params)  # this process's copy: no collective
    rows = []
    for direction in domains.DIRECTIONS:
        images, masks = batch[f"image_{domains.source(direction)}"], batch[f"masks_{domains.source(direction)}"]
        forward, backward = domains.generator(direction), domains.generator(domains.inverse(direction))
        fake, fake_masks = translate_arrays(cfg.spec, {"params": params[forward]}, images, masks, cfg.ins_per)
        rec, rec_masks = translate_arrays(cfg.spec, {"params": params[backward]}, fake, fake_masks, cfg.ins_per)
        outputs = (fake, fake_masks, rec, rec_masks)
        rows += summaries.translation_rows(images, masks, *(np.asarray(a) for a in outputs))
    return summaries.grid(rows)


def pretrained_networks(config, cfg: ts.StepConfig) -> dict | None:
    """config.init_from's networks (fine-tuning, e.g. a converted authors' checkpoint), checked
    against the config; None without one. Read before anything is written into the workdir."""
    if not config.init_from:
        return None
    init_spec, networks = checkpoint.load_networks(config.init_from)
    if init_spec != cfg.spec:
        raise TrainingError(f"config.init_from {config.init_from} holds {init_spec}; the config asks for {cfg.spec}")
    return networks


def restore_or_initialise(config, cfg: ts.StepConfig, workdir: str, mngr, sharding, pretrained) -> ts.TrainState:
    """The workdir's newest readable checkpoint (checked against the config), or a fresh state:
    random networks, or ``pretrained`` ones."""
    h, w = config.fine_size

    def init_state():
        return ts.create_state(cfg, jax.random.PRNGKey(config.seed), h, w, networks=pretrained)

    state = checkpoint.restore_newest_readable(
        mngr, workdir, jax.eval_shape(init_state), sharding,
        lambda saved: training_config.check_resume_compatible(config, saved),
    )  # fmt: skip
    if state is not None:
        return state
    if pretrained is None:  # built in place on every device, identical on every process
        return jax.jit(init_state, out_shardings=sharding, compiler_options=xla_options.run_once_options())()
    return jax.device_put(init_state(), sharding)  # large pretrained weights: copied, not baked in as constants


def train(config: ml_collections.ConfigDict, workdir: str) -> ts.TrainState:
    """Trains until config.num_train_steps; resumes from the workdir's newest readable checkpoint.

    The workdir is locked for the run (workdir_lock.py): a second run into it is refused."""
    training_config.validate(config)
    checks.writable_folder(workdir, "--workdir")
    with workdir_lock.hold(workdir, enabled=jax.process_index() == 0):
        return _train(config, workdir)


def _train(config: ml_collections.ConfigDict, workdir: str) -> ts.TrainState:
    tf.config.set_visible_devices([], "GPU")  # tf.data must not take accelerator memory
    cfg = training_config.step_config(config)
    is_chief = jax.process_index() == 0
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_chief, asynchronous=True)

    mesh = parallel.make_mesh(config.mesh_shape[0])
    logging.info(
        "%d %s devices (%s); convolutions in their %s forms (convolution.convolution_forms)", jax.device_count(),
        jax.default_backend(), jax.devices()[0].device_kind, convolution.convolution_forms(),
    )  # fmt: skip
    pretrained = pretrained_networks(config, cfg)
    mngr = checkpoint.manager(workdir, config.max_checkpoints_to_keep, item_names=checkpoint.TRAIN_ITEMS)
    state = restore_or_initialise(config, cfg, workdir, mngr, parallel.replicated(mesh), pretrained)
    start = int(state.step)
    if start >= config.num_train_steps:
        logging.info("already trained %d >= %d steps", start, config.num_train_steps)
        return state

    train_iterator, picture_batch = training_data.build_data(config, workdir)
    batches = map(_device_batch, train_iterator(start * config.batch_size))
    first = next(batches)
    batches = itertools.chain([first], batches)
    # Compile everything that runs between collectives before the processes start stepping
    # together: the step, and the chief's picture (a host whose compile takes longer would
    # otherwise keep the others waiting inside a collective, which on CPU times out).
    step_fn = parallel.sharded_train_step(cfg, mesh).lower(state, parallel.global_batch(first, mesh)).compile()
    if is_chief:
        translation_picture(cfg, state, picture_batch)
    parallel.wait_for_every_process("compiled")
    if is_chief:
        with open(os.path.join(workdir, "config.json"), "w") as f:  # for people; checkpoints hold their own copy
            f.write(config.to_json_best_effort(indent=1))
        if start == 0:
            writer.write_hparams({k: str(v) for k, v in config.items()})

    def save(step: int):
        checkpoint.save_train_state(mngr, step, state, cfg.spec, config.to_dict())

    def advance():
        nonlocal state
        state, metrics = step_fn(state, parallel.global_batch(next(batches), mesh))
        return metrics

    training_loop.run_steps(
        config, workdir, mngr, writer, start=start, desc="train", step=advance, weights=lambda: state.params,
        save=save, pictures=lambda: {"translation": translation_picture(cfg, state, picture_batch)},
        is_chief=is_chief,
    )  # fmt: skip
    return state
