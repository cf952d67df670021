r"""Translating a folder of photos: experiments/translate.py against the authors' test.py path.

    python benchmarks/translate.py --reference /path/to/instagan --sizes 200,256 --ngf 64 --ins_max 4,8 \
        --photos 10 --json /tmp/translate.json

For each size and ins_max: a folder of --photos photos in the authors' layout (procedural
photos with 1..ins_max disc instances each, cycling; --photos_from DATAROOT:PHASE cycles a real
folder's photos and masks instead), one checkpoint (with --reference: the authors' fresh
networks saved as .pth by benchmarks/reference_translate.py and converted by
experiments/convert_torch.py, so both sides run the same weights; without: ours), then

- ``ours_cold``: translate.py from the command's start to its last file, compilation cache empty;
- ``ours_cached``: the same command again, the cache holding its program;
- ``ours_warm``: photos per second once compiled (Translator, one photo at a time, in this process,
  over the first 10 photos);
- ``theirs_test``: their model's ``test()`` as their test.py runs it (both directions and the
  reconstructions, twelve images per photo), from start to last file;
- ``theirs_one_direction``: their networks on what translate.py computes (G_A over the chunks),
  start to last file, and its photos per second after the first photo;
- ``max_pixel_difference``: between our translated photos and theirs (uint8 levels).

Each command runs in its own process (torch never shares one with XLA); peak RSS is that
process's. torch uses --threads (default: all cores), as XLA does. Prints a table and writes
the records as JSON.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from instagan_jax import checkpoint, image_io, models
from instagan_jax.inference import Translator, prepare_masks
from instagan_jax.json_files import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WARM_PHOTOS = 10  # ours_warm's throughput is over at most this many photos of the folder


def run_command(command: list[str], env: dict | None = None) -> dict:
    """Runs ``command``; returns its wall time, its own peak RSS (its wait4's ru_maxrss) and stdout."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if process.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{err.read()[-3000:]}")
        return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "stdout": out.read()}


def synthetic_folder(dataroot: str, phase: str, count: int, size: int, ins_max: int, seed: int = 0) -> None:
    """{phase}A and B with ``count`` smooth random photos, photo k holding 1 + k % ins_max discs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    for domain in "AB":
        image_dir, seg_dir = (os.path.join(dataroot, f"{phase}{domain}{s}") for s in ("", "_seg"))
        os.makedirs(image_dir), os.makedirs(seg_dir)
        for k in range(count):
            coarse = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
            Image.fromarray(coarse).resize((size, size), Image.BICUBIC).save(os.path.join(image_dir, f"{k:04d}.png"))
            for i in range(1 + k % ins_max):
                cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(size / 10, size / 4)
                disc = ((y - cy) ** 2 + (x - cx) ** 2 <= r * r).astype(np.uint8) * 255
                Image.fromarray(disc).save(os.path.join(seg_dir, f"{k:04d}_{i}.png"))


def copied_folder(dataroot: str, phase: str, count: int, source: str) -> None:
    """{phase}A and B with ``count`` photos cycling SOURCE_ROOT:SOURCE_PHASE's photos and masks."""
    source_root, source_phase = source.rsplit(":", 1)
    for domain in "AB":
        image_dir, mask_dir = image_io.domain_dirs(source_root, source_phase, domain)
        paths, masks = image_io.list_images(image_dir), image_io.index_masks(mask_dir)
        out_images, out_segs = (os.path.join(dataroot, f"{phase}{domain}{s}") for s in ("", "_seg"))
        os.makedirs(out_images), os.makedirs(out_segs)
        for k in range(count):
            path = paths[k % len(paths)]
            Image.open(path).convert("RGB").save(os.path.join(out_images, f"{k:04d}.png"))
            for i, mask in enumerate(sorted(masks.get(image_io.image_stem(path), []))):
                Image.open(mask).save(os.path.join(out_segs, f"{k:04d}_{i}.png"))


