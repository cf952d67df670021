"""The project's checkpoint format: an orbax CheckpointManager under ``WORKDIR/checkpoints``.

Each numbered step directory holds the items
  - ``networks``: {"G_A", "G_B"[, "D_A", "D_B"]: Flax variables (params, spectral)},
  - ``model_spec``: the ModelSpec as JSON, enough to rebuild the modules,
and, for checkpoints written by training, the rest of the train state (``trainer``, ``config``,
and ``ema``: {"G_A", "G_B": {"params"}} averaged generators when the run keeps them, which
translation and evaluation then use). A converted
authors' checkpoint is step 0 with ``networks`` and ``model_spec`` only, which is what
translate and fine-tuning restore.

Workdirs are copied around and shared, so reading one trusts nothing in it: the JSON items
are checked (``ModelSpec.from_dict``, a config must be an object), the stored arrays' shapes
must be the ones the spec implies before any is read, and every failure of orbax or
tensorstore on damaged files surfaces as ``CheckpointError`` naming the checkpoint folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil

import jax
import orbax.checkpoint as ocp
from absl import logging

from instagan_jax import parallel
from instagan_jax.models import ModelSpec, abstract_networks

CHECKPOINT_SUBDIR = "checkpoints"
UNREADABLE_SUBDIR = "unreadable_checkpoints"  # where damaged checkpoints are moved, never deleted
# Old checkpoints leave by an atomic rename into this folder and are removed from there: deleting
# them in place, file by file, would leave a half-deleted step that looks complete if killed.
DELETED_SUBDIR = "deleted"
TRAIN_ITEMS = ("networks", "model_spec", "trainer", "config", "ema")
EMA_ITEM = "ema"
JSON_ITEMS = ("model_spec", "masker_spec", "config")  # items stored as JSON; the others are arrays


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with its folder and the item in the message."""


class ResumeError(CheckpointError):
    """A workdir that training must not resume from as it is (it says why and what to do)."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only); says which ones are intact."""


@contextlib.contextmanager
def reading(workdir: str, step: int, item: str):
    """Turns any failure inside orbax/tensorstore/json while reading ``item`` into a CheckpointError."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - damaged files fail anywhere in the stack; name the folder
        raise CheckpointError(
            f"{step_dir(workdir, step)}: cannot read its {item} ({type(e).__name__}: {str(e)[:300]})"
        ) from e


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)


def step_dir(workdir: str, step: int) -> str:
    return os.path.join(checkpoint_dir(workdir), str(step))


def manager(
    workdir: str, max_to_keep: int | None = None, item_names=("networks", "model_spec")
) -> ocp.CheckpointManager:
    handlers = {
        name: ocp.JsonCheckpointHandler() if name in JSON_ITEMS else ocp.StandardCheckpointHandler()
        for name in item_names
    }
    return ocp.CheckpointManager(
        checkpoint_dir(workdir),
        item_names=item_names,
        item_handlers=handlers,
        # Saves write to a temporary folder renamed when complete, so a killed save leaves only
        # a temporary folder, which the next manager removes; deletions are renames (see DELETED_SUBDIR).
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True, todelete_subdir=DELETED_SUBDIR
        ),
    )


@contextlib.contextmanager
def opened(workdir: str, step: int | None, item_names: tuple[str, ...], hint: str):
    """(manager, step) for reading ``workdir``'s checkpoint ``step``, the newest if None;
    FileNotFoundError naming the folder (and ``hint``, what makes one) if there is none."""
    if not os.path.isdir(checkpoint_dir(workdir)):
        raise FileNotFoundError(f"no checkpoints under {checkpoint_dir(workdir)} {hint}")
    with manager(workdir, item_names=item_names) as mngr:  # all items known: no warnings about the others
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{checkpoint_dir(workdir)} holds no complete checkpoint")
        yield mngr, step


def restore_json(mngr: ocp.CheckpointManager, workdir: str, step: int, item: str):
    with reading(workdir, step, item):
        return mngr.restore(step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item]


def restore_arrays(mngr: ocp.CheckpointManager, workdir: str, step: int, item: str, target):
    """The arrays of ``item`` as ``target``'s shapes and dtypes, on one device whatever wrote them."""
    with reading(workdir, step, item):
        return mngr.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(target)}))[item]


