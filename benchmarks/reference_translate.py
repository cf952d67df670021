r"""The authors' test.py path, timed: their InstaGANModel built by its own ``initialize`` and
``setup`` (the .pth files of --checkpoint_dir), its ``test()`` on each photo of a folder in
their layout, and every visual written as their ``save_images`` writes it.

Needs torch and a checkout of github.com/sangwoomo/instagan (--reference: imported, never
copied, never a dependency of the package). Their test.py itself no longer starts on current
libraries (``scipy.misc.imresize``, and torchvision's data pipeline wants a torchvision built
for the installed torch), so the folder is read here as their ``UnalignedSegDataset`` reads it
with their test options: bicubic resize to --size, [-1, 1], masks {stem}_{k}.png (k < 20),
missing slots -1, B paired with A by index.

    python benchmarks/reference_translate.py --reference DIR --make_checkpoint CKPT --ngf 64
    python benchmarks/reference_translate.py --reference DIR --checkpoint_dir CKPT --dataroot D \
        --size 200 --ins_per 2 --ins_max 8 --out_dir OUT [--one_direction]

``test()`` translates each photo both ways and back (four generator passes per chunk: A->B,
B->A and the two reconstructions) and writes twelve images; --one_direction runs what
translate.py runs instead: G_A over the chunks of {phase}A with their networks, writing the
translated photo and merged mask. Prints one JSON record (seconds since the interpreter
started for the first and last file, and each photo's time).
"""

import argparse
import json
import os
import sys
import time

STARTED = time.time()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

MAX_INSTANCES = 20  # UnalignedSegDataset.max_instances
VISUALS_NAMES = ("real_A_img", "fake_B_img", "rec_A_img", "real_A_seg", "fake_B_seg", "rec_A_seg",
                 "real_B_img", "fake_A_img", "rec_B_img", "real_B_seg", "fake_A_seg", "rec_B_seg")  # fmt: skip


def options(args) -> argparse.Namespace:
    """What their TestOptions give the model (defaults of base_options and test_options, InstaGAN's)."""
    return argparse.Namespace(
        isTrain=False, gpu_ids=[], checkpoints_dir=os.path.dirname(os.path.abspath(args.checkpoint_dir)),
        name=os.path.basename(os.path.abspath(args.checkpoint_dir)), resize_or_crop="resize_and_crop",
        input_nc=3, output_nc=3, ngf=args.ngf, netG="set", norm="instance", no_dropout=True, init_type="normal",
        init_gain=0.02, ins_max=args.ins_max, ins_per=args.ins_per, set_order="decreasing", direction="AtoB",
        load_iter=0, epoch="latest", verbose=False, continue_train=False,
    )  # fmt: skip


def read_image(path: str, size: int, mode: str) -> torch.Tensor:
    """Resize (bicubic), ToTensor, Normalize(0.5, 0.5): (1, C, size, size) in [-1, 1]."""
    img = Image.open(path).convert(mode).resize((size, size), Image.BICUBIC)
    array = np.asarray(img, np.float32) / 255.0
    array = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)) * 2 - 1)[None]


def read_segs(image_path: str, seg_dir: str, size: int) -> torch.Tensor:
    """Their read_segs: slots 0..19 from {stem}_{k}.png, -1 where the file is missing (1, 20, H, W)."""
    stem = os.path.splitext(os.path.basename(image_path))[0]
    segs = []
    for k in range(MAX_INSTANCES):
        path = os.path.join(seg_dir, f"{stem}_{k}.png")
        segs.append(read_image(path, size, "L")[0] if os.path.isfile(path) else -torch.ones(1, size, size))
    return torch.cat(segs)[None]


