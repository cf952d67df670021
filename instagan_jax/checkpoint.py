"""The project's checkpoint format: an orbax CheckpointManager under ``WORKDIR/checkpoints``.

Each numbered step directory holds the items
  - ``networks``: {"G_A", "G_B"[, "D_A", "D_B"]: Flax variables (params, spectral)},
  - ``model_spec``: the ModelSpec as JSON, enough to rebuild the modules,
and, for checkpoints written by training, the rest of the train state. A converted
authors' checkpoint is step 0 with ``networks`` and ``model_spec`` only, which is what
translate and fine-tuning restore.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import jax
import orbax.checkpoint as ocp

from instagan_jax.models import ModelSpec

CHECKPOINT_SUBDIR = "checkpoints"
UNREADABLE_SUBDIR = "unreadable_checkpoints"  # where damaged checkpoints are moved, never deleted
# Old checkpoints leave by an atomic rename into this folder and are removed from there: deleting
# them in place, file by file, would leave a half-deleted step that looks complete if killed.
DELETED_SUBDIR = "deleted"
TRAIN_ITEMS = ("networks", "model_spec", "trainer", "config")


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)


def manager(
    workdir: str, max_to_keep: int | None = None, item_names=("networks", "model_spec")
) -> ocp.CheckpointManager:
    handlers = {
        name: ocp.JsonCheckpointHandler() if name in ("model_spec", "config") else ocp.StandardCheckpointHandler()
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
    os.rename(os.path.join(checkpoint_dir(workdir), str(step)), target)
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


def load_networks(
    workdir: str, step: int | None = None, names: tuple[str, ...] | None = None
) -> tuple[ModelSpec, dict]:
    """Restores (spec, {name: variables}) from ``workdir``'s latest (or given) checkpoint.

    Works whatever topology wrote the checkpoint (e.g. an 8-device run read in Colab).
    """
    if not os.path.isdir(checkpoint_dir(workdir)):
        raise FileNotFoundError(f"no checkpoints under {checkpoint_dir(workdir)} (convert or train first)")
    with manager(workdir, item_names=TRAIN_ITEMS) as mngr:  # all items known: no warnings about the others
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{checkpoint_dir(workdir)} holds no complete checkpoint")
        metadata = mngr.item_metadata(step)
        spec = ModelSpec(**mngr.restore(step, args=ocp.args.Composite(model_spec=ocp.args.JsonRestore()))["model_spec"])
        target = _single_device_target(metadata["networks"])
        networks = mngr.restore(step, args=ocp.args.Composite(networks=ocp.args.StandardRestore(target)))["networks"]
    if names is not None:
        missing = [n for n in names if n not in networks]
        if missing:
            raise KeyError(f"checkpoint {step} in {checkpoint_dir(workdir)} has no {missing}")
        networks = {n: networks[n] for n in names}
    return spec, networks


def load_config(workdir: str, step: int | None = None) -> dict:
    """The training config stored with checkpoint ``step`` (latest if None) of a training workdir."""
    steps = complete_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"{checkpoint_dir(workdir)} holds no complete checkpoint")
    step = steps[-1] if step is None else step
    with manager(workdir, item_names=("config",)) as mngr:
        try:
            return mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"checkpoint {step} in {checkpoint_dir(workdir)} has no config (not a training run)"
            ) from e


def _split_train_state(state) -> tuple[dict, dict]:
    """TrainState -> (networks item, trainer item): the networks are stored once, in the
    same item that converted checkpoints use, so translate reads training checkpoints too."""
    networks = {name: {"params": params} for name, params in state.params.items()}
    for name, spectral in state.spectral.items():
        networks[name]["spectral"] = spectral
    trainer = {"step": state.step, "opt_g": state.opt_g, "opt_d": state.opt_d, "pools": state.pools, "key": state.key}
    return networks, trainer


def save_train_state(mngr: ocp.CheckpointManager, step: int, state, config) -> None:
    """Saves the full train state (asynchronously) as checkpoint ``step``, with its config."""
    if jax.process_index() == 0:
        purge_deleted(mngr)
    networks, trainer = _split_train_state(state)
    spec = dataclasses.asdict(state_spec(config))
    mngr.save(
        step,
        args=ocp.args.Composite(
            networks=ocp.args.StandardSave(networks),
            trainer=ocp.args.StandardSave(trainer),
            model_spec=ocp.args.JsonSave(spec),
            config=ocp.args.JsonSave(config.to_dict() if hasattr(config, "to_dict") else dict(config)),
        ),
    )


def state_spec(config) -> ModelSpec:
    return ModelSpec(model=config.model, ngf=config.ngf, ndf=config.ndf, n_blocks=config.n_blocks)


def restore_train_state(mngr: ocp.CheckpointManager, step: int, abstract_state, sharding):
    """Restores checkpoint ``step`` into the structure of ``abstract_state``, every leaf on ``sharding``."""
    with_sharding = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
    networks, trainer = _split_train_state(abstract_state)
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            networks=ocp.args.StandardRestore(with_sharding(networks)),
            trainer=ocp.args.StandardRestore(with_sharding(trainer)),
        ),
    )
    networks, trainer = restored["networks"], restored["trainer"]
    return abstract_state.replace(
        params={name: n["params"] for name, n in networks.items()},
        spectral={name: networks[name]["spectral"] for name in abstract_state.spectral},
        **trainer,
    )