def complete_steps(workdir: str) -> list[int]:
    """Steps of the complete checkpoints on disk (temporary folders of unfinished saves excluded)."""
    root = checkpoint_dir(workdir)
    return sorted(int(d) for d in os.listdir(root) if d.isdigit()) if os.path.isdir(root) else []


def purge_deleted(mngr: ocp.CheckpointManager) -> None:
    """Removes the checkpoints that ``mngr`` has already renamed away for deletion."""
    root = os.path.join(str(mngr.directory), DELETED_SUBDIR)
    for name in os.listdir(root) if os.path.isdir(root) else ():
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def move_aside(workdir: str, step: int) -> str:
    """Moves checkpoint ``step`` to WORKDIR/unreadable_checkpoints (kept for inspection); returns the new path."""
    target = os.path.join(os.path.abspath(workdir), UNREADABLE_SUBDIR, str(step))
    suffix = 0
    while os.path.exists(target if not suffix else f"{target}.{suffix}"):
        suffix += 1
    target = target if not suffix else f"{target}.{suffix}"
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(step_dir(workdir, step), target)
    return target


def save_networks(workdir: str, spec: ModelSpec, networks: dict, step: int = 0) -> None:
    """Writes networks + spec as checkpoint ``step`` and waits until it is complete."""
    with manager(workdir) as mngr:
        mngr.save(
            step,
            args=ocp.args.Composite(
                networks=ocp.args.StandardSave(jax.tree.map(jax.numpy.asarray, networks)),
                model_spec=ocp.args.JsonSave(dataclasses.asdict(spec)),
            ),
            force=True,
        )
        mngr.wait_until_finished()


def _single_device_target(metadata) -> object:
    """Restore target for any saved topology: every leaf on this process's first device."""
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), metadata)


def has_ema(workdir: str, step: int) -> bool:
    """Does checkpoint ``step`` keep averaged generators?"""
    return os.path.isdir(os.path.join(step_dir(workdir, step), EMA_ITEM))


def has_config(workdir: str, step: int | None = None) -> bool:
    """Was checkpoint ``step`` (latest if None) written by a training run, with its config?
    (Checkpoints converted from the authors' .pth have none.)"""
    steps = complete_steps(workdir)
    step = (steps[-1] if steps else None) if step is None else step
    return step is not None and os.path.isdir(os.path.join(step_dir(workdir, step), "config"))


def load_networks(
    workdir: str, step: int | None = None, names: tuple[str, ...] | None = None, averaged: bool = True
) -> tuple[ModelSpec, dict]:
    """Restores (spec, {name: variables}) from ``workdir``'s latest (or given) checkpoint.

    With ``averaged`` the generators are their moving averages where the checkpoint keeps
    them (a run with ema_decay > 0), else the trained weights. Works whatever topology wrote
    the checkpoint (e.g. an 8-device run read in Colab).
    """
    with opened(workdir, step, TRAIN_ITEMS, "(convert or train first)") as (mngr, step):
        with reading(workdir, step, "model_spec"):
            spec = ModelSpec.from_dict(restore_json(mngr, workdir, step, "model_spec"))
        networks = {}
        for item in ("networks", EMA_ITEM) if averaged and has_ema(workdir, step) else ("networks",):
            with reading(workdir, step, item):
                stored = mngr.item_metadata(step)[item]
                _check_stored_shapes(stored, spec, step_dir(workdir, step))
            networks.update(restore_arrays(mngr, workdir, step, item, _single_device_target(stored)))  # EMA last
    if names is not None:
        missing = [n for n in names if n not in networks]
        if missing:
            raise CheckpointError(f"{step_dir(workdir, step)}: holds no network {missing} (it has {sorted(networks)})")
        networks = {n: networks[n] for n in names}
    return spec, networks


