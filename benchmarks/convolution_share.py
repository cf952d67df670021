r"""What the train step's convolutions cost: the step timed without each of their roles.

    python benchmarks/convolution_share.py --size 128 --ngf 32 --ins_max 4 --ins_per 2 --alone --json /tmp/share.json

Eigen runs convolutions asynchronously, so the trace of benchmarks/profile_step.py sees only
their launch. This script measures them by leaving them out: it compiles the step of
benchmarks/train_step.py again with one role of every convolution in ``convolution.conv2d``
(forward, input gradient, kernel gradient, or all three) replaced by a stand-in of the same
shape that only averages what it reads, and times each variant, alternating over --rounds
(this machine's times drift). The stand-ins make the numbers meaningless; only the times
count. What a role saves, alone or with the others, is the time it takes in the step as
XLA schedules it, side by side with other work. The generators' 7x7 output layers (matrix
products) keep running in every variant.

--alone also times each of the step's convolutions on its own (its shape and window from the
compiled step, how often it runs from a trace), one shape at a time with its operands hot in
cache, and adds them to the step without convolutions: the step's parts at their fastest,
which no schedule of them beats without fewer or faster convolutions (docs/speed.md).
"""

import collections
import functools
import re
import time

import compiled_step
import jax
import jax.numpy as jnp
import numpy as np
import profile_step

from instagan_jax import convolution, xla_options
from instagan_jax.json_files import write_json

ROLES = ("forward", "input gradient", "kernel gradient")
VARIANTS = {"as is": (), **{f"without {role}": (role,) for role in ROLES}, "without all": ROLES}


def _stand_in(shape, *inputs) -> jax.Array:
    """Zeros of ``shape`` plus the mean of the inputs: one pass over them, and the work before it stays live."""
    return jnp.zeros(shape, jnp.float32) + sum(jnp.mean(a) for a in inputs)


