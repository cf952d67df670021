"""A procedural two-domain set with exact instance masks: discs <-> squares, or discs <-> bars.

Domain A holds warm-coloured discs and ellipses; domain B cool-coloured squares and
rectangles (task "squares"), or long horizontal and vertical bars, 3 to 4.5 times as long as
wide (task "bars": a translation must grow each instance out of its old outline, which a
network that cannot tell instances apart cannot place), 1 to 8 per image, overlapping
(later instances occlude earlier ones; each mask is the visible part). Backgrounds are
drawn from one distribution for both domains, so a good translation changes the instances
and nothing else, and the ground truth needed to score it (shape, colour family, count) is
known. Task "chosen" is "squares" with one or two bystanders in every image of both
domains: discs drawn like domain A's instances but without a mask, under the instances, to
be left as they are. Which discs of an A image to change is then in the masks alone, the
case of a user who picks the instances to translate. Deterministic given (seed, index).
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image

# Hue ranges (in [0, 1)) of the two colour families.
HUES = {"A": (0.97, 1.08), "B": (0.55, 0.66)}  # A: red-orange (wraps around 1), B: blue
# Images per split at most: a million 64x64 images take hours to render and gigabytes to keep.
MAX_GENERATED = 1_000_000
TASKS = ("squares", "bars", "chosen")  # what domain B holds; "chosen": squares, and bystanders in both
BYSTANDERS = (1, 2)  # task "chosen": unmasked discs per image
BAR_ELONGATION = (3.0, 4.5)  # long side / short side of the bars
MIN_VISIBLE_FRACTION = 0.75


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-frequency greyish-green noise plus faint stripes, identical in law for A and B."""
    coarse = rng.uniform(60, 190, (4, 4, 3)).astype(np.uint8)
    noise = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), np.float32)
    tint = np.array([0.8, 1.0, 0.85], np.float32) * rng.uniform(0.8, 1.1)
    y, x = np.mgrid[:h, :w]
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 16)
    stripes = 12 * np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period + rng.uniform(0, 6.3))
    return np.clip(noise.mean(-1, keepdims=True) * tint + stripes[..., None], 0, 255)


def _colour(rng: np.random.Generator, domain: str) -> np.ndarray:
    lo, hi = HUES[domain]
    rgb = colorsys.hsv_to_rgb(rng.uniform(lo, hi) % 1.0, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0))
    return np.array(rgb, np.float32) * 255


def _instance_colour(rng: np.random.Generator, domain: str) -> np.ndarray:
    """A shape's fill: its domain's colour, each channel dimmed by up to 10%."""
    return _colour(rng, domain) * rng.uniform(0.9, 1.0, (1, 3))


def _shape_mask(
    rng: np.random.Generator, domain: str, h: int, w: int, task: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """(this domain's shape, the other domain's shape with the same centre and extents).

    The second is what a perfect discs <-> squares translation draws (a disc's bounding
    rectangle, a rectangle's inscribed ellipse); for bars it is None (a bar has no one
    counterpart disc).
    """
    size = min(h, w)
    ry = rng.uniform(size / 12, size / 5)
    rx = ry * rng.uniform(0.75, 1.33)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)  # may touch or cross the border
    y, x = np.mgrid[:h, :w] + 0.5
    ellipse = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
    rectangle = (np.abs(y - cy) <= ry) & (np.abs(x - cx) <= rx)
    if task == "bars":
        if domain == "A":
            return ellipse, None
        half_long = ry * np.sqrt(np.pi * (e := rng.uniform(*BAR_ELONGATION))) / 2  # about a disc's area
        ry, rx = (half_long, half_long / e) if rng.random() < 0.5 else (half_long / e, half_long)
        return (np.abs(y - cy) <= ry) & (np.abs(x - cx) <= rx), None
    return (ellipse, rectangle) if domain == "A" else (rectangle, ellipse)


def render(
    domain: str,
    seed: int,
    index: int,
    size: tuple[int, int] = (64, 64),
    max_instances: int = 8,
    min_instances: int = 1,
    task: str = "squares",
    translated: bool = False,
):
    """One example: (image uint8 (H, W, 3), masks uint8 (n, H, W) in {0, 255}), n <= max_instances.

    n is drawn from [min_instances, max_instances]; it can fall short of the draw when the
    image is too small to hold that many recognisable shapes. ``translated`` (tasks "squares"
    and "chosen"): the same example as a perfect translation to the other domain draws it:
    each shape swapped for its counterpart (same centre and extents, the other domain's
    colours), in the same order, over the same background.
    """
    if domain not in HUES:
        raise ValueError(f"domain must be 'A' or 'B', got {domain!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not 1 <= min_instances <= max_instances:
        raise ValueError(f"need 1 <= min_instances <= max_instances, got {min_instances}, {max_instances}")
    if translated and task == "bars":
        raise ValueError("a perfect translation is defined for tasks 'squares' and 'chosen', not 'bars'")
    h, w = size
    rng = np.random.default_rng([seed, ord(domain), index])
    image = _background(rng, h, w)
    if task == "chosen":  # from a stream of their own: the instances are drawn as in "squares"
        _draw_bystanders(np.random.default_rng([seed, ord(domain), index, 2]), image)
    wanted = int(rng.integers(min_instances, max_instances + 1))
    visible: list[np.ndarray] = []
    counterparts: list[np.ndarray] = []  # the translation's visible shapes
    other = "B" if domain == "A" else "A"
    if translated:  # its colours from a stream of their own, so that rng's draws stay as they are
        other_rng, translation = np.random.default_rng([seed, ord(other), index, 1]), image.copy()
    for _ in range(4 * wanted):  # bounded retries: a shape is kept only if all stay recognisable
        if len(visible) == wanted:
            break
        shape, counterpart = _shape_mask(rng, domain, h, w, task)
        occluded = [m & ~shape for m in visible]
        if _recognisable(shape) and all(_recognisable(m) for m in occluded):
            image[shape] = _instance_colour(rng, domain)
            visible = occluded + [shape]
            if translated:
                translation[counterpart] = _instance_colour(other_rng, other)
                counterparts = [m & ~counterpart for m in counterparts] + [counterpart]
    if not visible:  # tiny images: fall back to one centred instance
        drawn, image = (other, translation) if translated else (domain, image)
        visible = [np.zeros((h, w), bool)]
        visible[0][h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
        if drawn == "A":
            y, x = np.mgrid[:h, :w]
            visible[0] &= ((y - h / 2) / (h / 4)) ** 2 + ((x - w / 2) / (w / 4)) ** 2 <= 1
        image[visible[0]] = _colour(rng, drawn)
    elif translated:
        image, visible = translation, counterparts
    return image.astype(np.uint8), np.stack(visible).astype(np.uint8) * 255


def _draw_bystanders(rng: np.random.Generator, image: np.ndarray) -> None:
    """Paints one or two discs of domain A's law onto ``image`` (they get no mask)."""
    h, w = image.shape[:2]
    for _ in range(int(rng.integers(BYSTANDERS[0], BYSTANDERS[1] + 1))):
        disc, _ = _shape_mask(rng, "A", h, w, "squares")
        image[disc] = _instance_colour(rng, "A")


def _recognisable(mask: np.ndarray) -> bool:
    """At least 12 pixels, and filling its bounding box at least 60% as much as a disc does."""
    area = mask.sum()
    if area < 12:
        return False
    ys, xs = np.nonzero(mask)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    return area / box >= MIN_VISIBLE_FRACTION * (np.pi / 4)