def _check_stored_shapes(stored, spec: ModelSpec, folder: str) -> None:
    """The stored networks must be (a subset of) those ``spec`` builds, leaf for leaf and shape for shape."""
    names = list(stored.keys()) if hasattr(stored, "keys") else []  # orbax's TreeMetadata is dict-like
    if not names:
        raise CheckpointError(f"{folder}: its networks item holds no networks")
    expected = abstract_networks(spec)

    def shapes(tree) -> dict:
        return {jax.tree_util.keystr(p): tuple(leaf.shape) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}

    for name in names:
        if name not in expected:
            raise CheckpointError(f"{folder}: unknown network {str(name)[:40]!r} (expected {sorted(expected)})")
        want, have = shapes(expected[name]), shapes(stored[name])
        for key in sorted(want.keys() | have.keys()):
            if want.get(key) != have.get(key):
                raise CheckpointError(
                    f"{folder}: {name}{key} is stored as {have.get(key, 'missing')}, but its model_spec {spec} "
                    f"implies {want.get(key, 'no such variable')}"
                )


def load_config(workdir: str, step: int | None = None) -> dict:
    """The training config stored with checkpoint ``step`` (latest if None) of a training workdir."""
    steps = complete_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"{checkpoint_dir(workdir)} holds no complete checkpoint")
    step = steps[-1] if step is None else step
    with manager(workdir, item_names=("config",)) as mngr:
        try:
            with reading(workdir, step, "config"):
                config = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        except CheckpointError as e:
            if isinstance(e.__cause__, FileNotFoundError):
                raise FileNotFoundError(
                    f"checkpoint {step} in {checkpoint_dir(workdir)} has no config (not a training run)"
                ) from e
            raise
    if not isinstance(config, dict):
        raise CheckpointError(f"{step_dir(workdir, step)}: its config is a {type(config).__name__}, not an object")
    return config


def _split_train_state(state) -> tuple[dict, dict]:
    """TrainState -> (networks item, trainer item): the networks are stored once, in the
    same item that converted checkpoints use, so translate reads training checkpoints too."""
    networks = {name: {"params": params} for name, params in state.params.items()}
    for name, spectral in state.spectral.items():
        networks[name]["spectral"] = spectral
    trainer = {"step": state.step, "opt_g": state.opt_g, "opt_d": state.opt_d, "pools": state.pools, "key": state.key}
    return networks, trainer


def save_train_state(mngr: ocp.CheckpointManager, step: int, state, spec: ModelSpec, config: dict) -> None:
    """Saves the full train state (asynchronously) as checkpoint ``step``, with its spec and config."""
    if jax.process_index() == 0:
        purge_deleted(mngr)
    networks, trainer = _split_train_state(state)
    items = {
        "networks": ocp.args.StandardSave(networks),
        "trainer": ocp.args.StandardSave(trainer),
        "model_spec": ocp.args.JsonSave(dataclasses.asdict(spec)),
        "config": ocp.args.JsonSave(config),
    }
    if state.ema:
        items[EMA_ITEM] = ocp.args.StandardSave({name: {"params": p} for name, p in state.ema.items()})
    mngr.save(step, args=ocp.args.Composite(**items))


def restore_train_state(mngr: ocp.CheckpointManager, step: int, abstract_state, sharding):
    """Restores checkpoint ``step`` into the structure of ``abstract_state``, every leaf on ``sharding``.

    A run that keeps averaged generators but resumes from a checkpoint without them (the
    average was turned on later) starts the average from the restored generators.
    """
    with_sharding = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
    networks, trainer = _split_train_state(abstract_state)
    items = {
        "networks": ocp.args.StandardRestore(with_sharding(networks)),
        "trainer": ocp.args.StandardRestore(with_sharding(trainer)),
    }
    restore_ema = bool(abstract_state.ema) and has_ema(os.path.dirname(str(mngr.directory)), step)
    if restore_ema:
        ema = {name: {"params": p} for name, p in abstract_state.ema.items()}
        items[EMA_ITEM] = ocp.args.StandardRestore(with_sharding(ema))
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
    networks, trainer = restored["networks"], restored["trainer"]
    params = {name: n["params"] for name, n in networks.items()}
    if restore_ema:
        ema = {name: n["params"] for name, n in restored[EMA_ITEM].items()}
    else:
        ema = jax.tree.map(jax.numpy.copy, {name: params[name] for name in abstract_state.ema})  # own buffers
    return abstract_state.replace(
        params=params,
        spectral={name: networks[name]["spectral"] for name in abstract_state.spectral},
        ema=ema,
        **trainer,
    )