def convolution_without(roles: tuple[str, ...]):
    """The general convolution with the given roles replaced by stand-ins (same custom gradient otherwise)."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
    def conv(x, kernel, stride, padding):
        return forward(x, kernel, stride, padding)[0]

    def forward(x, kernel, stride, padding):
        y, residuals = convolution.general_forward(x, kernel, stride, padding)
        return (_stand_in(y.shape, x, kernel) if "forward" in roles else y), residuals

    def backward(stride, padding, residuals, dy):
        dx, dk = convolution.general_backward(stride, padding, residuals, dy)
        x, kernel = residuals
        dx = _stand_in(dx.shape, dy, kernel) if "input gradient" in roles else dx
        dk = _stand_in(dk.shape, dy, x) if "kernel gradient" in roles else dk
        return dx, dk

    conv.defvjp(forward, backward)
    return conv


def time_variant(args, roles: tuple[str, ...]) -> float:
    """Median seconds of --steps steps of the step compiled without ``roles``."""
    with convolution.substituted(convolution_without(roles)):
        compiled, _, state, batch, _ = compiled_step.compile_step(args, args.ins_max)
    _, times = compiled_step.time_steps(compiled, state, batch, args.steps)
    return float(np.median(times))


def hlo_convolution(attributes: str):
    """``lax.conv_general_dilated`` with the window and dimension labels of an HLO convolution, given as
    ``profile_step.parse_hlo`` keeps them: 'window={size=3x3 stride=2x2 pad=1_1x1_1}, dim_labels=b01f_01io->b01f'."""
    window = dict(field.split("=") for field in re.search(r"window=\{([^}]*)\}", attributes).group(1).split())
    lhs, rhs, out = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", attributes).groups()
    order = [int(c) for c in rhs if c.isdigit()]  # lax orders the window's dimensions as the kernel's spatial ones

    def per_dim(name, default):
        values = window[name].split("x") if name in window else [default] * len(order)
        return [values[d] for d in order]

    def spec(labels, batch, feature):
        return "".join({"0": "H", "1": "W", batch[0]: batch[1], feature[0]: feature[1]}[c] for c in labels)

    return functools.partial(
        jax.lax.conv_general_dilated,
        window_strides=[int(v) for v in per_dim("stride", "1")],
        padding=[tuple(int(p) for p in v.split("_")) for v in per_dim("pad", "0_0")],
        lhs_dilation=[int(v) for v in per_dim("lhs_dilate", "1")],
        rhs_dilation=[int(v) for v in per_dim("rhs_dilate", "1")],
        dimension_numbers=(spec(lhs, "bN", "fC"), spec(rhs, "oO", "iI"), spec(out, "bN", "fC")),
    )


def seconds_alone(convolution, lhs_shape, rhs_shape, out_shape, repeats: int = 3) -> float:
    """Best time of one run of the convolution jitted alone (the step's compiler options), its operands hot in cache."""
    lhs, rhs = (jax.random.normal(jax.random.key(i), s) for i, s in enumerate((lhs_shape, rhs_shape)))
    run = jax.jit(convolution, compiler_options=xla_options.compiler_options())
    if run(lhs, rhs).block_until_ready().shape != out_shape:
        raise ValueError(f"{lhs_shape} x {rhs_shape} does not give the step's {out_shape}: {convolution.keywords}")
    start = time.perf_counter()
    run(lhs, rhs).block_until_ready()
    count = max(3, int(0.2 / max(time.perf_counter() - start, 1e-5)))  # about 0.2 s a repeat
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            out = run(lhs, rhs)
        out.block_until_ready()
        best = min(best, (time.perf_counter() - start) / count)
    return best


def convolutions_alone(args) -> dict[str, float]:
    """Seconds per step of each role's convolutions when each runs alone: the step's convolutions
    (from its compiled HLO, how often each runs from a trace) timed one shape at a time."""
    ops, _, runs, _, _ = profile_step.trace_step(args, 1)
    shapes = collections.Counter()  # (role, lhs, rhs, output, window and labels) -> runs per step
    for name, count in runs.items():
        op = ops.get(name)
        if op and op["kind"].startswith("convolution") and op["convolution"]:
            lhs, rhs = (profile_step.dims(s) for s in op["operands"][:2])
            shapes[op["kind"], lhs, rhs, profile_step.dims(op["shape"]), op["convolution"]] += count
    seconds = collections.Counter()
    for (kind, lhs, rhs, out, attributes), count in shapes.items():
        seconds[kind] += count * seconds_alone(hlo_convolution(attributes), lhs, rhs, out)
    return dict(seconds)


def main():
    parser = compiled_step.one_step_parser(__doc__, steps=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--alone", action="store_true", help="also time each of the step's convolutions alone")
    args = parser.parse_args()
    times = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, roles in VARIANTS.items():
            times[name].append(time_variant(args, roles))
            print(f"  {name:<26} {times[name][-1]:.2f} s", flush=True)
    full = np.median(times["as is"])
    print(f"\n[size {args.size}, ngf {args.ngf}, ins {args.ins_max}/{args.ins_per}, batch {args.batch_size}]")
    print(f"{'variant':<26} {'step s (each round)':<22} {'saves':>7} {'share':>6}")
    for name, seconds in times.items():
        saved = full - np.median(seconds)
        rounds = " ".join(f"{s:.2f}" for s in seconds)
        print(f"{name:<26} {rounds:<22} {saved:>6.2f}s {saved / full:>6.0%}")
    record = {"args": vars(args), "step_time_s": times}
    if args.alone:
        alone = convolutions_alone(args)
        rest = float(np.median(times["without all"]))
        record["convolutions_alone_s"] = alone
        convolutions = sum(alone.values())
        roles = ", ".join(f"{kind.removeprefix('convolution (')[:-1]} {s:.2f} s" for kind, s in alone.items())
        print(f"\nthe same convolutions, each timed alone: {roles}")
        print(f"the step's parts alone: {rest + convolutions:.2f} s (the convolutions {convolutions:.2f} s, the step "
              f"without them {rest:.2f} s) against {full:.2f} s as one step")  # fmt: skip
    if args.json:
        write_json(args.json, record, indent=1)


if __name__ == "__main__":
    main()
