"""Data parallelism with jax.jit + jax.sharding: multi-host start, the mesh, the sharded train step.

One mesh axis, ``data``, spans every device of every process. The batch is split along it;
parameters, optimiser state and image pools are replicated (``P()``; a ``model`` axis
would only change these specs). The step is one jitted program over the global batch, so
per-example losses are averaged over the global batch and XLA inserts the gradient
all-reduce: no process ever averages parameters after a local update.
"""

from __future__ import annotations

import itertools
import os

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from orbax.checkpoint import multihost

from instagan_jax import train_step as ts
from instagan_jax.xla_options import compiler_options

DATA_AXIS = "data"

# How long a process waits for the others at a barrier: one process building the dataset,
# or compiling the step on a slower or busier host, can be minutes behind.
BARRIER_TIMEOUT_S = 3600
_barriers = itertools.count()  # every process passes the same barriers in the same order

# Variables that mean "this process is one of several": set by JAX's own launch convention,
# by SLURM (srun), by Open MPI (mpirun), and on multi-host Cloud TPU VMs.
_CLUSTER_SIZE_VARIABLES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def cluster_wants_distributed(environ=os.environ) -> bool:
    """Whether the environment describes a multi-process job that jax.distributed can join."""
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if any(int(environ.get(name, "1") or 1) > 1 for name in _CLUSTER_SIZE_VARIABLES):
        return True
    return "," in environ.get("TPU_WORKER_HOSTNAMES", "")


def initialize_distributed(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1) -> bool:
    """Starts jax.distributed when asked to (arguments) or when the cluster says so (environment).

    Must run before anything touches a device. Returns whether it started.
    """
    if coordinator_address or num_processes:
        if not (coordinator_address and num_processes > 0 and 0 <= process_id < num_processes):
            raise ValueError(
                "a multi-process run needs --coordinator_address HOST:PORT, --num_processes N and "
                f"--process_id in [0, N); got {coordinator_address!r}, {num_processes}, {process_id}"
            )
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif cluster_wants_distributed():
        jax.distributed.initialize()  # JAX reads the coordinator, size and rank from the cluster
    else:
        return False
    logging.info(
        "process %d of %d: %d local of %d devices", jax.process_index(), jax.process_count(),
        jax.local_device_count(), jax.device_count(),
    )  # fmt: skip
    return True


def make_mesh(data_devices: int = -1) -> Mesh:
    """A (data,) mesh over all devices; data_devices must be -1 (all) or the device count."""
    if data_devices not in (-1, jax.device_count()):
        raise ValueError(f"mesh_shape ({data_devices},) does not cover the {jax.device_count()} devices (use -1)")
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def sharded_train_step(cfg: ts.StepConfig, mesh: Mesh):
    """train_step jitted for the mesh: replicated state in and out, batch split on data, state donated."""
    return jax.jit(
        lambda state, batch: ts.train_step(cfg, state, batch),
        in_shardings=(replicated(mesh), batch_sharded(mesh)),
        out_shardings=(replicated(mesh), replicated(mesh)),
        donate_argnums=(0,),
        compiler_options=compiler_options(),
    )


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's rows -> the global batch, split over the data axis (no copy between hosts)."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def wait_for_every_process(name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> None:
    """Blocks until every process has got here (a no-op in a single-process run).

    A barrier of the coordination service, not ``multihost_utils.sync_global_devices``: that
    one is a collective, and on CPU the collectives (gloo) give up when a peer arrives more
    than 30 s later, which a process that builds the dataset or compiles more slowly does.
    The same holds for the first run of any program with collectives: compile it on every
    process, then pass a barrier, then run it.
    """
    if jax.process_count() > 1:
        multihost.get_barrier_sync_fn()(key=f"instagan_jax/{next(_barriers)}/{name}", timeout_ms=timeout_s * 1000)


def every_process(value: int) -> list[int]:
    """``value`` as seen by each process, in process order (all must call it)."""
    if jax.process_count() == 1:
        return [int(value)]
    wait_for_every_process("every_process")  # the gather below is a collective: start it together
    return [int(x) for x in np.ravel(multihost_utils.process_allgather(np.int64(value)))]
