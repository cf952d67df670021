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

import jax
import orbax.checkpoint as ocp

from instagan_jax.models import ModelSpec

CHECKPOINT_SUBDIR = "checkpoints"


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
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )


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
    with manager(workdir) as mngr:
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