def save(tensor: torch.Tensor, path: str) -> None:
    """Their util.tensor2im and save_image."""
    array = tensor[0].cpu().float().numpy()
    array = np.tile(array, (3, 1, 1)) if array.shape[0] == 1 else array
    Image.fromarray(((np.transpose(array, (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)).save(path)


def one_direction(model, image: torch.Tensor, segs: torch.Tensor):
    """G_A over the chunks as their test() runs it, without B->A and the reconstructions."""
    n, outputs = model.opt.ins_per, []
    with torch.no_grad():
        for i in range(model.ins_iter):
            chunk = segs[:, n * i : n * (i + 1)]
            if (chunk + 1).sum() > 0:
                out = model.netG_A(torch.cat([image, chunk], dim=1))
                image, chunk = out[:, :3], out[:, 3:]
            outputs.append(chunk)
    return image, model.merge_masks(torch.cat(outputs, dim=1))


def translate_folder(args) -> dict:
    from models import create_model

    opt = options(args)
    opt.model = "insta_gan"
    model = create_model(opt)
    model.setup(opt)
    list_dir = lambda d: sorted(os.path.join(d, f) for f in os.listdir(d) if f.lower().endswith((".png", ".jpg")))
    paths_a, paths_b = (list_dir(os.path.join(args.dataroot, f"{args.phase}{d}")) for d in "AB")
    seg_a, seg_b = (os.path.join(args.dataroot, f"{args.phase}{d}_seg") for d in "AB")
    os.makedirs(args.out_dir, exist_ok=True)
    times, first_file = [], None
    for index, path_a in enumerate(paths_a):
        start = time.perf_counter()
        stem = os.path.splitext(os.path.basename(path_a))[0]
        image, segs = read_image(path_a, args.size, "RGB"), read_segs(path_a, seg_a, args.size)
        if args.one_direction:
            model.real_A_segs = model.select_masks(segs)
            fake, merged = one_direction(model, image, model.real_A_segs)
            save(fake, os.path.join(args.out_dir, f"{stem}_fake_B_img.png"))
            save(merged, os.path.join(args.out_dir, f"{stem}_fake_B_seg.png"))
        else:
            path_b = paths_b[index % len(paths_b)]
            image_b, segs_b = read_image(path_b, args.size, "RGB"), read_segs(path_b, seg_b, args.size)
            model.set_input({"A": image, "B": image_b, "A_segs": segs, "B_segs": segs_b, "A_paths": [path_a],
                             "B_paths": [path_b]})  # fmt: skip
            model.test()
            for name in VISUALS_NAMES:
                save(getattr(model, name), os.path.join(args.out_dir, f"{stem}_{name}.png"))
        times.append(time.perf_counter() - start)
        first_file = first_file or time.time() - STARTED
    return {"photo_times_s": times, "first_file_s": first_file, "last_file_s": time.time() - STARTED}


def make_checkpoint(args) -> dict:
    """Fresh networks with the authors' init (torch seed 0), saved as their save_networks names them."""
    from models import networks

    torch.manual_seed(0)
    os.makedirs(args.make_checkpoint, exist_ok=True)
    for name in ("G_A", "G_B"):
        net = networks.define_G(3, 3, args.ngf, "set", "instance", False, "normal", 0.02, [])
        torch.save(net.state_dict(), os.path.join(args.make_checkpoint, f"latest_net_{name}.pth"))
    return {"checkpoint_dir": args.make_checkpoint}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="checkout of the authors' code")
    parser.add_argument("--make_checkpoint", help="write fresh G_A, G_B .pth files here and stop")
    parser.add_argument("--checkpoint_dir", help="their checkpoints/NAME folder ({epoch}_net_G_A.pth, ...)")
    parser.add_argument("--dataroot")
    parser.add_argument("--phase", default="test")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ins_per", type=int, default=2)
    parser.add_argument("--ins_max", type=int, default=4)
    parser.add_argument("--out_dir")
    parser.add_argument("--one_direction", action="store_true")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, args.reference)
    record = make_checkpoint(args) if args.make_checkpoint else translate_folder(args)
    print(json.dumps({**record, "torch": torch.__version__, "threads": args.threads}))


if __name__ == "__main__":
    main()
