"""Regenerates the golden fixtures in tests/data/golden from the authors' PyTorch code.

Not part of the test suite and never imported by the package. Run once, by hand, in a
throwaway virtualenv that has torch, numpy and pillow, with a checkout of the reference
(github.com/sangwoomo/instagan) whose code is imported from --reference and never copied:

    python tests/golden/make_golden.py --reference /tmp/instagan --out tests/data/golden
    python tests/golden/make_golden.py --reference /tmp/instagan --photos DATAROOT \
        --load_size 200,200 --ngf 64 --out /tmp/parity   # full-size parity run, not committed

It writes small random-init networks as .pth (the authors' save format), the forward
outputs of G and D (with D's power-iteration state) on fixed inputs, and the output of the
authors' test loop (InstaGANModel.test) on a tiny folder dataset in their layout, and one
training step (optimize_parameters): its chunk losses, the weights and Adam's moments after it.
"""

import argparse
import argparse as _argparse
import glob
import os
import sys

import numpy as np
import torch
from PIL import Image


def build_networks(networks, ngf, ndf, seed, kind="set"):
    """kind 'set' is InstaGAN, 'basic' the CycleGAN baseline."""
    torch.manual_seed(seed)
    kw = dict(norm="instance", use_dropout=False, init_type="normal", init_gain=0.02, gpu_ids=[])
    nets = {
        "G_A": networks.define_G(3, 3, ngf, kind, **kw),
        "G_B": networks.define_G(3, 3, ngf, kind, **kw),
        "D_A": networks.define_D(3, ndf, kind, 3, "instance", False, "normal", 0.02, []),
        "D_B": networks.define_D(3, ndf, kind, 3, "instance", False, "normal", 0.02, []),
    }
    channels = 5 if kind == "set" else 3
    # Trained checkpoints have converged power iterations; so must these, or the reference's
    # extra iteration per additional mask slot (see instagan_jax/models.py) shows up at 1e-3.
    warmup = torch.rand(1, channels, 64, 64) * 2 - 1
    for name in ("D_A", "D_B"):
        for _ in range(50):
            nets[name](warmup)
    return nets


