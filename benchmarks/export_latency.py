r"""Latency of an exported ONNX translator in onnxruntime against ``Translator`` on this machine.

    python benchmarks/export_latency.py --ngf 32 --sizes 256,512 --ins_max 4,8 --batches 1,8 --json /tmp/latency.json

One random-weight generator of the default architecture at --ngf, every mask slot filled (the
slowest case: no chunk is skipped), ins_per 2. Per (size, ins_max, batch): *cold*, from
nothing to the first batch translated (Translator: building it and compiling; ONNX: opening
the session on the exported file and its first run), and *steady*, the median of --repeats
further batches, each runtime in a process of its own (its peak memory is reported; one
that runs out of memory is reported as such). Export time (jax2onnx, once per size and
ins_max) is reported apart.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import onnxruntime

from instagan_jax import checkpoint, export, models
from instagan_jax.inference import Translator, prepare_masks


def photos_and_masks(batch: int, size: int, ins_max: int, seed: int = 0):
    """Random photos, each with ins_max discs as its instances."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
    y, x = np.mgrid[:size, :size]
    masks = -np.ones((batch, size, size, ins_max), np.float32)
    for b in range(batch):
        for k in range(ins_max):
            cy, cx, r = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size, size / 10
            masks[b, ..., k] = np.where((y - cy) ** 2 + (x - cx) ** 2 <= r * r, 1.0, -1.0)
    return images, masks


def timed(function, *args):
    began = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - began, result


def measure_translator(workdir, images, masks, ins_max, repeats):
    def first():
        translator = Translator.from_workdir(workdir, ins_per=2, ins_max=ins_max)
        return translator, translator.translate_batch(images, masks, "AtoB")

    cold, (translator, _) = timed(first)
    steady = [timed(lambda: translator.translate_batch(images, masks, "AtoB"))[0] for _ in range(repeats)]
    return cold, statistics.median(steady)


def measure_onnx(model_path, images, masks, repeats):
    def first():
        session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        return session, session.run(None, {"images": images, "masks": masks})

    cold, (session, _) = timed(first)
    steady = [timed(lambda: session.run(None, {"images": images, "masks": masks}))[0] for _ in range(repeats)]
    return cold, statistics.median(steady)


def measure_one(args) -> None:
    """In this process: one runtime on one (size, ins_max, batch); prints a JSON record."""
    images, masks = photos_and_masks(args.batch, args.size, args.ins_max)
    if args.measure == "translator":
        prepared = np.stack([prepare_masks(m, args.ins_max) for m in masks])
        cold, steady = measure_translator(args.workdir, images, prepared, args.ins_max, args.repeats)
    else:
        cold, steady = measure_onnx(args.model, images, masks, args.repeats)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"cold_s": round(cold, 2), "steady_s": round(steady, 2), "peak_gb": round(peak_gb, 1)}))


def in_subprocess(runtime: str, workdir: str, model: str, size: int, ins_max: int, batch: int, repeats: int) -> dict:
    command = [sys.executable, __file__, f"--measure={runtime}", f"--workdir={workdir}", f"--model={model}",
               f"--size={size}", f"--one_ins_max={ins_max}", f"--batch={batch}", f"--repeats={repeats}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        killed = done.returncode in (-9, 137)
        return {"error": "out of memory" if killed else done.stderr.strip().splitlines()[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ngf", type=int, default=32)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--ins_max", default="4,8")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--measure", choices=["translator", "onnx"], help=argparse.SUPPRESS)
    for name in ("workdir", "model"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    for name in ("size", "one_ins_max", "batch"):
        parser.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        args.ins_max = args.one_ins_max
        return measure_one(args)
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = os.path.join(scratch, "run")
        spec = models.ModelSpec(ngf=args.ngf)
        checkpoint.save_networks(workdir, spec, models.init_networks(spec, jax.random.PRNGKey(0), 32, 32, 1))
        for size in map(int, args.sizes.split(",")):
            for ins_max in map(int, args.ins_max.split(",")):
                translator = Translator.from_workdir(workdir, ins_per=2, ins_max=ins_max)
                metadata = export.translator_metadata(translator, "AtoB", 0)
                export_s, model = timed(export.export_translator_onnx, translator, "AtoB", size, size, metadata)
                model_path = os.path.join(scratch, f"a2b_{size}_{ins_max}.onnx")
                with open(model_path, "wb") as f:
                    f.write(model.SerializeToString())
                del model
                for batch in map(int, args.batches.split(",")):
                    record = {"size": size, "ins_max": ins_max, "batch": batch, "onnx_export_s": round(export_s, 1)}
                    for runtime in ("translator", "onnx"):
                        measured = in_subprocess(runtime, workdir, model_path, size, ins_max, batch, args.repeats)
                        record.update({f"{runtime}_{k}": v for k, v in measured.items()})
                    records.append(record)
                    print(json.dumps(record), flush=True)
    result = {"ngf": args.ngf, "ins_per": 2, "device": jax.devices()[0].device_kind, "threads": os.cpu_count(),
              "onnxruntime": onnxruntime.__version__, "records": records}  # fmt: skip

    def cell(r, runtime):
        if f"{runtime}_error" in r:
            return r[f"{runtime}_error"]
        return f"{r[f'{runtime}_cold_s']} / {r[f'{runtime}_steady_s']} ({r[f'{runtime}_peak_gb']} GB)"

    print("| size | ins_max | batch | Translator cold / steady s (peak) | ONNX Runtime cold / steady s (peak) |")
    print("|---|---|---|---|---|")
    for r in records:
        print(f"| {r['size']} | {r['ins_max']} | {r['batch']} | {cell(r, 'translator')} | {cell(r, 'onnx')} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