def make_workdir(args, scratch: str) -> str:
    """The benchmark's checkpoint: the authors' fresh networks converted (with --reference), else ours."""
    workdir = os.path.join(scratch, "workdir")
    if args.reference:
        pth = os.path.join(scratch, "pth")
        run_command([sys.executable, os.path.join(HERE, "reference_translate.py"), "--reference", args.reference,
                     "--make_checkpoint", pth, "--ngf", str(args.ngf)])  # fmt: skip
        run_command([sys.executable, os.path.join(ROOT, "experiments", "convert_torch.py"), "--checkpoint_dir", pth,
                     "--workdir", workdir])  # fmt: skip
    else:
        import jax

        spec = models.ModelSpec(ngf=args.ngf)
        checkpoint.save_networks(workdir, spec, models.init_networks(spec, jax.random.PRNGKey(0), 32, 32, 1))
    return workdir


def ours_warm(workdir: str, dataroot: str, phase: str, size: int, ins_per: int, ins_max: int) -> dict:
    """Photos per second of Translator once compiled, one photo at a time (the first photo compiles),
    over the folder's first WARM_PHOTOS photos."""
    translator = Translator.from_workdir(workdir, ins_per=ins_per, ins_max=ins_max)
    image_dir, mask_dir = image_io.domain_dirs(dataroot, phase, "A")
    index = image_io.index_masks(mask_dir)
    examples = []
    for path in image_io.list_images(image_dir)[:WARM_PHOTOS]:
        image, masks = image_io.read_example(path, index.get(image_io.image_stem(path), []), (size, size), keep=ins_max)
        examples.append((image[None], prepare_masks(masks, ins_max)[None]))
    translator.translate_batch(*examples[0])
    start = time.perf_counter()
    for example in examples:
        translator.translate_batch(*example)
    seconds = time.perf_counter() - start
    return {"photos_per_s": len(examples) / seconds, "seconds": seconds}


def max_pixel_difference(ours: str, theirs: str) -> int:
    """The largest difference (uint8 levels) between the translated photos and merged masks of two folders."""
    worst = 0
    for name in sorted(f for f in os.listdir(theirs) if f.endswith(("_fake_B_img.png", "_fake_B_seg.png"))):
        a = np.asarray(Image.open(os.path.join(ours, name)).convert("RGB"), np.int16)
        b = np.asarray(Image.open(os.path.join(theirs, name)).convert("RGB"), np.int16)
        worst = max(worst, int(np.abs(a - b).max()))
    return worst


