r"""Translates a folder of photos with an exported ONNX translator and onnxruntime alone.

Needs only onnxruntime, numpy and pillow (no JAX, not this package):

    python -m venv serve && serve/bin/pip install -r requirements-serve.txt
    serve/bin/python experiments/serve_onnx.py --model a2b.onnx --dataroot datasets/mine --phase test \
        --output_dir results

Reads {phase}A (or {phase}B for a BtoA model) and its _seg masks in the authors' layout
({stem}_{k}.png, white = instance), resizes each photo and mask to the model's size (bicubic,
as translate.py), keeps the ins_max largest masks, and writes {stem}_fake_B_img.png and
{stem}_fake_B_seg.png (the merged translated masks) as translate.py does.

``--masker masker.onnx`` (experiments/export.py --masker_workdir M --format onnx, at the
translator's size) predicts the masks instead, so photos need no _seg folder.
"""

import argparse
import glob
import json
import os

import numpy as np
import onnxruntime
from PIL import Image

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


def to_unit(picture: Image.Image, size_wh: tuple[int, int]) -> np.ndarray:
    """A PIL picture resized (bicubic) to float32 in [-1, 1]."""
    return np.asarray(picture.resize(size_wh, Image.BICUBIC), np.float32) / 127.5 - 1.0


def to_uint8(array: np.ndarray) -> np.ndarray:
    return np.round((np.clip(array, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def read_masks(seg_dir: str, stem: str, size_wh: tuple[int, int], ins_max: int) -> np.ndarray:
    """(H, W, ins_max): the photo's ins_max largest masks, empty slots all -1."""
    h, w = size_wh[1], size_wh[0]
    found = [
        to_unit(Image.open(p).convert("L"), size_wh) for p in sorted(glob.glob(os.path.join(seg_dir, f"{stem}_*.png")))
    ]
    found.sort(key=lambda m: -m.mean())
    masks = found[:ins_max] + [-np.ones((h, w), np.float32)] * (ins_max - min(len(found), ins_max))
    return np.stack(masks, axis=-1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an ONNX translator from experiments/export.py --format onnx")
    parser.add_argument("--dataroot", required=True)
    parser.add_argument("--phase", default="test")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--masker", default=None, help="an ONNX masker: predicts the masks instead of reading _seg")
    args = parser.parse_args()
    session = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    masker = None
    if args.masker:
        masker = onnxruntime.InferenceSession(args.masker, providers=["CPUExecutionProvider"])
        if masker.get_inputs()[0].shape[1:3] != session.get_inputs()[0].shape[1:3]:
            parser.error(f"the masker takes {masker.get_inputs()[0].shape[1:3]} photos, "
                         f"the translator {session.get_inputs()[0].shape[1:3]}: export both at one size")  # fmt: skip
    metadata = json.loads(session.get_modelmeta().custom_metadata_map["instagan_jax"])
    source, target = ("A", "B") if metadata["direction"] == "AtoB" else ("B", "A")
    _, height, width, _ = session.get_inputs()[0].shape
    ins_max = metadata["ins_max"]
    photo_dir, seg_dir = (os.path.join(args.dataroot, f"{args.phase}{source}{s}") for s in ("", "_seg"))
    os.makedirs(args.output_dir, exist_ok=True)
    photos = sorted(p for p in glob.glob(os.path.join(photo_dir, "*")) if p.lower().endswith(PHOTO_SUFFIXES))
    for path in photos:
        stem = os.path.splitext(os.path.basename(path))[0]
        image = to_unit(Image.open(path).convert("RGB"), (width, height))
        if masker is None:
            masks = read_masks(seg_dir, stem, (width, height), ins_max)
        else:  # largest first already: the first ins_max slots, padded with empty ones
            predicted = masker.run(None, {"images": image[None]})[0][0, ..., :ins_max]
            empty = -np.ones((height, width, ins_max - predicted.shape[-1]), np.float32)
            masks = np.concatenate([predicted, empty], axis=-1)
        translated, translated_masks = session.run(None, {"images": image[None], "masks": masks[None]})
        merged = np.clip(((translated_masks[0] + 1) / 2).sum(-1), 0, 1) * 2 - 1
        Image.fromarray(to_uint8(translated[0])).save(os.path.join(args.output_dir, f"{stem}_fake_{target}_img.png"))
        Image.fromarray(to_uint8(merged)).save(os.path.join(args.output_dir, f"{stem}_fake_{target}_seg.png"))
    print(f"translated {len(photos)} photos into {args.output_dir}")


if __name__ == "__main__":
    main()
