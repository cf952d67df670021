"""train_and_evaluate(config, workdir): the one training loop. The only module that reads a config.

It builds the dataset and the sharded, jitted train step, restores the latest checkpoint
of the workdir (or starts fresh, or fine-tunes from a converted authors' checkpoint), and
then loops: step, log, picture, checkpoint. It stops cleanly on SIGTERM / SIGINT (after a
checkpoint of the current step) and on a non-finite loss (naming the step and the loss,
keeping the last good checkpoint).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import time

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tensorflow as tf
from absl import logging
from clu import metric_writers
from tqdm import tqdm

from instagan_jax import checkpoint, input_pipeline, parallel, summaries
from instagan_jax import train_step as ts
from instagan_jax.datasets import builders
from instagan_jax.inference import translate_arrays

# Keys whose change makes an old checkpoint or data position meaningless.
SHAPE_KEYS = ("model", "ngf", "ndf", "n_blocks", "ins_max", "ins_per", "fine_size", "load_size", "batch_size",
              "dataset", "dataroot", "phase", "seed")  # fmt: skip


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must see (non-finite loss, incompatible resume)."""


class StopRequested(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def step_config(config) -> ts.StepConfig:
    return ts.StepConfig(
        spec=checkpoint.state_spec(config), ins_max=config.ins_max, ins_per=config.ins_per, lambda_a=config.lambda_a,
        lambda_b=config.lambda_b, lambda_idt=config.lambda_idt, lambda_ctx=config.lambda_ctx,
        gan_loss=config.gan_loss, learning_rate=config.learning_rate, beta1=config.beta1, niter=config.niter,
        niter_decay=config.niter_decay, pool_size=config.pool_size,
    )  # fmt: skip


def validate(config) -> None:
    """Refuses a hostile config before anything is built or compiled, naming the key."""
    for key in ("batch_size", "ins_max", "ins_per", "ngf", "ndf", "n_blocks", "num_train_steps",
                "checkpoint_every_steps", "log_every_steps", "image_every_steps"):  # fmt: skip
        if not isinstance(config[key], int) or config[key] <= 0:
            raise ValueError(f"config.{key} must be a positive integer, got {config[key]!r}")
    if config.ins_max % config.ins_per:
        raise ValueError(f"config.ins_max ({config.ins_max}) must be a multiple of config.ins_per ({config.ins_per})")
    for key in ("load_size", "fine_size"):
        size = tuple(config[key])
        if len(size) != 2 or any(not isinstance(s, int) or s <= 0 or s % 4 for s in size):
            raise ValueError(f"config.{key} must be (H, W) with positive multiples of 4, got {config[key]!r}")
    if any(fine > load for fine, load in zip(config.fine_size, config.load_size, strict=True)):
        raise ValueError(
            f"config.fine_size {tuple(config.fine_size)} is larger than config.load_size {tuple(config.load_size)}"
        )
    if config.dataset not in ("shapes", "folder", "coco"):
        raise ValueError(f"config.dataset must be 'shapes', 'folder' or 'coco', got {config.dataset!r}")
    if config.dataset != "shapes" and not os.path.isdir(config.dataroot):
        raise ValueError(f"config.dataroot {config.dataroot!r} is not a folder (needed by dataset {config.dataset!r})")
    if tuple(config.mesh_shape) not in ((-1,), (jax.device_count(),)):
        raise ValueError(
            f"config.mesh_shape {tuple(config.mesh_shape)} must be (-1,) or ({jax.device_count()},): "
            "the data axis spans all devices"
        )
    if config.batch_size % jax.device_count():
        raise ValueError(
            f"config.batch_size ({config.batch_size}) must be divisible by the {jax.device_count()} devices"
        )
    checkpoint.state_spec(config)  # validates model, widths
    step_config(config)


def prepare_dataset(config, workdir: str):
    """The prepared tfds builder of config.dataset (generated on first use, under config.data_dir)."""
    data_dir = config.data_dir or os.path.join(os.path.dirname(os.path.abspath(workdir)), "tfds_data")
    shapes = builders.ShapesConfig(
        name=f"s{config.shapes_size}_n{config.shapes_num_train}_{config.shapes_num_test}_i{config.shapes_max_instances}",
        size=config.shapes_size, num_train=config.shapes_num_train, num_test=config.shapes_num_test,
        max_instances=config.shapes_max_instances,
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
    """(train dataset iterator factory, held-out batch for pictures)."""
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
            decode_once=config.decode_once,
        )  # fmt: skip
        return ds.as_numpy_iterator()

    fine = tuple(config.fine_size)
    eval_ds = input_pipeline.make_dataset(
        held_out["A"], held_out["B"], batch_size=min(4, held_out["A"].size), load_size=fine, fine_size=fine,
        ins_max=config.ins_max, train=False,
    )  # fmt: skip
    return train_iterator, next(eval_ds.as_numpy_iterator())


def _device_batch(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k.startswith(("image_", "masks_"))}


def translation_picture(cfg: ts.StepConfig, state: ts.TrainState, batch: dict) -> np.ndarray:
    """real | masks | translated | masks | reconstructed | masks, A -> B rows then B -> A rows."""
    params = jax.tree.map(lambda x: x.addressable_data(0), state.params)  # this process's copy: no collective
    rows = []
    for x, forward, backward in (("a", "G_A", "G_B"), ("b", "G_B", "G_A")):
        images, masks = batch[f"image_{x}"], batch[f"masks_{x}"]
        fake, fake_masks = translate_arrays(cfg.spec, {"params": params[forward]}, images, masks, cfg.ins_per)
        rec, rec_masks = translate_arrays(cfg.spec, {"params": params[backward]}, fake, fake_masks, cfg.ins_per)
        outputs = (fake, fake_masks, rec, rec_masks)
        rows += summaries.translation_rows(images, masks, *(np.asarray(a) for a in outputs))
    return summaries.grid(rows)


def _check_resume_compatible(config, saved: dict) -> None:
    changed = {k: (saved.get(k), config[k]) for k in SHAPE_KEYS if k in saved and _norm(saved[k]) != _norm(config[k])}
    if changed and not config.allow_config_change:
        listing = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise TrainingError(
            f"the workdir's checkpoints were trained with a different model or data shape ({listing}); "
            "use a new --workdir, or pass --config.allow_config_change=True to resume anyway"
        )


def _restore_newest_readable(mngr, config, workdir: str, abstract, sharding):
    """The newest checkpoint that restores, or None for a new run.

    Unreadable newer checkpoints (truncated, corrupted) are moved to
    WORKDIR/unreadable_checkpoints with a warning; if none restores, nothing is moved and
    training refuses to start over. All processes must reach the same answer.
    """
    unreadable, found, state = [], None, None
    for step in reversed(mngr.all_steps()):
        try:
            saved_config = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        except Exception as e:  # noqa: BLE001 - any damage: try the one before
            unreadable.append((step, e))
            continue
        _check_resume_compatible(config, saved_config)
        try:
            state = checkpoint.restore_train_state(mngr, step, abstract, sharding)
        except Exception as e:  # noqa: BLE001
            unreadable.append((step, e))
            continue
        found = step
        break
    _check_every_process_restored(found if found is not None else (_NONE_READABLE if unreadable else _NEW_RUN), workdir)
    if found is None and unreadable:
        listing = "; ".join(f"{step}: {type(e).__name__}: {e}" for step, e in unreadable)
        raise TrainingError(
            f"no checkpoint in {checkpoint.checkpoint_dir(workdir)} can be restored ({listing}); refusing to start "
            "over in a workdir with a history: use a new --workdir, or move the checkpoints away"
        )
    if found is None:
        return None
    for bad, error in unreadable:
        moved = checkpoint.move_aside(workdir, bad) if jax.process_index() == 0 else "(moved by process 0)"
        logging.warning("checkpoint %d in %s is unreadable (%s: %s); moved to %s", bad,
                        checkpoint.checkpoint_dir(workdir), type(error).__name__, error, moved)  # fmt: skip
    if unreadable:
        mngr.reload()
    logging.info("resumed from %s/%d", checkpoint.checkpoint_dir(workdir), found)
    return state


_NEW_RUN, _NONE_READABLE = -1, -2  # what a process found, besides a step


def _check_every_process_restored(outcome: int, workdir: str) -> None:
    """Refuses to go on if the processes of a multi-host run restored different steps (e.g. a
    shared filesystem that one host sees damaged): they would train diverged copies."""
    outcomes = parallel.every_process(outcome)
    if len(set(outcomes)) > 1:
        names = {_NEW_RUN: "no checkpoint", _NONE_READABLE: "none readable"}
        found = ", ".join(f"process {i}: {names.get(o, f'step {o}')}" for i, o in enumerate(outcomes))
        raise TrainingError(
            f"the processes disagree about which checkpoint in {checkpoint.checkpoint_dir(workdir)} restores "
            f"({found}); every host must see the same checkpoint files. Nothing was moved or written"
        )


@contextlib.contextmanager
def _explained_write_errors(mngr, workdir: str, what: str):
    """Turns a failed checkpoint write (disk full, read-only, ...) into a TrainingError saying what survived."""
    try:
        yield
    except Exception as e:
        with contextlib.suppress(Exception):  # let earlier saves still in flight finish, if they can
            mngr.wait_until_finished()
        intact = checkpoint.complete_steps(workdir)
        raise TrainingError(
            f"could not write {what} to {checkpoint.checkpoint_dir(workdir)} ({type(e).__name__}: {e}); "
            f"the complete checkpoints there are intact: steps {intact}. Free space or fix permissions, then rerun "
            "the same command to resume from the newest"
        ) from e


def _norm(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> ts.TrainState:
    """Trains until config.num_train_steps; resumes from the workdir's latest checkpoint."""
    validate(config)
    tf.config.set_visible_devices([], "GPU")  # tf.data must not take accelerator memory
    os.makedirs(workdir, exist_ok=True)
    cfg = step_config(config)
    is_chief = jax.process_index() == 0
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_chief, asynchronous=True)

    mesh = parallel.make_mesh(config.mesh_shape[0])
    replicated = parallel.replicated(mesh)
    h, w = config.fine_size
    key = jax.random.PRNGKey(config.seed)

    pretrained = None
    if config.init_from:  # fine-tuning, e.g. from a converted authors' checkpoint
        init_spec, pretrained = checkpoint.load_networks(config.init_from)
        if init_spec != cfg.spec:
            raise TrainingError(
                f"config.init_from {config.init_from} holds {init_spec}; the config asks for {cfg.spec}"
            )

    def init_state():
        return ts.create_state(cfg, key, h, w, networks=pretrained)

    abstract = jax.eval_shape(init_state)
    mngr = checkpoint.manager(workdir, config.max_checkpoints_to_keep, item_names=checkpoint.TRAIN_ITEMS)
    state = _restore_newest_readable(mngr, config, workdir, abstract, replicated)
    start = 0 if state is None else int(state.step)
    if state is None:
        if pretrained is None:  # built in place on every device, identical on every process
            state = jax.jit(init_state, out_shardings=replicated)()
        else:  # large pretrained weights: copied, not baked into a program as constants
            state = jax.device_put(init_state(), replicated)
    if start >= config.num_train_steps:
        logging.info("already trained %d >= %d steps", start, config.num_train_steps)
        return state

    train_iterator, picture_batch = build_data(config, workdir)
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
        with _explained_write_errors(mngr, workdir, f"checkpoint {step}"):
            checkpoint.save_train_state(mngr, step, state, config)

    stop = {}
    handlers = {
        s: signal.signal(s, lambda signum, _: stop.setdefault("signal", signum))
        for s in (signal.SIGTERM, signal.SIGINT)
    }
    progress = tqdm(total=config.num_train_steps, initial=start, desc="train", unit="step", disable=not is_chief)
    last_good, timer = start, (time.perf_counter(), start)
    try:
        for step in range(start + 1, config.num_train_steps + 1):
            batch = parallel.global_batch(next(batches), mesh)
            state, metrics = step_fn(state, batch)
            progress.update(1)
            if step % config.log_every_steps == 0 or step == config.num_train_steps:
                scalars = {k: float(v) for k, v in jax.device_get(metrics).items() if not k.startswith("chunks/")}
                bad = [k for k, v in scalars.items() if not math.isfinite(v)]
                if bad:
                    raise TrainingError(
                        f"non-finite loss {bad} at step {step}; the last good checkpoint is step {last_good} "
                        f"in {checkpoint.checkpoint_dir(workdir)}"
                    )
                now = time.perf_counter()
                scalars["steps_per_sec"] = (step - timer[1]) / max(now - timer[0], 1e-9)
                timer = (now, step)
                writer.write_scalars(step, scalars)  # also the plain log line, through clu's logging writer
            if is_chief and (step % config.image_every_steps == 0 or step == config.num_train_steps):
                writer.write_images(step, {"translation": translation_picture(cfg, state, picture_batch)[None]})
            if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
                save(step)
                last_good = step
            if "signal" in stop:
                save(step)
                raise StopRequested(stop["signal"])
    finally:
        progress.close()
        for s, handler in handlers.items():
            signal.signal(s, handler)
        writer.flush()
        with _explained_write_errors(mngr, workdir, "the last checkpoint"):
            mngr.wait_until_finished()
    return state
