r"""Input-pipeline throughput (examples/s) next to a plain single-process PIL loader.

    python benchmarks/input_pipeline.py --dataroot ../shared/data/instagan_samples/shp2gir_coco \
        --phase sample --size 200 --json /tmp/input_pipeline.json

Measures the tf.data pipeline (decode, joint bicubic resize, crop, flip, sort, pad; A and B
per example) on the folder builder over --dataroot and on procedural shapes with 8
instances, and a PIL loader doing the same work one example at a time.
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from instagan_jax import image_io, input_pipeline
from instagan_jax.datasets import builders

tf.config.set_visible_devices([], "GPU")


def pipeline_rate(builder, phase, size, ins_max, batch_size, seconds) -> float:
    splits = {x: input_pipeline.read_split(builder, f"{phase}{x}") for x in "AB"}
    load = (size + size // 10) // 4 * 4
    ds = input_pipeline.make_dataset(
        splits["A"], splits["B"], batch_size=batch_size, load_size=(load, load), fine_size=(size, size), ins_max=ins_max
    )
    it = ds.as_numpy_iterator()
    next(it)  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        count += len(next(it)["id_a"])
    return count / (time.perf_counter() - start)


def pil_rate(dataroot, phase, size, ins_max, seconds) -> float:
    """The reference's way: PIL open, bicubic resize of image and each mask, crop, flip, sort, pad."""
    rng = np.random.default_rng(0)
    domains = {}
    for x in "AB":
        image_dir, mask_dir = image_io.domain_dirs(dataroot, phase, x)
        index = image_io.index_masks(mask_dir)
        domains[x] = [(p, index[image_io.image_stem(p)]) for p in image_io.list_images(image_dir)]
    load = (size + size // 10) // 4 * 4
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for x in "AB":
            path, masks = domains[x][rng.integers(len(domains[x]))]
            image, m = image_io.read_example(path, masks, (load, load))
            top, left = rng.integers(0, load - size + 1, 2)
            stack = np.concatenate([image, m], -1)[top : top + size, left : left + size]
            if rng.random() < 0.5:
                stack = stack[:, ::-1]
            masks_sorted = stack[..., 3:][..., np.argsort(-stack[..., 3:].mean((0, 1)))][..., :ins_max]
            np.pad(masks_sorted, ((0, 0), (0, 0), (0, max(0, ins_max - masks_sorted.shape[-1]))), constant_values=-1)
        count += 1
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataroot", default=None)
    parser.add_argument("--phase", default="sample")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--ins_max", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp()
    records = []
    if args.dataroot:
        builder = builders.prepare("folder", data_dir, dataroot=args.dataroot)
        rate = pipeline_rate(builder, args.phase, args.size, args.ins_max, args.batch_size, args.seconds)
        records.append({"loader": "tf.data folder", "dataset": os.path.basename(args.dataroot), "examples_per_s": rate})
        rate = pil_rate(args.dataroot, args.phase, args.size, args.ins_max, args.seconds)
        records.append(
            {"loader": "PIL, one process", "dataset": os.path.basename(args.dataroot), "examples_per_s": rate}
        )
    shapes = builders.ShapesConfig(name="bench", size=args.size + args.size // 10, num_train=200, num_test=10,
                                   max_instances=8)  # fmt: skip
    builder = builders.prepare("shapes", data_dir, shapes=shapes)
    rate = pipeline_rate(builder, "train", args.size, args.ins_max, args.batch_size, args.seconds)
    records.append({"loader": "tf.data shapes", "dataset": "shapes, 1-8 instances", "examples_per_s": rate})
    for r in records:
        r.update(size=args.size, ins_max=args.ins_max, cpus=os.cpu_count())
        print(f"{r['loader']:>18}  {r['dataset']:<24} {r['examples_per_s']:8.1f} examples/s (A + B each)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
