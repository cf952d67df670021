"""Pictures for TensorBoard and reports: image grids with instance masks drawn in colour
(charts of scores are in charts.py)."""

from __future__ import annotations

import numpy as np
from PIL import Image

# distinct colours for up to 20 instances, then they repeat
_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
     [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200],
     [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [128, 128, 128]],
    np.float32,
) / 255.0  # fmt: skip


def to_unit(x: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 1]."""
    return np.clip((np.asarray(x, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def instance_colours(n: int) -> np.ndarray:
    """(n, 3) in [0, 1]: the colour of instance slot 0 .. n-1 in every picture."""
    return _PALETTE[np.arange(n) % len(_PALETTE)]


def colour_masks(masks: np.ndarray) -> np.ndarray:
    """(..., H, W, N) masks in [-1, 1] -> (..., H, W, 3): each instance in its own colour on black."""
    return np.clip(to_unit(masks) @ instance_colours(masks.shape[-1]), 0.0, 1.0)


def overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Image in [-1, 1] with its masks blended on top, in [0, 1]."""
    coverage = np.clip(to_unit(masks).sum(-1, keepdims=True), 0.0, 1.0)
    return to_unit(image) * (1 - alpha * coverage) + alpha * coverage * colour_masks(masks)


def grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tiles equally sized (H, W, 3) pictures in [0, 1] into one (rows x columns) picture."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.ones((len(rows) * (h + pad) - pad, cols * (w + pad) - pad, 3), np.float32)
    for i, row in enumerate(rows):
        for j, pic in enumerate(row):
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = pic
    return out


def translation_rows(real, real_masks, fake, fake_masks, rec, rec_masks) -> list[list[np.ndarray]]:
    """One row per example: real | real masks | translated | its masks | reconstructed | its masks."""
    return [
        [to_unit(real[i]), colour_masks(real_masks[i]), to_unit(fake[i]), colour_masks(fake_masks[i]),
         to_unit(rec[i]), colour_masks(rec_masks[i])]
        for i in range(real.shape[0])
    ]  # fmt: skip


def save_png(path: str, picture: np.ndarray) -> None:
    """Writes an (H, W, 3) picture in [0, 1] as an 8-bit PNG."""
    Image.fromarray((np.clip(picture, 0.0, 1.0) * 255).round().astype(np.uint8)).save(path)
