r"""Times the jitted train step, and reports XLA's memory and FLOP estimates.

    python benchmarks/train_step.py --size 200 --ngf 64 --ins_per 2 --ins_max 2,4,8,16 --batch_size 1 \
        --steps 5 --json /tmp/train_step.json

Writes a JSON list, one record per ins_max, and prints a table with the achieved FLOP/s
next to this machine's measured float32 matmul FLOP/s. --batch_size is per device; the step
is the sharded one of `instagan_jax.parallel` (data axis over all devices). --steps 0 only
compiles it and reports XLA's estimates (memory at sizes this machine cannot run, e.g. per
--remat and --compute_dtype). --reference DIR
also times the authors' step (benchmarks/reference_step.py); with --rounds N the two are
timed in turn N times, since this machine's speed drifts over minutes.

Scaling over virtual CPU devices at a fixed per-device batch (each count in a subprocess,
since the device count is fixed at start-up):

    python benchmarks/train_step.py --size 32 --ngf 8 --n_blocks 3 --ins_max 4 --devices 1,2,4,8
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import compiled_step
import jax
import numpy as np

from instagan_jax import convolution
from instagan_jax.json_files import read_json, write_json


def measure(args, ins_max: int) -> dict:
    """The step's record: its time the median of --steps steps in each of --rounds rounds, and the
    median over rounds; with --reference, the authors' step timed after each round (alternating)."""
    compiled, cfg, state, batch, compile_time = compiled_step.compile_step(args, ins_max)
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    rounds, theirs = [], []
    for _ in range(args.rounds if args.steps else 0):  # --steps 0: XLA's estimates only
        state, times = compiled_step.time_steps(compiled, state, batch, args.steps)
        rounds.append(float(np.median(times)))
        if args.reference:
            theirs.append(reference_step_time(args, ins_max))
    compared = {
        "reference_step_time_s": float(np.median(theirs)), "reference_step_time_s_each_round": theirs,
        "speedup_vs_reference": float(np.median(theirs) / np.median(rounds)) if rounds else None,
        "speedup_each_round": [t / o for t, o in zip(theirs, rounds, strict=True)],
    } if args.reference else {}  # fmt: skip
    return {
        "size": args.size, "ngf": args.ngf, "ngf_mask": args.ngf_mask, "mask_decoder_width": args.mask_decoder_width,
        "ndf": cfg.spec.ndf, "n_blocks": args.n_blocks, "n_layers_d": args.n_layers_d, "ema_decay": args.ema_decay,
        "model": args.model, "upsample": args.upsample, "ins_max": ins_max, "ins_per": cfg.ins_per,
        "instances": args.instances, "batch_size_per_device": args.batch_size,
        "step_time_s": float(np.median(rounds)) if rounds else None, "step_time_s_each_round": rounds,
        "compile_time_s": compile_time, "compute_dtype": args.compute_dtype, "remat": args.remat,
        **memory_fields(memory),
        "flops": float(cost.get("flops", float("nan"))) * chunks_run(args, cfg) if cost else None,
        "device": jax.devices()[0].device_kind, "device_count": jax.device_count(), "unroll": args.unroll,
        "convolutions": convolution.convolution_forms(),
        **compared,
    }  # fmt: skip


def memory_fields(memory) -> dict:
    """XLA's memory estimate of the compiled step (None where the backend gives none)."""
    if memory is None:
        return {"memory_bytes": None, "temp_bytes": None, "argument_bytes": None}
    # the donated state's outputs reuse its argument buffers (alias): counted once
    total = memory.argument_size_in_bytes + memory.temp_size_in_bytes + memory.output_size_in_bytes
    return {
        "memory_bytes": int(total - memory.alias_size_in_bytes),
        "temp_bytes": int(memory.temp_size_in_bytes),
        "argument_bytes": int(memory.argument_size_in_bytes),
    }