def blob_mask(h, w, cy, cx, ry, rx):
    y, x = np.mgrid[:h, :w]
    return ((((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2) <= 1).astype(np.uint8) * 255


def write_folder_dataset(root, phase, rng):
    """A few smooth random photos with elliptic instance masks, some masks saved as RGB."""
    for domain in "AB":
        os.makedirs(os.path.join(root, f"{phase}{domain}_seg"), exist_ok=True)
        os.makedirs(os.path.join(root, f"{phase}{domain}"), exist_ok=True)
        for i, (h, w, n) in enumerate([(44, 38, 3), (40, 40, 1), (52, 30, 5)]):
            base = rng.uniform(0, 255, (h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
            image = Image.fromarray(base).resize((w, h), Image.BICUBIC)
            image.save(os.path.join(root, f"{phase}{domain}", f"{domain.lower()}{i}.png"))
            for k in range(n):
                m = blob_mask(
                    h,
                    w,
                    rng.integers(5, h - 5),
                    rng.integers(5, w - 5),
                    rng.integers(3, h // 3),
                    rng.integers(3, w // 3),
                )
                mode = "RGB" if (i + k) % 2 else "L"
                Image.fromarray(m).convert(mode).save(
                    os.path.join(root, f"{phase}{domain}_seg", f"{domain.lower()}{i}_{k}.png")
                )


def load_like_reference(path, size_hw, seg_dir, max_instances=20):
    """torchvision Resize(BICUBIC) + ToTensor + Normalize(0.5, 0.5), as the reference's test loader."""
    h, w = size_hw

    def tensor(img, mode):
        a = np.asarray(img.convert(mode).resize((w, h), Image.BICUBIC), np.float32) / 255.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return torch.from_numpy((a - 0.5) / 0.5)

    img = tensor(Image.open(path), "RGB")
    stem = os.path.splitext(os.path.basename(path))[0]
    segs = []
    for k in range(max_instances):
        p = os.path.join(seg_dir, f"{stem}_{k}.png")
        segs.append(tensor(Image.open(p), "L") if os.path.isfile(p) else -torch.ones(1, h, w))
    return img[None], torch.cat(segs)[None]


def reference_test(insta_gan_model, nets, a_path, b_path, root, phase, size_hw, ins_per, ins_max):
    model = insta_gan_model.InstaGANModel.__new__(insta_gan_model.InstaGANModel)
    model.opt = _argparse.Namespace(ins_per=ins_per, ins_max=ins_max, set_order="decreasing", direction="AtoB")
    model.device = torch.device("cpu")
    model.ins_iter = ins_max // ins_per
    model.netG_A, model.netG_B = nets["G_A"], nets["G_B"]
    a, a_segs = load_like_reference(a_path, size_hw, os.path.join(root, f"{phase}A_seg"))
    b, b_segs = load_like_reference(b_path, size_hw, os.path.join(root, f"{phase}B_seg"))
    model.set_input({"A": a, "B": b, "A_segs": a_segs, "B_segs": b_segs, "A_paths": [a_path], "B_paths": [b_path]})
    model.test()
    to_uint8 = lambda t: ((t[0].numpy().transpose(1, 2, 0) + 1) / 2.0 * 255.0).astype(np.uint8)  # tensor2im
    return {k: to_uint8(getattr(model, k)) for k in ("fake_B_img", "fake_B_seg", "fake_A_img", "fake_A_seg")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--photos", help="dataroot of a full-size parity run (phase 'sample')")
    parser.add_argument("--phase", default="sample")
    parser.add_argument("--load_size", default="64,48")
    parser.add_argument("--ngf", type=int, default=4)
    parser.add_argument("--ndf", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, args.reference)
    from models import insta_gan_model, networks

    torch.set_grad_enabled(False)
    os.makedirs(args.out, exist_ok=True)
    nets = build_networks(networks, args.ngf, args.ndf, seed=0)
    for name, net in nets.items():
        torch.save(net.state_dict(), os.path.join(args.out, f"latest_net_{name}.pth"))
    size_hw = tuple(int(s) for s in args.load_size.split(","))

    if args.photos:  # authors' test loop on real photos, written as PNG like test.py does
        root, phase = args.photos, args.phase
        a_paths = sorted(glob.glob(os.path.join(root, f"{phase}A", "*.png")))
        b_paths = sorted(glob.glob(os.path.join(root, f"{phase}B", "*.png")))
        for i, a_path in enumerate(a_paths):  # serial_batches: B index = i % len(B)
            out = reference_test(insta_gan_model, nets, a_path, b_paths[i % len(b_paths)], root, phase, size_hw, 2, 20)
            for key in ("fake_B_img", "fake_B_seg"):
                Image.fromarray(out[key].squeeze()).save(
                    os.path.join(args.out, f"{os.path.basename(a_path)[:-4]}_{key}.png")
                )
        for i, b_path in enumerate(b_paths):
            out = reference_test(insta_gan_model, nets, a_paths[i % len(a_paths)], b_path, root, phase, size_hw, 2, 20)
            for key in ("fake_A_img", "fake_A_seg"):
                Image.fromarray(out[key].squeeze()).save(
                    os.path.join(args.out, f"{os.path.basename(b_path)[:-4]}_{key}.png")
                )
        return

    # 1. Forward passes on fixed inputs: 4 slots, two with instances, two empty.
    rng = np.random.default_rng(0)
    h, w = size_hw
    image = rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
    masks = -np.ones((1, 4, h, w), np.float32)
    masks[0, 0] = blob_mask(h, w, 20, 16, 12, 10) / 127.5 - 1
    masks[0, 1] = blob_mask(h, w, 40, 30, 16, 12) / 127.5 - 1
    x = torch.from_numpy(np.concatenate([image, masks], 1))
    golden = {"input": x.numpy(), "g_a_out": nets["G_A"](x).numpy()}
    golden["d_a_out"] = nets["D_A"](x).numpy()  # one power iteration per spectral conv
    for k, v in nets["D_A"].state_dict().items():
        if k.endswith("weight_u"):
            golden[f"d_a_u_after/{k}"] = v.numpy()
    golden["d_a_out_second_call"] = nets["D_A"](x).numpy()
    np.savez_compressed(os.path.join(args.out, "forward.npz"), **golden)
    # the same G_A in the legacy (torch 0.4 - 1.5) format the authors released theirs in
    torch.save(
        nets["G_A"].state_dict(), os.path.join(args.out, "legacy_net_G_A.pth"), _use_new_zipfile_serialization=False
    )

    # 2. The CycleGAN baseline networks, same image, no masks.
    cyclegan = build_networks(networks, args.ngf, args.ndf, seed=1, kind="basic")
    os.makedirs(os.path.join(args.out, "cyclegan"), exist_ok=True)
    for name, net in cyclegan.items():
        torch.save(net.state_dict(), os.path.join(args.out, "cyclegan", f"latest_net_{name}.pth"))
    image_t = torch.from_numpy(image)
    np.savez_compressed(
        os.path.join(args.out, "cyclegan", "forward.npz"),
        input=image,
        g_a_out=cyclegan["G_A"](image_t).numpy(),
        d_a_out=cyclegan["D_A"](image_t).numpy(),
    )

    # 3. The authors' test loop on a tiny folder dataset (ins_per 2, ins_max 4).
    root = os.path.join(args.out, "folder")
    write_folder_dataset(root, "test", np.random.default_rng(1))
    results = {}
    a_paths = sorted(glob.glob(os.path.join(root, "testA", "*.png")))
    b_paths = sorted(glob.glob(os.path.join(root, "testB", "*.png")))
    for i, a_path in enumerate(a_paths):
        out = reference_test(insta_gan_model, nets, a_path, b_paths[i], root, "test", size_hw, 2, 4)
        stem_a, stem_b = (os.path.basename(p)[:-4] for p in (a_path, b_paths[i]))
        results.update({f"{stem_a}_fake_B_img": out["fake_B_img"], f"{stem_a}_fake_B_seg": out["fake_B_seg"]})
        results.update({f"{stem_b}_fake_A_img": out["fake_A_img"], f"{stem_b}_fake_A_seg": out["fake_A_seg"]})
    np.savez_compressed(os.path.join(args.out, "translate.npz"), **results)

    # 4. One full optimize_parameters step (ins_max 4, ins_per 2, pool size 0) from the same weights.
    torch.set_grad_enabled(True)
    np.savez_compressed(
        os.path.join(args.out, "train_step.npz"),
        **reference_train_step(insta_gan_model, networks, args.out, root, size_hw),
    )


def reference_train_step(insta_gan_model, networks, out_dir, root, size_hw):
    from util.image_pool import ImagePool

    nets = {}
    for name in ("G_A", "G_B", "D_A", "D_B"):
        net = (
            networks.define_G(3, 3, 4, "set", "instance")
            if name[0] == "G"
            else networks.define_D(3, 4, "set", 3, "instance")
        )
        net.load_state_dict(torch.load(os.path.join(out_dir, f"latest_net_{name}.pth")))
        nets[name] = net
    model = insta_gan_model.InstaGANModel.__new__(insta_gan_model.InstaGANModel)
    model.opt = _argparse.Namespace(
        ins_per=2,
        ins_max=4,
        set_order="decreasing",
        direction="AtoB",
        lambda_A=10.0,
        lambda_B=10.0,
        lambda_idt=1.0,
        lambda_ctx=1.0,
    )
    model.device = torch.device("cpu")
    model.ins_iter = 2
    model.netG_A, model.netG_B, model.netD_A, model.netD_B = (nets[n] for n in ("G_A", "G_B", "D_A", "D_B"))
    model.fake_A_pool, model.fake_B_pool = ImagePool(0), ImagePool(0)
    model.criterionGAN = networks.GANLoss(use_lsgan=True)
    model.criterionCyc = model.criterionIdt = torch.nn.L1Loss()
    import itertools

    model.optimizer_G = torch.optim.Adam(
        itertools.chain(nets["G_A"].parameters(), nets["G_B"].parameters()), lr=2e-4, betas=(0.5, 0.999)
    )
    model.optimizer_D = torch.optim.Adam(
        itertools.chain(nets["D_A"].parameters(), nets["D_B"].parameters()), lr=2e-4, betas=(0.5, 0.999)
    )
    # A: a2 (5 masks: both chunks full); B: b1 (1 mask: its second chunk is empty)
    a, a_segs = load_like_reference(os.path.join(root, "testA", "a2.png"), size_hw, os.path.join(root, "testA_seg"))
    b, b_segs = load_like_reference(os.path.join(root, "testB", "b1.png"), size_hw, os.path.join(root, "testB_seg"))
    model.set_input({"A": a, "B": b, "A_segs": a_segs, "B_segs": b_segs, "A_paths": ["a2"], "B_paths": ["b1"]})
    record = {
        "image_A": model.real_A_img.numpy(),
        "masks_A": model.real_A_segs.numpy(),
        "image_B": model.real_B_img.numpy(),
        "masks_B": model.real_B_segs.numpy(),
    }
    chunk_losses = []
    step_d = model.optimizer_D.step

    def step_and_record(*a, **k):
        names = ["G_A", "cyc_A", "idt_A", "ctx_A", "G_B", "cyc_B", "idt_B", "ctx_B"]
        losses = {n: float(getattr(model, f"loss_{n}")) for n in names}
        losses["D_A"] = float(model.loss_D_A) if model.forward_A else 0.0
        losses["D_B"] = float(model.loss_D_B) if model.forward_B else 0.0
        chunk_losses.append(losses)
        return step_d(*a, **k)

    model.optimizer_D.step = step_and_record
    model.optimize_parameters()
    for name in chunk_losses[0]:
        record[f"loss/{name}"] = np.array([c[name] for c in chunk_losses], np.float32)
    for net_name, net in nets.items():
        for key, value in net.state_dict().items():
            record[f"after/{net_name}/{key}"] = value.detach().numpy()
        optimizer = model.optimizer_G if net_name[0] == "G" else model.optimizer_D
        for key, param in net.named_parameters():  # Adam's moments after the two chunk updates
            for moment in ("exp_avg", "exp_avg_sq"):
                record[f"{moment}/{net_name}/{key}"] = optimizer.state[param][moment].numpy()
    return record


if __name__ == "__main__":
    main()
