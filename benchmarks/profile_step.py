r"""Where the train step's time goes: a per-op table from a jax.profiler trace.

    python benchmarks/profile_step.py --size 128 --ngf 32 --ins_max 4 --ins_per 2 --json /tmp/profile.json

Compiles the step of benchmarks/train_step.py, traces --steps runs of it, and joins the
trace's per-instruction times with the compiled HLO: each convolution gets its role
(forward, input gradient, kernel gradient), its shapes, its FLOPs and the FLOP/s it achieved
next to this machine's float32 matmul rate. Prints the ops that take the most time and a
summary per op kind; --json writes both.

XLA's CPU runtime runs independent ops side by side, so the traced times can add up to more
than the step: a share says where the work is, not what removing it saves; confirm a change
with benchmarks/train_step.py. And it runs Eigen's convolutions and dots asynchronously: the
trace times only their launch (rates above the matmul rate), and their work shows nowhere.
The step is compiled as train.py compiles it (instagan_jax/xla_options.py), so on CPU its
convolutions are Eigen's; the table then places the rest of the work, and the note under the
first line says how much of the step the trace does not see. The fusions' times are inflated
by the convolutions' threads running beside them (at 128x128 the trace puts 74-76% of its
time in fusions; without its convolutions the whole step takes 15-24% of its time): read them
against each other, and the convolutions' share from benchmarks/convolution_share.py.
"""

import collections
import glob
import gzip
import json
import math
import re
import tempfile

import compiled_step  # the step of benchmarks/train_step.py, and the matmul rate
import jax

from instagan_jax.json_files import write_json

_COMPUTATION = re.compile(r"^(?:ENTRY )?%(?P<name>[\w.\-]+) .*\{$")
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT )?%(?P<name>[\w.\-]+) = (?P<shape>\S+) (?P<opcode>[\w\-]+)\((?P<operands>[^)]*)\)"
)
_SHAPE = re.compile(r"\w+\[([\d,]*)\]")


def dims(shape: str) -> tuple[int, ...]:
    """'f32[2,34,34,128]{3,2,1,0}' -> (2, 34, 34, 128)."""
    match = _SHAPE.search(shape)
    return tuple(int(d) for d in match.group(1).split(",") if d) if match else ()


def _layer(op_name: str) -> str:
    """'jit(f)/transpose(jvp(SetGenerator))/encoder_seg/conv_in/conv' -> 'SetGenerator/encoder_seg/conv_in'."""
    parts = [re.sub(r"^(?:\w+\()+|\)+$", "", p) for p in op_name.split("/")[1:-1]]
    return "/".join(p for p in parts if p and p not in ("while", "body", "closed_call", "checkpoint"))


def _flops(line: str, opcode: str, shape: str, operands: list[str]) -> tuple[float, str | None]:
    """FLOPs of a convolution or dot, and for a convolution whether it is a kernel gradient."""
    if opcode == "convolution" and len(operands) > 1:
        labels = re.search(r"dim_labels=\w+_(\w+)->(\w+)", line)
        window = re.search(r"window=\{size=([\dx]+)", line)
        groups = re.search(r"feature_group_count=(\d+)", line)
        rhs, out = dims(operands[1]), dims(shape)
        if not (labels and rhs):
            return 0.0, None
        rhs_labels, out_labels = labels.groups()
        area = math.prod(rhs[i] for i, c in enumerate(rhs_labels) if c.isdigit())
        flops = 2.0 * math.prod(out) * area * rhs[rhs_labels.index("i")] / (int(groups.group(1)) if groups else 1)
        out_area = math.prod(out[i] for i, c in enumerate(out_labels) if c.isdigit())
        window_area = math.prod(int(d) for d in window.group(1).split("x")) if window else area
        return flops, "kernel grad" if window_area > out_area else None
    if opcode == "dot" and operands:
        contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line)
        lhs = dims(operands[0])
        size = math.prod(lhs[int(d)] for d in contracting.group(1).split(",") if d) if contracting else 1
        return 2.0 * math.prod(dims(shape)) * size, None
    return 0.0, None


def _convolution_attributes(line: str) -> str | None:
    """A convolution's window and dimension labels as HLO prints them ('window={...}, dim_labels=...')."""
    window, labels = re.search(r"window=\{[^}]*\}", line), re.search(r"dim_labels=[\w>-]+", line)
    return f"{window.group(0)}, {labels.group(0)}" if window and labels else None


def parse_hlo(text: str) -> dict[str, dict]:
    """{instruction name: {kind, shape, operands, flops, layer, convolution}} for every instruction of the module.

    XLA's CPU backend wraps convolutions in fusions (YNNPACK / XNNPACK calls); a fusion takes
    the kind and FLOPs of the convolution or dot inside it, and its role from its metadata.
    """
    computations, current, shapes = collections.defaultdict(list), None, {}
    for line in text.splitlines():
        if header := _COMPUTATION.match(line):
            current = header["name"]
            continue
        match = _INSTRUCTION.match(line)
        if not match or current is None:
            continue
        operands = [o.strip().split(" ")[-1].lstrip("%") for o in match["operands"].split(",") if o.strip()]
        shapes[match["name"]] = match["shape"]
        calls = re.search(r"calls=%([\w.\-]+)", line)
        op_name = re.search(r'op_name="([^"]*)"', line)
        flops, grad = _flops(line, match["opcode"], match["shape"], [shapes.get(o, "?") for o in operands])
        computations[current].append({
            "name": match["name"], "opcode": match["opcode"], "shape": match["shape"], "flops": flops, "grad": grad,
            "operands": [shapes.get(o, "?") for o in operands], "calls": calls and calls.group(1),
            "op_name": op_name.group(1) if op_name else "", "convolution": _convolution_attributes(line),
        })  # fmt: skip
    ops = {}
    for instructions in computations.values():
        for ins in instructions:
            inner = [i for i in computations.get(ins["calls"], []) if i["opcode"] in ("convolution", "dot")]
            heavy = inner[0] if inner else ins
            kind = heavy["opcode"] if heavy["opcode"] in ("convolution", "dot") else ins["opcode"]
            if kind == "convolution":
                role = heavy["grad"] or ("input grad" if "transpose(" in ins["op_name"] else "forward")
                kind = f"convolution ({role})"
            layer = _layer(ins["op_name"] or heavy["op_name"])
            ops[ins["name"]] = {"kind": kind, "shape": heavy["shape"], "operands": heavy["operands"],
                                "flops": heavy["flops"], "layer": layer,
                                "convolution": heavy["convolution"]}  # fmt: skip
    return ops


