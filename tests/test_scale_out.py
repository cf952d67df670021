"""Data parallelism on virtual CPU devices and across two processes (each check in subprocesses,
because the device count and jax.distributed are fixed when a process starts)."""

import contextlib
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import REPO, normalised_bias, running

from instagan_jax import checkpoint, parallel


def virtual_devices_env(devices: int) -> dict:
    """The environment of a CPU process with ``devices`` virtual devices (the tests' XLA flags kept)."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    return dict(os.environ, XLA_FLAGS=flags, CUDA_VISIBLE_DEVICES="")


def run_worker(devices: int, *args) -> dict:
    env = virtual_devices_env(devices)
    done = subprocess.run([sys.executable, str(REPO / "tests" / "multidevice_worker.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def test_the_step_sharded_over_8_devices_equals_the_one_device_step():
    result = run_worker(8, "step")
    assert result["devices"] == 8
    assert result["batch_spec"] == "P('data',)" and result["params_spec"] == "P()"
    # Same losses up to float rounding (amplified where instance norm meets near-constant maps).
    assert result["loss_max_rel_diff"] < 1e-3
    # Per tensor. Adam's first updates are +-lr whatever the gradient's size, so a weight whose
    # gradient is rounding noise (a bias before an instance norm) may move either way: at most
    # 2 updates x 2 lr apart. Every kernel, and every bias with no norm after it, agrees in most
    # elements to a small fraction of lr; their Adam moments to a small fraction of their scale
    # (the second chunk's gradients are taken at weights apart by those noise moves); the
    # spectral vectors to float rounding.
    tensors = result["tensors"]
    assert {t["kind"] for t in tensors} == {"params", "spectral", "opt_g", "opt_d"}, len(tensors)
    for t in tensors:
        where = (t["kind"], t["path"], t["median"], t["max"], t["scale"])
        if t["kind"] == "params":
            assert t["max_in_lr"] <= 4.0 + 1e-3, where
        if t["kind"] == "spectral":
            assert t["max"] <= 1e-4 * t["scale"], where
        if not normalised_bias(t["path"]):
            if t["kind"] == "params":
                assert t["median_in_lr"] < 0.05, where
            elif t["kind"] in ("opt_g", "opt_d"):
                assert t["median"] <= 0.05 * t["scale"], where


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """2 processes x 4 virtual devices = 8 devices, tiny config, 2 steps, one checkpoint."""
    root = tmp_path_factory.mktemp("multiprocess")
    port = free_port()
    env = virtual_devices_env(4)
    with contextlib.ExitStack() as stack:  # both killed on the way out if one fails or hangs
        procs = []
        for process_id in range(2):
            cmd = [sys.executable, str(REPO / "experiments" / "train.py"), f"--workdir={root / 'run'}",
                   f"--config={REPO / 'experiments' / 'configs' / 'tiny.py'}", f"--config.data_dir={root / 'tfds'}",
                   "--config.batch_size=8", "--config.num_train_steps=2", f"--coordinator_address=127.0.0.1:{port}",
                   "--num_processes=2", f"--process_id={process_id}"]  # fmt: skip
            procs.append(stack.enter_context(running(cmd, root / f"log{process_id}.txt", env=env)))
        for proc in procs:
            proc.wait(timeout=900)
    logs = [(root / f"log{i}.txt").read_text() for i in range(2)]
    for proc, text in zip(procs, logs, strict=True):
        assert proc.returncode == 0, text[-3000:]
    return root, logs


def test_two_processes_train_and_checkpoint_together(two_process_run):
    root, logs = two_process_run
    for i, text in enumerate(logs):
        assert f"process {i} of 2: 4 local of 8 devices" in text
    assert checkpoint.complete_steps(root / "run") == [2]
    # only process 0 writes TensorBoard events and the config
    assert len(list((root / "run").glob("events.out.tfevents.*"))) == 1
    assert "Got images" in logs[0] and "Got images" not in logs[1]


def test_a_checkpoint_saved_on_8_devices_restores_on_1_and_on_4(two_process_run):
    root, _ = two_process_run
    on_four = run_worker(4, "restore", str(root / "run"))
    assert on_four["step"] == 2 and on_four["on_devices"] == 4
    _, networks = checkpoint.load_networks(str(root / "run"), averaged=False)  # this process: one device
    on_one = sum(
        np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves({k: v["params"] for k, v in networks.items()})
    )
    np.testing.assert_allclose(on_one, on_four["params_abs_sum"], rtol=1e-12)


def test_cluster_variables_decide_whether_to_start_jax_distributed():
    assert not parallel.cluster_wants_distributed({})
    assert not parallel.cluster_wants_distributed({"SLURM_NTASKS": "1", "TPU_WORKER_HOSTNAMES": "localhost"})
    assert parallel.cluster_wants_distributed({"SLURM_NTASKS": "4"})
    assert parallel.cluster_wants_distributed({"OMPI_COMM_WORLD_SIZE": "2"})
    assert parallel.cluster_wants_distributed({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert parallel.cluster_wants_distributed({"TPU_WORKER_HOSTNAMES": "host-0,host-1"})
    with pytest.raises(ValueError, match="--process_id in"):
        parallel.initialize_distributed("127.0.0.1:1234", 2, 5)