def measure(args, size: int, ins_max: int, photos: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        dataroot, phase = os.path.join(scratch, "data"), "test"
        if args.photos_from:
            copied_folder(dataroot, phase, photos, args.photos_from)
        else:
            synthetic_folder(dataroot, phase, photos, size, ins_max)
        workdir = make_workdir(args, scratch)
        translate = [sys.executable, os.path.join(ROOT, "experiments", "translate.py"), "--workdir", workdir,
                     "--dataroot", dataroot, "--phase", phase, "--ins_per", str(args.ins_per), "--ins_max",
                     str(ins_max), "--load_size", f"{size},{size}",
                     "--output_dir", os.path.join(scratch, "ours")]  # fmt: skip
        cache = {"INSTAGAN_JAX_COMPILATION_CACHE": os.path.join(scratch, "xla_cache")}
        record = {"size": size, "ngf": args.ngf, "ins_per": args.ins_per, "ins_max": ins_max, "photos": photos,
                  "photos_from": args.photos_from or "synthetic", "cpu_count": os.cpu_count()}  # fmt: skip
        for name in ("ours_cold", "ours_cached"):
            result = run_command(translate, cache)
            record[name] = {k: v for k, v in result.items() if k != "stdout"}
            print(f"  {name}: {result['wall_s']:.1f} s", flush=True)
        record["ours_warm"] = ours_warm(workdir, dataroot, phase, size, args.ins_per, ins_max)
        print(f"  ours_warm: {record['ours_warm']['photos_per_s']:.3f} photos/s", flush=True)
        if args.reference:
            reference = [sys.executable, os.path.join(HERE, "reference_translate.py"), "--reference", args.reference,
                         "--checkpoint_dir", os.path.join(scratch, "pth"), "--dataroot", dataroot, "--phase", phase,
                         "--size", str(size), "--ngf", str(args.ngf), "--ins_per", str(args.ins_per), "--ins_max",
                         str(ins_max), "--threads", str(args.threads)]  # fmt: skip
            modes = [("theirs_one_direction", ["--one_direction"])] + ([("theirs_test", [])] if args.test else [])
            for name, extra in modes:
                result = run_command(reference + ["--out_dir", os.path.join(scratch, name)] + extra)
                theirs = json.loads(result["stdout"].strip().splitlines()[-1])
                warm = theirs["photo_times_s"][1:] or theirs["photo_times_s"]
                record[name] = {"wall_s": result["wall_s"], "peak_rss_mb": result["peak_rss_mb"],
                                "photos_per_s": len(warm) / sum(warm), "torch": theirs["torch"],
                                "threads": theirs["threads"]}  # fmt: skip
                print(f"  {name}: {result['wall_s']:.1f} s, {record[name]['photos_per_s']:.3f} photos/s", flush=True)
            record["max_pixel_difference"] = max_pixel_difference(
                os.path.join(scratch, "ours"), os.path.join(scratch, "theirs_one_direction")
            )
            theirs_warm = record["theirs_one_direction"]["photos_per_s"]
            record["warm_speedup"] = record["ours_warm"]["photos_per_s"] / theirs_warm
        return record


def table(records: list[dict]) -> str:
    rows = ["| size | ins_max | photos | ours cold (s) | ours cached (s) | theirs, one direction (s) "
            "| theirs, test() (s) | ours warm (photos/s) | theirs warm (photos/s) | warm speed-up "
            "| peak RSS ours / theirs (MB) | max diff |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in records:
        theirs, test = r.get("theirs_one_direction", {}), r.get("theirs_test", {})
        fmt = lambda value, spec=".1f": "-" if value is None else format(value, spec)
        rows.append(
            f"| {r['size']} | {r['ins_max']} | {r['photos']} | {fmt(r['ours_cold']['wall_s'])} "
            f"| {fmt(r['ours_cached']['wall_s'])} | {fmt(theirs.get('wall_s'))} | {fmt(test.get('wall_s'))} "
            f"| {fmt(r['ours_warm']['photos_per_s'], '.3f')} | {fmt(theirs.get('photos_per_s'), '.3f')} "
            f"| {fmt(r.get('warm_speedup'), '.2f')} | {fmt(r['ours_cached']['peak_rss_mb'], '.0f')} / "
            f"{fmt(theirs.get('peak_rss_mb'), '.0f')} | {r.get('max_pixel_difference', '-')} |"
        )
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", help="checkout of the authors' code (needs torch); unset: ours only")
    parser.add_argument("--sizes", default="200,256", help="photo sides, comma-separated (1000: about 1 megapixel)")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ins_per", type=int, default=2)
    parser.add_argument("--ins_max", default="4,8", help="comma-separated")
    parser.add_argument("--photos", default="10", help="folder sizes, comma-separated")
    parser.add_argument("--photos_from", help="DATAROOT:PHASE of a real folder in the authors' layout to cycle")
    parser.add_argument("--test", action="store_true", help="also time their test() (four passes per chunk)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch's threads")
    parser.add_argument("--json", default="/tmp/translate_benchmark.json")
    args = parser.parse_args()
    records = []
    for photos in map(int, args.photos.split(",")):
        for size in map(int, args.sizes.split(",")):
            for ins_max in map(int, args.ins_max.split(",")):
                print(f"size {size}, ins_max {ins_max}, {photos} photos:", flush=True)
                records.append(measure(args, size, ins_max, photos))
                write_json(args.json, records)
    print(table(records))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
