"""Pictures for TensorBoard and reports: image grids with instance masks drawn in colour."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# distinct colours for up to 20 instances, then they repeat
_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
     [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200],
     [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [128, 128, 128]],
    np.float32,
) / 255.0  # fmt: skip


_LINE_COLOURS = _PALETTE[[0, 3, 1, 4, 5, 12, 19, 14]]  # the ones readable and distinct as thin lines on white


def to_unit(x: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 1]."""
    return np.clip((np.asarray(x, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def colour_masks(masks: np.ndarray) -> np.ndarray:
    """(..., H, W, N) masks in [-1, 1] -> (..., H, W, 3): each instance in its own colour on black."""
    weights = to_unit(masks)  # (..., N)
    colours = _PALETTE[np.arange(masks.shape[-1]) % len(_PALETTE)]  # (N, 3)
    return np.clip(weights @ colours, 0.0, 1.0)


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


def curves_chart(steps, series: dict[str, list[float]], title: str, size=(480, 300)) -> np.ndarray:
    """A line chart of scores in [0, 1] against steps, as an (H, W, 3) picture in [0, 1].

    Drawn with PIL so that reports need no plotting library; one colour per series, legend on the right.
    """
    font = ImageFont.load_default(size=12)
    legend_w = 40 + max(font.getlength(name) for name in series)
    width, height = size
    left, top, plot_w, plot_h = 36, 22, int(width - legend_w - 40), height - 44
    picture = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(picture)
    draw.font = font
    draw.text((left, 4), title, fill="black")
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - tick)
        draw.line([left, y, left + plot_w, y], fill=(220, 220, 220))
        draw.text((4, y - 6), f"{tick:.2f}", fill="black")
    lo, hi = min(steps), max(steps)
    x_of = lambda s: left + plot_w * ((s - lo) / (hi - lo) if hi > lo else 0.5)
    for s in steps if len(steps) <= 10 else (lo, hi):
        draw.text((x_of(s) - 10, top + plot_h + 4), str(s), fill="black")
    for i, (name, values) in enumerate(series.items()):
        colour = tuple(int(255 * c) for c in _LINE_COLOURS[i % len(_LINE_COLOURS)])
        points = [(x_of(s), top + plot_h * (1 - float(np.clip(v, 0, 1)))) for s, v in zip(steps, values, strict=True)]
        draw.line(points, fill=colour, width=2) if len(points) > 1 else None
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.line([left + plot_w + 10, top + 8 + 16 * i, left + plot_w + 26, top + 8 + 16 * i], fill=colour, width=3)
        draw.text((left + plot_w + 30, top + 2 + 16 * i), name, fill="black")
    return np.asarray(picture, np.float32) / 255.0


def scores_chart(runs: dict[str, list[dict]], metrics: tuple[str, ...], title: str, size=(640, 320)) -> np.ndarray:
    """Chart of evaluate.py's results ({"step", "AtoB": {metric: score}, "BtoA": ...} per checkpoint)
    for one or more runs with the same steps: a line per (run, direction, metric) the results hold.
    Labels name the run unless its name is "" (a chart of one run)."""
    steps = [r["step"] for r in next(iter(runs.values()))]
    series = {}
    for label, results in runs.items():
        by_step = {r["step"]: r for r in results}
        for d in ("AtoB", "BtoA"):
            for m in metrics:
                if m in by_step[steps[0]][d]:
                    series[f"{label} {d.replace('to', '->')} {m}".strip()] = [by_step[s][d][m] for s in steps]
    return curves_chart(steps, series, title, size)


def save_png(path: str, picture: np.ndarray) -> None:
    """Writes an (H, W, 3) picture in [0, 1] as an 8-bit PNG."""
    Image.fromarray((np.clip(picture, 0.0, 1.0) * 255).round().astype(np.uint8)).save(path)
