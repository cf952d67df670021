r"""Times the authors' PyTorch ``optimize_parameters`` on the synthetic batch of train_step.py.

Needs torch and a checkout of github.com/sangwoomo/instagan, whose code is imported from
--reference (never copied, never a dependency of the package):

    python benchmarks/reference_step.py --reference /path/to/instagan --size 128 --ngf 32 --ins_max 4 --ins_per 2

Prints one JSON record. ``benchmarks/train_step.py --reference DIR`` runs it in a subprocess
after each of its own measurements, so that torch's threads never share a process with XLA's.
--device cuda times it on a GPU (benchmarks/gpu_check.sh), synchronising around each step.
"""

import argparse
import itertools
import json
import os
import sys
import time

import numpy as np
import torch
from synthetic import synthetic_batch


def build_model(reference: str, args):
    """The authors' InstaGANModel with its networks, pools, losses and optimisers, without its option parser."""
    sys.path.insert(0, reference)
    from models import insta_gan_model, networks
    from util.image_pool import ImagePool

    torch.manual_seed(0)
    model = insta_gan_model.InstaGANModel.__new__(insta_gan_model.InstaGANModel)
    model.opt = argparse.Namespace(
        ins_per=args.ins_per, ins_max=args.ins_max, set_order="decreasing", direction="AtoB",
        lambda_A=10.0, lambda_B=10.0, lambda_idt=1.0, lambda_ctx=1.0,
    )  # fmt: skip
    model.device = torch.device(args.device)
    model.ins_iter = args.ins_max // args.ins_per
    g = lambda: networks.define_G(3, 3, args.ngf, "set", "instance", False, "normal", 0.02, [])
    d = lambda: networks.define_D(3, args.ngf, "set", 3, "instance", False, "normal", 0.02, [])
    model.netG_A, model.netG_B, model.netD_A, model.netD_B = (net().to(model.device) for net in (g, g, d, d))
    model.fake_A_pool, model.fake_B_pool = ImagePool(50), ImagePool(50)
    model.criterionGAN = networks.GANLoss(use_lsgan=True).to(model.device)
    model.criterionCyc = model.criterionIdt = torch.nn.L1Loss()
    chain = lambda a, b: itertools.chain(a.parameters(), b.parameters())
    model.optimizer_G = torch.optim.Adam(chain(model.netG_A, model.netG_B), lr=2e-4, betas=(0.5, 0.999))
    model.optimizer_D = torch.optim.Adam(chain(model.netD_A, model.netD_B), lr=2e-4, betas=(0.5, 0.999))
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="checkout of the authors' code")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--ins_per", type=int, default=2)
    parser.add_argument("--ins_max", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--instances", type=int, default=None, help="instances per example (default: every slot)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(args.reference, args)
    batch = synthetic_batch(args.batch_size, args.size, args.ins_max, args.instances)
    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
    model.set_input({"A": nchw(batch["image_A"]), "B": nchw(batch["image_B"]), "A_segs": nchw(batch["masks_A"]),
                     "B_segs": nchw(batch["masks_B"]), "A_paths": [], "B_paths": []})  # fmt: skip
    wait = torch.cuda.synchronize if model.device.type == "cuda" else lambda: None
    model.optimize_parameters()  # warm-up
    times = []
    for _ in range(args.steps):
        wait()
        start = time.perf_counter()
        model.optimize_parameters()
        wait()
        times.append(time.perf_counter() - start)
    record = {"step_time_s": float(np.median(times)), "torch": torch.__version__, "threads": args.threads}
    if model.device.type == "cuda":
        record["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps({**vars(args), **record}))


if __name__ == "__main__":
    main()