def trace_step(args, steps: int) -> tuple[dict[str, dict], dict[str, float], dict[str, float], float, float]:
    """The step of the flags compiled, run once untraced, then traced for ``steps`` steps:
    (parse_hlo's ops, seconds and runs per step of each executed instruction, the untraced
    step's seconds, seconds to compile). Trace events are named like HLO instructions; an
    instruction of the chunk scan's body runs once per chunk, so its FLOPs per step are its
    FLOPs times its runs.
    """
    compiled, _, state, batch, compile_time = compiled_step.compile_step(args, args.ins_max)
    ops = parse_hlo(compiled.as_text())
    state, (step_time,) = compiled_step.time_steps(compiled, state, batch, 1)
    with tempfile.TemporaryDirectory() as log_dir:
        jax.profiler.start_trace(log_dir, create_perfetto_trace=True)
        for _ in range(steps):
            state, metrics = compiled(state, batch)
            jax.block_until_ready(metrics)
        jax.profiler.stop_trace()
        (path,) = glob.glob(f"{log_dir}/**/perfetto_trace.json.gz", recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals, runs = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("ph") == "X" and "dur" in event:
            totals[event["name"]] += event["dur"] * 1e-6 / steps
            runs[event["name"]] += 1 / steps
    return ops, totals, runs, step_time, compile_time


def main():
    parser = compiled_step.one_step_parser(__doc__, steps=2)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    ops, times, runs, step_time, compile_time = trace_step(args, args.steps)
    peak = compiled_step.matmul_flops_per_sec()

    rows = []
    for name, seconds in times.items():
        info = ops.get(name)
        if info is None:
            continue
        flops = info["flops"] * runs[name]
        achieved = flops / seconds if flops and seconds > 0 else None
        rows.append({**info, "name": name, "seconds": seconds, "runs": runs[name], "gflop": flops / 1e9,
                     "gflops_per_s": achieved and achieved / 1e9})  # fmt: skip
    rows.sort(key=lambda r: -r["seconds"])
    accounted = sum(r["seconds"] for r in rows)
    by_kind = collections.defaultdict(lambda: {"seconds": 0.0, "gflop": 0.0, "runs": 0.0})
    for r in rows:
        k = by_kind[r["kind"]]
        k["seconds"] += r["seconds"]
        k["gflop"] += r["gflop"]
        k["runs"] += r["runs"]

    print(f"step {step_time:.2f} s (compile {compile_time:.0f} s), ops traced {accounted:.2f} s/step, "
          f"f32 matmul {peak / 1e9:.0f} GFLOP/s  [size {args.size}, ngf {args.ngf}, ins {args.ins_max}/{args.ins_per}, "
          f"batch {args.batch_size}]")  # fmt: skip
    if accounted < step_time:
        print(f"note: {step_time - accounted:.2f} s/step not in the trace: asynchronous ops (Eigen's convolutions and "
              "dots) are traced at launch only; rates above the matmul rate mark them")  # fmt: skip
    print(f"\n{'op kind':<28} {'runs':>6} {'s/step':>8} {'share':>6} {'GFLOP':>8} {'GFLOP/s':>8} {'of peak':>7}")
    for kind, k in sorted(by_kind.items(), key=lambda kv: -kv[1]["seconds"]):
        rate = k["gflop"] / k["seconds"] if k["gflop"] else float("nan")
        print(f"{kind:<28} {k['runs']:>6.0f} {k['seconds']:>8.3f} {k['seconds'] / accounted:>6.1%} {k['gflop']:>8.2f} "
              f"{rate:>8.1f} {rate * 1e9 / peak:>7.1%}")  # fmt: skip
    print(f"\n{'top ops':<28} {'s/step':>8} {'GFLOP/s':>8}  {'layer':<44} output <- operands")
    for r in rows[: args.top]:
        rate = f"{r['gflops_per_s']:.1f}" if r["gflops_per_s"] else "-"
        shapes = f"{r['shape']} <- {', '.join(r['operands'])}"
        print(f"{r['kind']:<28} {r['seconds']:>8.3f} {rate:>8}  {r['layer'][-44:]:<44} {shapes}")
    if args.json:
        summary = {k: dict(v) for k, v in by_kind.items()}
        record = {"args": vars(args), "step_time_s": step_time, "compile_time_s": compile_time,
                  "matmul_peak_flops_per_sec": peak, "by_kind": summary, "ops": rows}  # fmt: skip
        write_json(args.json, record, indent=1)


if __name__ == "__main__":
    main()
