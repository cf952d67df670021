r"""Latency of an exported ONNX translator in onnxruntime against ``Translator`` on this machine.

    python benchmarks/export_latency.py --ngf 32 --sizes 256,512 --ins_max 4,8 --batches 1,8 --json /tmp/latency.json

One random-weight generator of the default architecture at --ngf, every mask slot filled (the
slowest case: no chunk is skipped), ins_per 2. Per (size, ins_max, batch): *cold*, from
nothing to the first batch translated (Translator: building it and compiling; ONNX: opening
the session on the exported file and its first run), and *steady*, the median of --repeats
further batches. Export time (jax2onnx, once per size and ins_max) is reported apart.
"""

import argparse
import json
import os
import statistics
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ngf", type=int, default=32)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--ins_max", default="4,8")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
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
                for batch in map(int, args.batches.split(",")):
                    images, masks = photos_and_masks(batch, size, ins_max)
                    prepared = np.stack([prepare_masks(m, ins_max) for m in masks])
                    jax_cold, jax_steady = measure_translator(workdir, images, prepared, ins_max, args.repeats)
                    onnx_cold, onnx_steady = measure_onnx(model_path, images, masks, args.repeats)
                    record = {"size": size, "ins_max": ins_max, "batch": batch, "onnx_export_s": round(export_s, 1),
                              "translator_cold_s": round(jax_cold, 2), "translator_steady_s": round(jax_steady, 2),
                              "onnx_cold_s": round(onnx_cold, 2), "onnx_steady_s": round(onnx_steady, 2)}  # fmt: skip
                    records.append(record)
                    print(json.dumps(record), flush=True)
    result = {"ngf": args.ngf, "ins_per": 2, "device": jax.devices()[0].device_kind, "threads": os.cpu_count(),
              "onnxruntime": onnxruntime.__version__, "records": records}  # fmt: skip
    print("| size | ins_max | batch | Translator cold / steady (s) | ONNX Runtime cold / steady (s) |")
    print("|---|---|---|---|---|")
    for r in records:
        print(f"| {r['size']} | {r['ins_max']} | {r['batch']} | {r['translator_cold_s']} / {r['translator_steady_s']} "
              f"| {r['onnx_cold_s']} / {r['onnx_steady_s']} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
