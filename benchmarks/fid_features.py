r"""Inception features for FID: photos per second here and with pytorch-fid, same photos, same machine.

    python benchmarks/fid_features.py --photos 200 --photos_from ../shared/data/instagan_samples/shp2gir_coco/sampleA \
        --reference_python /tmp/tv/bin/python --json /tmp/fid_features.json

Neither side downloads anything: both networks hold the seeded stand-in weights of the tests
(the real file has the same shapes, so the same cost). --photos_from cycles a folder's photos
(the synthetic shapes otherwise); --reference_python is a Python with torch, torchvision and
pytorch-fid, run with as many threads as this process uses. Reported: the first batch
(compilation included), the steady photos per second over the rest, and the Fréchet distance
alone (scipy's square root of a 2048x2048 product, the same code on both sides).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

import inception_weights  # noqa: E402

from instagan_jax import fid, image_io, inception  # noqa: E402

REFERENCE = """
import json, sys, time
import numpy as np, torch
sys.path.insert(0, {golden!r})
from make_fid_golden import seeded_pytorch_fid_model
torch.set_num_threads({threads})
model, _ = seeded_pytorch_fid_model()
photos = torch.from_numpy(np.load({photos!r})).permute(0, 3, 1, 2).contiguous()
times = []
with torch.no_grad():
    for start in range(0, len(photos), {batch}):
        began = time.perf_counter()
        model(photos[start:start + {batch}])[-1]
        times.append(time.perf_counter() - began)
print(json.dumps(times))
"""


def photo_set(count: int, folder: str | None, size: int) -> np.ndarray:
    if folder:
        paths = image_io.list_images(folder)
        base = [np.asarray(image_io.open_image(p, "RGB").resize((size, size)), np.float32) / 255 for p in paths]
    else:
        rng = np.random.default_rng(0)
        base = [rng.uniform(0, 1, (size, size, 3)).astype(np.float32) for _ in range(8)]
    return np.stack([base[i % len(base)] for i in range(count)])


def summary(times: list[float], batch: int, count: int) -> dict:
    steady = times[1:]
    return {"first_batch_s": round(times[0], 2),
            "steady_photos_per_s": round(batch * len(steady) / sum(steady), 2) if steady else None,
            "total_s": round(sum(times), 2), "photos": count}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--size", type=int, default=256, help="Photos are resized to size x size first.")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--photos_from", default=None)
    parser.add_argument("--reference_python", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    photos = photo_set(args.photos, args.photos_from, args.size)
    threads = os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "seeded.pth")
        inception_weights.write_seeded_weights(weights)
        extractor = fid.InceptionFeatures(inception.load_weights(weights, sha256=None), batch_size=args.batch)
        times, features = [], []
        for batch in fid.batches(list(photos), args.batch):
            began = time.perf_counter()
            features.append(extractor(batch))
            times.append(time.perf_counter() - began)
        result = {"device": str(extractor.variables["params"]["Conv2d_1a_3x3"]["conv"]["kernel"].device),
                  "size": args.size, "batch": args.batch, "ours": summary(times, args.batch, args.photos)}  # fmt: skip
        moments = fid.MomentAccumulator(keep_features=False)
        moments.add(np.concatenate(features))
        stats = moments.statistics()
        began = time.perf_counter()
        fid.frechet_distance(stats.mu, stats.sigma, stats.mu, stats.sigma + np.eye(len(stats.mu)) * 1e-3)
        result["frechet_distance_2048_s"] = round(time.perf_counter() - began, 2)
        if args.reference_python:
            np.save(os.path.join(tmp, "photos.npy"), photos)
            script = REFERENCE.format(golden=os.path.join(REPO, "tests", "golden"), threads=threads,
                                      photos=os.path.join(tmp, "photos.npy"), batch=args.batch)  # fmt: skip
            done = subprocess.run([args.reference_python, "-c", script], capture_output=True, text=True, check=True)
            result["pytorch_fid"] = summary(json.loads(done.stdout.strip().splitlines()[-1]), args.batch, args.photos)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
