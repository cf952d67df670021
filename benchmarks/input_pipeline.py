r"""Input-pipeline throughput (examples/s) next to a plain single-process PIL loader.

    python benchmarks/input_pipeline.py --dataroot ../shared/data/instagan_samples/shp2gir_coco \
        --phase sample --size 200 --json /tmp/input_pipeline.json

Measures the tf.data pipeline (decode, joint bicubic resize, crop, flip, sort, pad; A and B
per example) on the folder builder over --dataroot and on procedural shapes with exactly
--shapes_instances instances, and a PIL loader doing the same work one example at a time.
The pipeline runs twice: decoding each image once into memory (the default, `decode_once`;
its one-off decoding time is reported) and decoding every example from PNG.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from instagan_jax import image_io, input_pipeline
from instagan_jax.datasets import builders
from instagan_jax.json_files import write_json

tf.config.set_visible_devices([], "GPU")


def pipeline_rate(builder, phase, size, ins_max, batch_size, seconds, decode_once) -> dict:
    splits = {x: input_pipeline.read_split(builder, f"{phase}{x}") for x in "AB"}
    load = (size + size // 10) // 4 * 4
    start = time.perf_counter()
    ds = input_pipeline.make_dataset(
        splits["A"], splits["B"], batch_size=batch_size, load_size=(load, load), fine_size=(size, size),
        ins_max=ins_max, decode_once=decode_once,
    )  # fmt: skip
    it = ds.as_numpy_iterator()
    batch = next(it)  # warm-up
    setup_s = time.perf_counter() - start
    count, masks, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = next(it)
        count += len(batch["id_A"])
        masks += int(batch["count_A"].sum() + batch["count_B"].sum())
    elapsed = time.perf_counter() - start
    return {
        "examples_per_s": count / elapsed,
        "setup_s": setup_s,
        "mean_masks": masks / (2 * count),
        "images_per_domain": splits["A"].size,
        "loader": "tf.data, decode once" if decode_once else "tf.data, decode each",
    }


def pil_rate(dataroot, phase, size, ins_max, seconds) -> float:
    """The reference's way: PIL open, bicubic resize of image and each mask, crop, flip, sort, pad."""
    rng = np.random.default_rng(0)
    domains = {}
    for x in "AB":
        image_dir, mask_dir = image_io.domain_dirs(dataroot, phase, x)
        index = image_io.index_masks(mask_dir)
        domains[x] = [(p, index[image_io.image_stem(p)]) for p in image_io.list_images(image_dir)]
    load = (size + size // 10) // 4 * 4
    count, n_masks, start = 0, 0, time.perf_counter()
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
            n_masks += masks_sorted.shape[-1]
        count += 1
    elapsed = time.perf_counter() - start
    return {"examples_per_s": count / elapsed, "mean_masks": n_masks / (2 * count), "loader": "PIL, one process"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataroot", default=None)
    parser.add_argument("--phase", default="sample")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--ins_max", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--shapes_instances", type=int, default=8, help="instances in every shapes image")
    parser.add_argument("--shapes_images", type=int, default=200, help="shapes images per domain")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp()
    records = []
    if args.dataroot:
        builder = builders.prepare("folder", data_dir, dataroot=args.dataroot)
        name = os.path.basename(args.dataroot.rstrip("/"))
        for decode_once in (True, False):
            rate = pipeline_rate(
                builder, args.phase, args.size, args.ins_max, args.batch_size, args.seconds, decode_once
            )
            records.append({"dataset": name, **rate})
        records.append({"dataset": name, **pil_rate(args.dataroot, args.phase, args.size, args.ins_max, args.seconds)})
    n = args.shapes_instances
    shapes = builders.ShapesConfig(name=f"bench{n}", size=args.size + args.size // 10, num_train=args.shapes_images,
                                   num_test=1, max_instances=n, min_instances=n)  # fmt: skip
    builder = builders.prepare("shapes", data_dir, shapes=shapes)
    for decode_once in (True, False):
        rate = pipeline_rate(builder, "train", args.size, args.ins_max, args.batch_size, args.seconds, decode_once)
        records.append({"dataset": f"shapes, {n} instances", **rate})
    for r in records:
        r.update(size=args.size, ins_max=args.ins_max, cpus=os.cpu_count())
        setup = f"  (setup {r['setup_s']:.1f} s)" if "setup_s" in r else ""
        print(
            f"{r['loader']:>22}  {r['dataset']:<20} {r['examples_per_s']:8.1f} examples/s (A + B each),"
            f" {r['mean_masks']:.1f} masks per image{setup}"
        )
    if args.json:
        write_json(args.json, records, indent=1)


if __name__ == "__main__":
    main()
