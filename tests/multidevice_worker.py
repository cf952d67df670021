"""Checks that need several devices, run by test_scale_out.py in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=N (the device count is fixed at start-up).

    python tests/multidevice_worker.py step               # sharded step vs one device, prints JSON
    python tests/multidevice_worker.py restore WORKDIR    # restores the latest checkpoint here, prints JSON
"""

import json
import sys

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from instagan_jax import checkpoint, parallel, training_config
from instagan_jax import train_step as ts
from instagan_jax.models import ModelSpec

SIZE = 32


def tiny_step_config() -> ts.StepConfig:
    # a rolled chunk loop compiles the chunk update once: the slow part of this check is compiling
    return ts.StepConfig(spec=ModelSpec(ngf=2, ndf=2, n_blocks=1), ins_max=4, ins_per=2, pool_size=4, scan_unroll=False)


def batch_with_empty_chunks(batch_size: int, ins_max: int, seed: int = 0) -> dict:
    """Examples with 0..ins_max instances, so that devices hold different empty chunks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:SIZE, :SIZE]
    batch = {}
    for domain in "AB":
        masks = -np.ones((batch_size, SIZE, SIZE, ins_max), np.float32)
        for b in range(batch_size):
            for i in range(rng.integers(0, ins_max + 1)):
                cy, cx, r = rng.uniform(4, SIZE - 4, 2).tolist() + [rng.uniform(3, 8)]
                masks[b, ..., i] = np.where((y - cy) ** 2 + (x - cx) ** 2 <= r * r, 1.0, -1.0)
        batch[f"image_{domain}"] = rng.uniform(-1, 1, (batch_size, SIZE, SIZE, 3)).astype(np.float32)
        batch[f"masks_{domain}"] = masks
    return batch


def compare_step() -> dict:
    """One train step on the same global batch: on one device, and sharded over all of them."""
    cfg = tiny_step_config()
    batch = batch_with_empty_chunks(jax.device_count(), cfg.ins_max)
    single = ts.create_state(cfg, jax.random.PRNGKey(0), SIZE, SIZE)
    single, single_metrics = jax.jit(lambda s, b: ts.train_step(cfg, s, b))(single, batch)
    mesh = parallel.make_mesh()
    sharded = jax.device_put(ts.create_state(cfg, jax.random.PRNGKey(0), SIZE, SIZE), parallel.replicated(mesh))
    sharded_batch = parallel.global_batch(batch, mesh)
    sharded, sharded_metrics = parallel.sharded_train_step(cfg, mesh)(sharded, sharded_batch)
    single_metrics, sharded_metrics = jax.device_get((single_metrics, sharded_metrics))
    loss_rel = {k: float(np.max(np.abs(single_metrics[k] - sharded_metrics[k]) / np.abs(single_metrics[k])))
                for k in single_metrics if k != "learning_rate"}  # fmt: skip
    params_spec = str(jax.tree.leaves(sharded.params)[0].sharding.spec)
    single, sharded = jax.device_get((single, sharded))
    return {
        "devices": jax.device_count(),
        "batch_spec": str(sharded_batch["image_A"].sharding.spec),
        "params_spec": params_spec,
        "loss_max_rel_diff": max(loss_rel.values()),
        "tensors": tensor_differences(single, sharded, cfg.learning_rate),
    }


def tensor_differences(single, sharded, learning_rate: float) -> list[dict]:
    """Per tensor of the two states (parameters, Adam's moments, spectral vectors): where it is,
    its scale, and how far apart the two are (median and largest; parameters also in lr)."""
    trees = {"params": (single.params, sharded.params), "spectral": (single.spectral, sharded.spectral),
             "opt_g": (single.opt_g, sharded.opt_g), "opt_d": (single.opt_d, sharded.opt_d)}  # fmt: skip
    records = []
    for kind, (a_tree, b_tree) in trees.items():
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(a_tree), jax.tree.leaves(b_tree), strict=True):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            diff = np.abs(a - b)
            records.append({
                "kind": kind, "path": [getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path],
                "size": int(a.size), "scale": float(np.abs(a).max()), "median": float(np.median(diff)),
                "max": float(diff.max()), "median_in_lr": float(np.median(diff) / learning_rate),
                "max_in_lr": float(diff.max() / learning_rate),
            })  # fmt: skip
    return records


def restore(workdir: str) -> dict:
    """Restores the newest checkpoint onto this process's mesh, as a resumed run does."""
    mngr = checkpoint.manager(workdir, item_names=checkpoint.TRAIN_ITEMS)
    step = mngr.latest_step()
    config = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
    cfg = training_config.step_config(ml_collections.ConfigDict(config))
    h, w = config["fine_size"]
    abstract = jax.eval_shape(lambda: ts.create_state(cfg, jax.random.PRNGKey(0), h, w))
    mesh = parallel.make_mesh()
    state = checkpoint.restore_train_state(mngr, step, abstract, parallel.replicated(mesh))
    leaves = jax.tree.leaves(state.params)
    return {
        "devices": jax.device_count(),
        "step": int(state.step),
        "on_devices": len(leaves[0].sharding.device_set),
        "params_abs_sum": float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in leaves)),
    }


if __name__ == "__main__":
    command = sys.argv[1]
    result = compare_step() if command == "step" else restore(sys.argv[2])
    print("RESULT " + json.dumps(result))
