"""The train step that the benchmarks time and profile: its flags, the step compiled for them, its timing.

benchmarks/train_step.py, profile_step.py and convolution_share.py take the same model and
step flags and build the same step on the same synthetic batch, so a profile explains the
timed step.
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
from synthetic import synthetic_batch

from instagan_jax import convolution, layers, parallel
from instagan_jax import train_step as ts
from instagan_jax.models import ModelSpec


def add_step_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the networks and the step (--size, --ngf, --ins_max and --steps are each script's own)."""
    parser.add_argument("--ndf", type=int, default=None, help="default: --ngf")
    parser.add_argument("--ngf_mask", type=int, default=0, help="mask-encoder width; 0: ngf (the paper's)")
    parser.add_argument("--mask_decoder_width", type=int, default=0, help="0: its input channels / 4 (the paper's)")
    parser.add_argument("--n_blocks", type=int, default=9)
    parser.add_argument("--n_layers_d", type=int, default=3, help="the discriminators' strided layers")
    parser.add_argument("--model", default="insta_gan")
    parser.add_argument("--upsample", default="transpose", help="transpose (the paper's) | resize_conv")
    parser.add_argument("--ema_decay", type=float, default=0.0, help="the generators' moving average; 0: none")
    parser.add_argument("--ins_per", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=1, help="per device")
    parser.add_argument("--instances", type=int, default=None, help="instances per example (default: every slot)")
    parser.add_argument("--unroll", choices=["no", "yes"], default="no", help="unroll the chunk scan")
    parser.add_argument("--compute_dtype", choices=layers.COMPUTE_DTYPES, default="float32")
    parser.add_argument("--remat", choices=layers.REMAT, default="none", help="what the backward pass recomputes")
    parser.add_argument("--convolutions", choices=convolution.CONVOLUTION_FORMS, default=None,
                        help="convolution.conv2d's forms (default: the backend's, cpu on a CPU)")  # fmt: skip


def one_step_parser(description: str, steps: int) -> argparse.ArgumentParser:
    """The flags of a script that studies the step at one ins_max (128x128, ngf 32, ins_max 4 unless told)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--ngf", type=int, default=32)
    add_step_arguments(parser)
    parser.add_argument("--ins_max", type=int, default=4)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--json", default=None)
    return parser


def step_config(args: argparse.Namespace, ins_max: int) -> ts.StepConfig:
    spec = ModelSpec(
        model=args.model, ngf=args.ngf, ndf=args.ndf or args.ngf, n_blocks=args.n_blocks, n_layers_d=args.n_layers_d,
        upsample=args.upsample, ngf_mask=args.ngf_mask, mask_decoder_width=args.mask_decoder_width,
        compute_dtype=args.compute_dtype, remat=args.remat,
    )  # fmt: skip
    return ts.StepConfig(spec=spec, ins_max=ins_max, ins_per=min(args.ins_per, ins_max), pool_size=50,
                         scan_unroll=args.unroll == "yes", ema_decay=args.ema_decay)  # fmt: skip


def compile_step(args: argparse.Namespace, ins_max: int):
    """(compiled step, its config, initial state, synthetic batch, seconds to compile).

    The step is the sharded one of `instagan_jax.parallel` (data axis over all devices;
    --batch_size per device), compiled as train.py compiles it.
    """
    if args.convolutions:  # read when the step is traced
        os.environ[convolution.CONVOLUTIONS_VARIABLE] = args.convolutions
    cfg = step_config(args, ins_max)
    mesh = parallel.make_mesh()
    state = jax.device_put(ts.create_state(cfg, jax.random.PRNGKey(0), args.size, args.size), parallel.replicated(mesh))
    batch = parallel.global_batch(
        synthetic_batch(args.batch_size * jax.device_count(), args.size, ins_max, args.instances), mesh
    )
    start = time.perf_counter()
    compiled = parallel.sharded_train_step(cfg, mesh).lower(state, batch).compile()
    return compiled, cfg, state, batch, time.perf_counter() - start


def time_steps(compiled, state, batch, steps: int) -> tuple[object, list[float]]:
    """(state after, seconds of each step) for one warm-up step and then ``steps`` timed ones."""
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        if i:
            times.append(time.perf_counter() - start)
    return state, times


def matmul_flops_per_sec(n: int = 1024, repeats: int = 10) -> float:
    """This machine's float32 matmul rate now (it varies on a shared machine): the yardstick for FLOP/s."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        f(a).block_until_ready()
    return 2 * n**3 * repeats / (time.perf_counter() - start)
