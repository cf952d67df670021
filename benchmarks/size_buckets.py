r"""What translating a photo inside a larger canvas costs in exactness (shape bucketing).

    python benchmarks/size_buckets.py --workdir runs/converted --sizes 200x200,184x248,232x200 --bucket 256 \
        --photos_from DATAROOT:PHASE

A folder of photos of several sizes compiles one program per size. Bucketing would pad each
photo to a common canvas (reflect padding, masks padded with background), translate once per
bucket and crop. The authors' networks are not translation-equivariant on a padded canvas:
every instance norm takes its mean and variance over the whole canvas, so the padded border
changes the statistics of every layer and with them every pixel. This script measures that
error: for each size, the photo translated at its own size against the same photo reflect-
padded to --bucket and cropped back (uint8 levels: mean and largest difference), and the
time of one compile per size against one for the bucket. Prints a table and writes JSON.
"""

import argparse
import os
import time

import numpy as np

from instagan_jax import image_io
from instagan_jax.inference import Translator, prepare_masks
from instagan_jax.json_files import write_json


def reflect_to(array: np.ndarray, size_hw: tuple[int, int], fill: float | None = None) -> np.ndarray:
    """(H, W, C) padded at the bottom and right to ``size_hw``: reflected, or with ``fill``."""
    pad = ((0, size_hw[0] - array.shape[0]), (0, size_hw[1] - array.shape[1]), (0, 0))
    return np.pad(array, pad, mode="reflect") if fill is None else np.pad(array, pad, constant_values=fill)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a workdir with G_A (trained or converted)")
    parser.add_argument("--sizes", default="200x200,184x248,232x200", help="HxW, comma-separated (multiples of 4)")
    parser.add_argument("--bucket", type=int, default=256, help="the canvas side every size is padded to")
    parser.add_argument("--photos_from", required=True, help="DATAROOT:PHASE in the authors' layout")
    parser.add_argument("--photos", type=int, default=3)
    parser.add_argument("--ins_per", type=int, default=2)
    parser.add_argument("--ins_max", type=int, default=4)
    parser.add_argument("--json", default="/tmp/size_buckets.json")
    args = parser.parse_args()
    translator = Translator.from_workdir(args.workdir, ins_per=args.ins_per, ins_max=args.ins_max)
    root, phase = args.photos_from.rsplit(":", 1)
    image_dir, mask_dir = image_io.domain_dirs(root, phase, "A")
    index, paths = image_io.index_masks(mask_dir), image_io.list_images(image_dir)[: args.photos]
    bucket = (args.bucket, args.bucket)
    records = []
    print(f"{'size':>9} {'mean diff':>9} {'max diff':>8} {'compile own s':>13} {'compile bucket s':>16}")
    for size in args.sizes.split(","):
        size_hw = tuple(int(v) for v in size.split("x"))
        diffs, compile_s = [], {}
        for path in paths:
            image, masks = image_io.read_example(path, index.get(image_io.image_stem(path), []), size_hw,
                                                 keep=args.ins_max)  # fmt: skip
            masks = prepare_masks(masks, args.ins_max)
            start = time.perf_counter()
            own, _ = translator.translate_batch(image[None], masks[None])
            compile_s.setdefault("own", time.perf_counter() - start)
            start = time.perf_counter()
            canvas = reflect_to(image, bucket)[None], reflect_to(masks, bucket, fill=-1.0)[None]
            padded, _ = translator.translate_batch(*canvas)
            compile_s.setdefault("bucket", time.perf_counter() - start)
            cropped = padded[0, : size_hw[0], : size_hw[1]]
            diffs.append(np.abs(image_io.to_uint8(own[0]).astype(int) - image_io.to_uint8(cropped).astype(int)))
        record = {"size_hw": size_hw, "bucket": args.bucket, "mean_level_difference": float(np.mean(diffs)),
                  "max_level_difference": int(np.max(diffs)), "first_call_own_s": compile_s["own"],
                  "first_call_bucket_s": compile_s["bucket"], "workdir": os.path.abspath(args.workdir)}  # fmt: skip
        records.append(record)
        print(f"{size:>9} {record['mean_level_difference']:>9.2f} {record['max_level_difference']:>8} "
              f"{compile_s['own']:>13.1f} {compile_s['bucket']:>16.1f}", flush=True)  # fmt: skip
        write_json(args.json, records)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
