"""train_masker(config, workdir): the instance masker's training loop, and its checkpoints.

The masker learns from a dataset's own photos and instance masks, both domains mixed, through
the same tfds data and input pipeline as InstaGAN (config.dataset and the data keys), on one
device. Checkpoints (orbax, WORKDIR/checkpoints: the parameters, the optimiser state and the
MaskerSpec as JSON) are written every config.checkpoint_every_steps and on SIGTERM / SIGINT;
rerunning the same command resumes from the newest. Prediction with a trained masker is
mask_prediction.py's.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from clu import metric_writers

from instagan_jax import (
    checkpoint,
    checks,
    mask_prediction,
    summaries,
    training_config,
    training_data,
    training_loop,
    workdir_lock,
)
from instagan_jax import masker as masker_lib
from instagan_jax.xla_options import compiler_options

ITEMS = mask_prediction.ITEMS
OBJECT_SIZE_BATCHES = 8  # training batches whose masks measure the spec's object_size


def masker_spec(config) -> masker_lib.MaskerSpec:
    return masker_lib.MaskerSpec(**config.masker.to_dict())


def _manager(workdir: str, max_to_keep: int | None = None) -> ocp.CheckpointManager:
    handlers = {"masker": ocp.StandardCheckpointHandler(), "trainer": ocp.StandardCheckpointHandler(),
                "masker_spec": ocp.JsonCheckpointHandler(), "config": ocp.JsonCheckpointHandler()}  # fmt: skip
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(checkpoint.checkpoint_dir(workdir), item_names=ITEMS, item_handlers=handlers,
                                 options=options)  # fmt: skip


def make_step(spec: masker_lib.MaskerSpec, optimizer: optax.GradientTransformation):
    net = spec.network()

    def step(params, opt_state, images, masks):
        def objective(p):
            return masker_lib.loss(net.apply({"params": p}, images), masker_lib.targets(masks, spec.sigma))

        (total, terms), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": total, **terms}

    return jax.jit(step, donate_argnums=(0, 1), compiler_options=compiler_options())


def _both_domains(batch: dict) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([batch["image_A"], batch["image_B"]]), np.concatenate([batch["masks_A"], batch["masks_B"]]))


def masks_picture(spec: masker_lib.MaskerSpec, params, batch: dict) -> np.ndarray:
    """photo | true masks | predicted masks, one row per held-out photo of each domain."""
    images, masks = _both_domains(batch)
    predicted = mask_prediction.MaskPredictor(spec, params)(images)
    rows = [[summaries.to_unit(images[i]), summaries.colour_masks(masks[i]), summaries.colour_masks(predicted[i])]
            for i in range(len(images))]  # fmt: skip
    return summaries.grid(rows)


def train_masker(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains until config.num_train_steps (resuming from the workdir's newest checkpoint); returns params.

    The workdir is locked for the run, as train.train's."""
    training_config.validate(config)
    spec = masker_spec(config)
    checks.writable_folder(workdir, "--workdir")
    with workdir_lock.hold(workdir):
        return _train_masker(config, workdir, spec)


def training_object_size(train_iterator, batches: int = OBJECT_SIZE_BATCHES) -> float:
    """masker.object_size of the first training batches' true masks (both domains): what scale
    "auto" compares a photo's objects with. The same batches however far a run has got."""
    examples = itertools.islice(train_iterator(0), batches)
    foreground = np.concatenate([(_both_domains(batch)[1] > 0).any(axis=-1) for batch in examples])
    return masker_lib.object_size(foreground)


def _train_masker(config: ml_collections.ConfigDict, workdir: str, spec: masker_lib.MaskerSpec) -> dict:
    writer = metric_writers.create_default_writer(workdir, asynchronous=True)
    train_iterator, held_out = training_data.build_data(config, workdir)
    spec = dataclasses.replace(spec, object_size=training_object_size(train_iterator))
    h, w = config.fine_size
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.num_train_steps)
    optimizer = optax.adam(schedule)
    params = mask_prediction.init_params(spec, jax.random.PRNGKey(config.seed), h, w)
    opt_state, start = optimizer.init(params), 0
    mngr = _manager(workdir, config.max_checkpoints_to_keep)
    if mngr.latest_step() is not None:
        start = mngr.latest_step()
        saved = mngr.restore(start, args=ocp.args.Composite(masker_spec=ocp.args.JsonRestore()))["masker_spec"]
        if isinstance(saved, dict) and "object_size" not in saved:  # saved before specs recorded it
            saved = {**saved, "object_size": spec.object_size}
        if masker_lib.MaskerSpec.from_dict(saved) != spec:
            raise training_config.IncompatibleResume(
                f"{checkpoint.step_dir(workdir, start)} holds a masker {saved}; the config asks for {spec}"
            )
        args = ocp.args.Composite(masker=ocp.args.StandardRestore(params), trainer=ocp.args.StandardRestore(opt_state))
        restored = mngr.restore(start, args=args)
        params, opt_state = restored["masker"], restored["trainer"]
        logging.info("resumed the masker from %s", checkpoint.step_dir(workdir, start))
    batches = train_iterator(start * config.batch_size)
    step_fn = make_step(spec, optimizer)

    def save(step: int):
        items = {"masker": ocp.args.StandardSave(params), "trainer": ocp.args.StandardSave(opt_state),
                 "masker_spec": ocp.args.JsonSave(dataclasses.asdict(spec)),
                 "config": ocp.args.JsonSave(config.to_dict())}  # fmt: skip
        mngr.save(step, args=ocp.args.Composite(**items))

    def advance():
        nonlocal params, opt_state
        images, masks = _both_domains(next(batches))
        params, opt_state, metrics = step_fn(params, opt_state, images, masks)
        return metrics

    training_loop.run_steps(
        config, workdir, mngr, writer, start=start, desc="train masker", step=advance, weights=lambda: params,
        save=save, pictures=lambda: {"masks": masks_picture(spec, params, held_out)},
    )  # fmt: skip
    return params