def chunks_run(args, cfg) -> float:
    """What to scale XLA's FLOP count by: it counts a rolled loop's body once, and a skipped
    chunk (no instance: a ``lax.cond`` branch) as if it ran (the rest of the step is tiny)."""
    with_instances = (
        cfg.num_chunks if args.instances is None else min(cfg.num_chunks, -(-args.instances // cfg.ins_per))
    )
    return with_instances / cfg.num_chunks if cfg.scan_unroll else with_instances


def reference_step_time(args, ins_max: int) -> float:
    """The authors' step on the same batch, timed by benchmarks/reference_step.py in its own process."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_step.py")
    keys = ("reference", "size", "ngf", "ins_per", "batch_size", "steps", "instances")
    forwarded = [f"--{k}={getattr(args, k)}" for k in keys if getattr(args, k) is not None]
    done = subprocess.run([sys.executable, script, *forwarded, f"--ins_max={ins_max}"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])["step_time_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=16)
    compiled_step.add_step_arguments(parser)
    parser.add_argument("--ins_max", default="2,4,8")
    parser.add_argument("--devices", default=None, help="e.g. 1,2,4,8: scaling over virtual CPU devices")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1,
                        help="time the step (and with --reference the authors' after it) this many times, alternating: "
                             "this machine's speed drifts by +-15%% over minutes")  # fmt: skip
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--reference", default=None, help="checkout of the authors' code: also time their step (needs torch)"
    )
    args = parser.parse_args()
    not_the_authors = (args.ngf_mask not in (0, args.ngf) or args.mask_decoder_width or args.ema_decay
                       or args.upsample != "transpose" or args.model != "insta_gan")  # fmt: skip
    if args.reference and not_the_authors:
        parser.error("--reference times the authors' InstaGAN step: --model insta_gan, --upsample transpose, "
                     "no --ema_decay, a mask path as wide as --ngf makes it")  # fmt: skip
    if args.devices:
        return scaling(args)
    peak = compiled_step.matmul_flops_per_sec()
    print(f"device: {jax.devices()[0].device_kind}   f32 matmul: {peak / 1e9:.1f} GFLOP/s")
    header = (
        f"{'ins_max':>7} {'step s':>8} {'compile s':>9} {'memory MiB':>10} {'GFLOP':>8} {'GFLOP/s':>8} {'of peak':>7}"
    )
    print(header + (f" {'torch s':>8} {'speed-up':>8}" if args.reference else ""))
    records = []
    for n in args.ins_max.split(","):  # print and save as each finishes: a long run keeps what it measured
        r = measure(args, int(n))
        achieved = r["flops"] / r["step_time_s"] if r["flops"] and r["step_time_s"] else float("nan")
        r["flops_per_sec"], r["matmul_peak_flops_per_sec"] = achieved, peak
        records.append(r)
        mib = r["memory_bytes"] / 2**20 if r["memory_bytes"] else float("nan")
        row = f"{r['ins_max']:>7} {r['step_time_s'] or float('nan'):>8.3f} {r['compile_time_s']:>9.1f} {mib:>10.1f} "
        row += f"{r['flops'] / 1e9:>8.2f} {achieved / 1e9:>8.2f} {achieved / peak:>7.1%}"
        if args.reference:
            row += f" {r['reference_step_time_s']:>8.3f} {r['speedup_vs_reference']:>7.2f}x"
        if args.rounds > 1:
            row += "   rounds: " + " ".join(f"{t:.2f}" for t in r["step_time_s_each_round"]) + " s"
            if args.reference:
                row += ", " + " ".join(f"{x:.2f}" for x in r["speedup_each_round"]) + "x"
        print(row, flush=True)
        if args.json:
            write_json(args.json, records, indent=1)


def scaling(args) -> None:
    """Runs this script once per device count and prints step time at a fixed per-device batch."""
    records = []
    forwarded = ("size", "ngf", "ndf", "ngf_mask", "mask_decoder_width", "n_blocks", "n_layers_d", "model", "upsample",
                 "ema_decay", "ins_per", "batch_size", "steps", "unroll", "convolutions", "compute_dtype",
                 "remat")  # fmt: skip
    base = [f"--{k}={getattr(args, k)}" for k in forwarded if getattr(args, k) is not None]
    base.append(f"--ins_max={args.ins_max.split(',')[0]}")
    print(f"{'devices':>7} {'batch':>6} {'step s':>8} {'examples/s':>10}  (cores: {os.cpu_count()})")
    for n in (int(d) for d in args.devices.split(",")):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", CUDA_VISIBLE_DEVICES="")
            subprocess.run([sys.executable, __file__, *base, "--json", out.name], env=env, check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            r = read_json(out.name)[0]
        r["global_batch"] = r["batch_size_per_device"] * n
        records.append(r)
        print(f"{n:>7} {r['global_batch']:>6} {r['step_time_s']:>8.3f} {r['global_batch'] / r['step_time_s']:>10.2f}")
        if args.json:
            write_json(args.json, records, indent=1)


if __name__ == "__main__":
    main()