# --- resuming a training run -------------------------------------------------------------


def restore_newest_readable(mngr: ocp.CheckpointManager, workdir: str, abstract_state, sharding, check_config):
    """The train state of the newest checkpoint that restores, or None for a new run.

    ``check_config(saved_config)`` may refuse a checkpoint trained with another setup.
    Unreadable newer checkpoints (truncated, corrupted) are moved to
    WORKDIR/unreadable_checkpoints with a warning; if none restores, nothing is moved and
    training refuses to start over (ResumeError). All processes must reach the same answer.
    """
    unreadable, found, state = [], None, None
    for step in reversed(mngr.all_steps()):
        try:
            saved_config = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        except Exception as e:  # noqa: BLE001 - any damage: try the one before
            unreadable.append((step, e))
            continue
        check_config(saved_config)
        try:
            state = restore_train_state(mngr, step, abstract_state, sharding)
        except Exception as e:  # noqa: BLE001
            unreadable.append((step, e))
            continue
        found = step
        break
    _check_every_process_restored(found if found is not None else (_NONE_READABLE if unreadable else _NEW_RUN), workdir)
    if found is None and unreadable:
        listing = "; ".join(f"{step}: {type(e).__name__}: {e}" for step, e in unreadable)
        raise ResumeError(
            f"no checkpoint in {checkpoint_dir(workdir)} can be restored ({listing}); refusing to start "
            "over in a workdir with a history: use a new --workdir, or move the checkpoints away"
        )
    if found is None:
        return None
    for bad, error in unreadable:
        moved = move_aside(workdir, bad) if jax.process_index() == 0 else "(moved by process 0)"
        logging.warning("checkpoint %d in %s is unreadable (%s: %s); moved to %s", bad,
                        checkpoint_dir(workdir), type(error).__name__, error, moved)  # fmt: skip
    if unreadable:
        mngr.reload()
    logging.info("resumed from %s/%d", checkpoint_dir(workdir), found)
    return state


_NEW_RUN, _NONE_READABLE = -1, -2  # what a process found, besides a step


def _check_every_process_restored(outcome: int, workdir: str) -> None:
    """Refuses to go on if the processes of a multi-host run restored different steps (e.g. a
    shared filesystem that one host sees damaged): they would train diverged copies."""
    outcomes = parallel.every_process(outcome)
    if len(set(outcomes)) > 1:
        names = {_NEW_RUN: "no checkpoint", _NONE_READABLE: "none readable"}
        found = ", ".join(f"process {i}: {names.get(o, f'step {o}')}" for i, o in enumerate(outcomes))
        raise ResumeError(
            f"the processes disagree about which checkpoint in {checkpoint_dir(workdir)} restores "
            f"({found}); every host must see the same checkpoint files. Nothing was moved or written"
        )


@contextlib.contextmanager
def explained_write_errors(mngr: ocp.CheckpointManager, workdir: str, what: str):
    """Turns a failed checkpoint write (disk full, read-only, ...) into a CheckpointWriteError saying what survived."""
    try:
        yield
    except Exception as e:
        with contextlib.suppress(Exception):  # let earlier saves still in flight finish, if they can
            mngr.wait_until_finished()
        raise CheckpointWriteError(
            f"could not write {what} to {checkpoint_dir(workdir)} ({type(e).__name__}: {e}); "
            f"the complete checkpoints there are intact: steps {complete_steps(workdir)}. Free space or fix "
            "permissions, then rerun the same command to resume from the newest"
        ) from e
