r"""What the train step's convolutions cost: the step timed without each of their roles.

    python benchmarks/convolution_share.py --size 128 --ngf 32 --ins_max 4 --ins_per 2 --json /tmp/share.json

Eigen runs convolutions asynchronously, so the trace of benchmarks/profile_step.py sees only
their launch. This script measures them by leaving them out: it compiles the step of
benchmarks/train_step.py again with one role of every convolution in ``layers.conv2d``
(forward, input gradient, kernel gradient, or all three) replaced by a stand-in of the same
shape that only averages what it reads, and times each variant, alternating over --rounds
(this machine's times drift). The stand-ins make the numbers meaningless; only the times
count. What a role saves, alone or with the others, is the time it takes in the step as
XLA schedules it, side by side with other work. The generators' 7x7 output layers (matrix
products, ``layers._conv_by_tap_products``) keep running in every variant.
"""

import functools
from unittest import mock

import compiled_step
import jax
import jax.numpy as jnp
import numpy as np

from instagan_jax import layers
from instagan_jax.json_files import write_json

ROLES = ("forward", "input gradient", "kernel gradient")
VARIANTS = {"as is": (), **{f"without {role}": (role,) for role in ROLES}, "without all": ROLES}


def _stand_in(shape, *inputs) -> jax.Array:
    """Zeros of ``shape`` plus the mean of the inputs: one pass over them, and the work before it stays live."""
    return jnp.zeros(shape, jnp.float32) + sum(jnp.mean(a) for a in inputs)


def convolution_without(roles: tuple[str, ...]):
    """``layers._conv2d`` with the given roles replaced by stand-ins (same custom gradient otherwise)."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
    def conv(x, kernel, stride, padding):
        return forward(x, kernel, stride, padding)[0]

    def forward(x, kernel, stride, padding):
        y, residuals = layers._conv2d_forward(x, kernel, stride, padding)
        return (_stand_in(y.shape, x, kernel) if "forward" in roles else y), residuals

    def backward(stride, padding, residuals, dy):
        dx, dk = layers._conv2d_backward(stride, padding, residuals, dy)
        x, kernel = residuals
        dx = _stand_in(dx.shape, dy, kernel) if "input gradient" in roles else dx
        dk = _stand_in(dk.shape, dy, x) if "kernel gradient" in roles else dk
        return dx, dk

    conv.defvjp(forward, backward)
    return conv


def time_variant(args, roles: tuple[str, ...]) -> float:
    """Median seconds of --steps steps of the step compiled without ``roles``."""
    with mock.patch.object(layers, "_conv2d", convolution_without(roles)):
        compiled, _, state, batch, _ = compiled_step.compile_step(args, args.ins_max)
    _, times = compiled_step.time_steps(compiled, state, batch, args.steps)
    return float(np.median(times))


def main():
    parser = compiled_step.one_step_parser(__doc__, steps=3)
    parser.add_argument("--rounds", type=int, default=2)
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
    if args.json:
        write_json(args.json, {"args": vars(args), "step_time_s": times}, indent=1)


if __name__ == "__main__":
    main()
