r"""Times the authors' own ``train.py`` as a user runs it, beside ``reference_step.py``'s harness.

``reference_step.py`` (and ``train_step.py --reference``) times their ``optimize_parameters``
on one synthetic batch, with the model assembled without their option parser. This script
checks that number against what a user of their ``train.py`` gets: it writes a folder in their
layout whose photos hold the same discs as the synthetic batch (every mask slot filled, so each
step does the same work), runs their ``train.py`` unmodified on it (their option parser,
``initialize(opt)``, their data loader with its worker processes reading all 20 mask files per
photo, ``set_input`` choosing ins_max masks), timestamps every step's log line, and then runs
``reference_step.py`` with the same sizes and threads. Needs a Python with torch and
torchvision (--python; their data loader imports torchvision):

    python benchmarks/reference_train.py --reference /path/to/instagan --python /path/to/venv/bin/python \
        --size 128 --ngf 32 --ins_max 4 --ins_per 2 --steps 20

Prints one JSON record: per-step wall time between their log lines (what a user waits), the
compute time their log reports, the data-loading wait, and reference_step.py's step time.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image
from synthetic import synthetic_batch

HERE = os.path.dirname(os.path.abspath(__file__))
# Two shims for today's libraries, neither on the timed path's arithmetic: their
# util/visualizer.py imports scipy.misc.imresize (gone since SciPy 1.3; only called when saving
# test pictures, which this run never does), and their masks (one channel) go through a
# three-channel Normalize, which torchvision before 0.3 applied with the first mean and std
# (it zipped channels with means) and today's refuses: normalise with the channels there are.
RUN_THEIR_TRAIN = """
import runpy, sys
import scipy.misc
import torchvision.transforms.functional as F
if not hasattr(scipy.misc, "imresize"):
    def imresize(*args, **kwargs):
        raise NotImplementedError("scipy.misc.imresize is gone from SciPy")
    scipy.misc.imresize = imresize
normalize = F.normalize
def normalize_channels_present(tensor, mean, std, inplace=False):
    channels = tensor.shape[-3]
    return normalize(tensor, list(mean)[:channels], list(std)[:channels], inplace)
F.normalize = normalize_channels_present
sys.path.insert(0, sys.argv[1])
sys.argv = ["train.py", *sys.argv[2:]]
runpy.run_path(sys.path[0] + "/train.py", run_name="__main__")
"""
LOG_LINE = re.compile(r"\(epoch: (\d+), iters: (\d+), time: ([0-9.]+), data: ([0-9.]+)\)")


def write_folder(root: str, photos: int, size: int, ins_max: int) -> None:
    """trainA, trainB and their _seg folders: photos of noise with ins_max disc masks each."""
    for domain in ("A", "B"):
        os.makedirs(os.path.join(root, f"train{domain}"))
        os.makedirs(os.path.join(root, f"train{domain}_seg"))
    batch = synthetic_batch(photos, size, ins_max)
    to_uint8 = lambda a: np.round((a + 1) * 127.5).astype(np.uint8)
    for domain in ("A", "B"):
        for i in range(photos):
            photo = Image.fromarray(to_uint8(batch[f"image_{domain}"][i]))
            photo.save(os.path.join(root, f"train{domain}", f"{i}.png"))
            for k in range(ins_max):
                mask = to_uint8(batch[f"masks_{domain}"][i, ..., k])
                Image.fromarray(mask).save(os.path.join(root, f"train{domain}_seg", f"{i}_{k}.png"))


def their_train(args, dataroot: str, checkpoints: str) -> dict:
    """Runs their train.py for one epoch of --steps + 1 photos; per-step times from its log lines."""
    options = [
        f"--dataroot={dataroot}", "--name=bench", f"--checkpoints_dir={checkpoints}", "--gpu_ids=-1",
        "--model=insta_gan", "--dataset_mode=unaligned_seg", f"--ngf={args.ngf}", f"--ndf={args.ngf}",
        f"--ins_max={args.ins_max}", f"--ins_per={args.ins_per}", f"--loadSizeH={args.size}",
        f"--loadSizeW={args.size}", f"--fineSizeH={args.size}", f"--fineSizeW={args.size}",
        f"--num_threads={args.loader_workers}", "--display_id=0", "--no_html", "--print_freq=1",
        "--niter=1", "--niter_decay=0", "--save_epoch_freq=1000000", "--save_latest_freq=1000000000",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    command = [args.python, "-c", RUN_THEIR_TRAIN, args.reference, *options]
    stamps, compute, data = [], [], []
    logged = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with subprocess.Popen(command, **logged, env=env, cwd=args.reference) as proc:
        for line in proc.stdout:
            match = LOG_LINE.search(line)
            if match:
                stamps.append(time.perf_counter())
                compute.append(float(match.group(3)))
                data.append(float(match.group(4)))
            elif args.verbose:
                print(line, end="")
    if proc.returncode != 0 or len(stamps) < 3:
        raise SystemExit(f"their train.py failed (exit {proc.returncode}, {len(stamps)} steps); rerun with --verbose")
    skip = 1  # the first step warms up
    return {
        "their_train_wall_s_per_step": float(np.median(np.diff(stamps[skip:]))),
        "their_train_logged_time_s": float(np.median(compute[skip + 1 :])),
        "their_train_data_wait_s": float(np.median(data[skip + 1 :])),
        "their_train_steps_timed": len(stamps) - skip - 1,
    }


def reference_step(args) -> dict:
    command = [args.python, os.path.join(HERE, "reference_step.py"), f"--reference={args.reference}",
               f"--size={args.size}", f"--ngf={args.ngf}", f"--ins_max={args.ins_max}", f"--ins_per={args.ins_per}",
               f"--steps={args.reference_steps}", f"--threads={args.threads}"]  # fmt: skip
    record = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    return {"reference_step_s": record["step_time_s"], "torch": record["torch"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="checkout of the authors' code")
    parser.add_argument("--python", default=sys.executable, help="a Python with torch and torchvision")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--ngf", type=int, default=32)
    parser.add_argument("--ins_per", type=int, default=2)
    parser.add_argument("--ins_max", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="steps of their train.py timed (after one warm-up)")
    parser.add_argument("--reference_steps", type=int, default=5, help="steps reference_step.py times")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch's threads (OMP_NUM_THREADS)")
    parser.add_argument("--loader_workers", type=int, default=4, help="their --num_threads: 4 by default")
    parser.add_argument("--verbose", action="store_true", help="echo their train.py's output")
    args = parser.parse_args()
    reference = os.path.abspath(args.reference)
    if not os.path.isfile(os.path.join(reference, "train.py")):
        parser.error(f"--reference {args.reference}: no train.py there (a checkout of github.com/sangwoomo/instagan)")
    args.reference = reference
    with tempfile.TemporaryDirectory() as tmp:
        write_folder(os.path.join(tmp, "data"), args.steps + 2, args.size, args.ins_max)
        record = their_train(args, os.path.join(tmp, "data"), os.path.join(tmp, "checkpoints"))
    record.update(reference_step(args))
    record["wall_over_reference_step"] = record["their_train_wall_s_per_step"] / record["reference_step_s"]
    keys = ("size", "ngf", "ins_max", "ins_per", "threads", "loader_workers")
    print(json.dumps({**{k: getattr(args, k) for k in keys}, **record}))


if __name__ == "__main__":
    main()
