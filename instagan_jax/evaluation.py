"""Translation quality measured from pictures: what changed inside the instances, what stayed outside.

On the shapes set the truth is known, so each translated image is scored by what it shows,
whatever model made it (InstaGAN's masks are not needed, so the CycleGAN baseline is scored
the same way). The "target-coloured" pixels of an output are those whose hue lies in the
target domain's colour family (saturated, bright: the grey-green backgrounds never qualify);
their connected components are the output's instances.

- shape rate: fraction of output components with the target shape (rectangularity =
  area / bounding-box area >= 0.9 for squares; between 0.5 and 0.9 for discs, ~0.785; on the
  "bars" task, bars are also at least twice as long as wide, discs less than that);
- placed shape rate: fraction of input instances with an output component of the target
  shape over them (each component matched to at most one instance, greedily by overlap, which
  must reach 40% of the smaller of the two: a bar grown from a disc covers half of it). The
  shape rate asks whether the shapes are right, this one also where they are: a shape drawn
  away from every instance counts for none, one blob over two instances for one at most;
- count preservation: fraction of images whose number of output components equals the
  number of connected components of the merged input masks;
- colour success: fraction of input instances whose mean output colour (over the input
  instance's pixels) is nearer the target colour family than the source one;
- background error: mean |input - output| (on [0, 1] images) outside the input instances,
  the output instances, and a 1-pixel border around them;
- bystanders kept (task "chosen" only): fraction of the input's unmasked disc-coloured
  components (the discs no mask asked to change) still disc-coloured in the output, over
  half of their pixels. The background error cannot see them: a bystander turned into a
  target-coloured square counts as an output instance there.

For InstaGAN the generated masks are scored too (`mask_shape_rate` per generated mask,
`mask_count_preservation` of the merged masks): they show what the network meant to draw
before its pictures are sharp.

The same shape, placed shape and count measures applied to real target-domain images (with
their true masks) give the reference: what a perfect translation would score, since
occlusion makes some visible parts non-square and merges touching instances.

For any dataset, `background_error` and `mask_area_ratio` (generated mask area / input
mask area, InstaGAN only) need no ground truth.
"""

from __future__ import annotations

import colorsys

import numpy as np
from scipy import ndimage

from instagan_jax.datasets.shapes import HUES

SQUARE_MIN_FILL = 0.9
DISC_FILL_RANGE = (0.5, 0.9)
BAR_MIN_ELONGATION = 2.0  # bars: drawn 3 to 4.5 times as long as wide; discs: at most 1.33 (but
# cut by the image border or occluded, the visible parts of either stretch or shrink)
PLACED_MIN_OVERLAP = 0.4  # of the smaller of an instance and a component
MIN_COMPONENT_FRACTION = 0.005  # of the image area: smaller specks are not instances
_MIN_SATURATION, _MIN_VALUE, _HUE_TOLERANCE = 0.45, 0.45, 0.12


def _hue_centre(domain: str) -> float:
    lo, hi = HUES[domain]
    return ((lo + hi) / 2) % 1.0


def _hue_distance(hue: np.ndarray, centre: float) -> np.ndarray:
    d = np.abs(hue - centre) % 1.0
    return np.minimum(d, 1.0 - d)


def _hsv(image_unit: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> HSV in [0, 1] (numpy, vectorised colorsys)."""
    r, g, b = np.moveaxis(image_unit, -1, 0)
    v = image_unit.max(-1)
    c = v - image_unit.min(-1)
    s = np.where(v > 0, c / np.maximum(v, 1e-12), 0.0)
    safe = np.maximum(c, 1e-12)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(c > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, v], -1)


def coloured_like(image: np.ndarray, domain: str) -> np.ndarray:
    """(H, W) bool: pixels of an image in [-1, 1] whose colour is of ``domain``'s family."""
    hsv = _hsv((np.asarray(image, np.float64) + 1.0) / 2.0)
    return (
        (hsv[..., 1] >= _MIN_SATURATION)
        & (hsv[..., 2] >= _MIN_VALUE)
        & (_hue_distance(hsv[..., 0], _hue_centre(domain)) <= _HUE_TOLERANCE)
    )


def components(mask: np.ndarray) -> list[np.ndarray]:
    """Connected components (8-neighbourhood) of a bool mask, specks dropped."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    min_area = MIN_COMPONENT_FRACTION * mask.size
    return [c for c in (labels == i for i in range(1, n + 1)) if c.sum() >= min_area]


def fill_ratio(mask: np.ndarray) -> float:
    """Area / bounding-box area: 1 for axis-aligned rectangles, ~0.785 for discs."""
    ys, xs = np.nonzero(mask)
    return float(mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)))


def elongation(mask: np.ndarray) -> float:
    """Long side / short side of the bounding box."""
    ys, xs = np.nonzero(mask)
    sides = sorted((np.ptp(ys) + 1, np.ptp(xs) + 1))
    return float(sides[1] / sides[0])


def has_shape_of(mask: np.ndarray, domain: str, task: str = "squares") -> bool:
    """Is this component a shape of ``domain`` (discs in A; squares or bars in B, by ``task``)?"""
    fill = fill_ratio(mask)
    if domain == "B":
        return fill >= SQUARE_MIN_FILL and (task != "bars" or elongation(mask) >= BAR_MIN_ELONGATION)
    disc = DISC_FILL_RANGE[0] <= fill < DISC_FILL_RANGE[1]
    return disc and (task != "bars" or elongation(mask) < BAR_MIN_ELONGATION)


def _mean_hue_nearer(image: np.ndarray, where: np.ndarray, target: str, source: str) -> bool:
    rgb = (np.asarray(image, np.float64)[where].mean(0) + 1.0) / 2.0
    hue = colorsys.rgb_to_hsv(*np.clip(rgb, 0, 1))[0]
    return bool(_hue_distance(np.array(hue), _hue_centre(target)) < _hue_distance(np.array(hue), _hue_centre(source)))


def shapes_scores(
    inputs, input_masks, outputs, source: str, target: str, output_masks=None, task: str = "squares"
) -> dict[str, float]:
    """Scores a batch of translations source -> target on shapes (of ``task``).

    inputs, outputs: (N, H, W, 3) in [-1, 1]; input_masks: (N, H, W, K) in [-1, 1] (-1 = empty
    slot); output_masks: the generator's masks, same shape, or None (CycleGAN).
    """
    target_pixels = np.stack([coloured_like(image, target) for image in outputs])
    colour_hits, colour_total = 0, 0
    for i in range(len(inputs)):
        instances = [m for m in np.moveaxis(np.asarray(input_masks[i]) > 0, -1, 0) if m.any()]
        for m in instances:
            colour_total += 1
            colour_hits += _mean_hue_nearer(outputs[i], m, target, source)
    changed = np.any(np.asarray(input_masks) > 0, axis=-1) | target_pixels
    if output_masks is not None:
        changed |= np.any(np.asarray(output_masks) > 0, axis=-1)
    scores = {
        **_component_scores(target_pixels, input_masks, target, task),
        "colour_success": colour_hits / max(colour_total, 1),
        "background_error": _mean_change_outside(inputs, outputs, changed),
    }
    if output_masks is not None:
        scores.update(generated_mask_scores(input_masks, output_masks, target, task))
    if task == "chosen":
        scores["bystanders_kept"] = bystanders_kept(inputs, input_masks, outputs)
    return scores


def bystanders_kept(inputs, input_masks, outputs) -> float:
    """Fraction of the inputs' disc-coloured components outside the instances that keep the
    disc colour on most of their pixels."""
    kept, total = 0, 0
    for image_in, masks, image_out in zip(np.asarray(inputs), np.asarray(input_masks) > 0, outputs, strict=True):
        outside = _outside(masks.any(-1))
        still = coloured_like(image_out, "A")
        for bystander in components(coloured_like(image_in, "A") & outside):
            total += 1
            kept += still[bystander].mean() > 0.5
    return kept / total if total else float("nan")


def generated_mask_scores(input_masks, output_masks, target: str, task: str = "squares") -> dict[str, float]:
    """Shape rate of each non-empty generated mask, and count preservation of the merged ones."""
    shape_hits, shape_total, count_hits = 0, 0, 0
    for masks_in, masks_out in zip(np.asarray(input_masks) > 0, np.asarray(output_masks) > 0, strict=True):
        generated = [m for m in np.moveaxis(masks_out, -1, 0) if m.sum() >= MIN_COMPONENT_FRACTION * m.size]
        shape_hits += sum(has_shape_of(m, target, task) for m in generated)
        shape_total += len(generated)
        count_hits += len(components(masks_out.any(-1))) == len(components(masks_in.any(-1)))
    return {
        "mask_shape_rate": shape_hits / max(shape_total, 1),
        "mask_count_preservation": count_hits / len(input_masks),
    }


def _component_scores(pixels: np.ndarray, truth_masks, domain: str, task: str) -> dict[str, float]:
    """Shape rate of the components of (N, H, W) ``pixels``, the placed shape rate over the
    instances of (N, H, W, K) ``truth_masks``, and whether the components' count matches the
    components of the merged masks."""
    shape_hits, shape_total, placed_hits, instance_total, count_hits = 0, 0, 0, 0, 0
    for found_pixels, masks in zip(pixels, np.asarray(truth_masks) > 0, strict=True):
        found = components(found_pixels)
        shaped = [has_shape_of(c, domain, task) for c in found]
        shape_hits += sum(shaped)
        shape_total += len(found)
        instances = [m for m in np.moveaxis(masks, -1, 0) if m.any()]
        placed_hits += sum(shaped[j] for j in _placed_components(instances, found))
        instance_total += len(instances)
        count_hits += len(found) == len(components(masks.any(-1)))
    return {"shape_rate": shape_hits / max(shape_total, 1), "placed_shape_rate": placed_hits / max(instance_total, 1),
            "count_preservation": count_hits / len(pixels)}  # fmt: skip


def _placed_components(instances: list[np.ndarray], found: list[np.ndarray]) -> list[int]:
    """Indices of the components over each instance: matched one to one, greedily by overlap / the smaller area."""
    if not instances or not found:
        return []
    instance_pixels = np.stack(instances).reshape(len(instances), -1).astype(np.float64)
    component_pixels = np.stack(found).reshape(len(found), -1).astype(np.float64)
    smaller = np.minimum.outer(instance_pixels.sum(1), component_pixels.sum(1))
    share = instance_pixels @ component_pixels.T / smaller
    return [j for _, j, _ in _greedy_pairs(share, PLACED_MIN_OVERLAP)]


def _greedy_pairs(similarity: np.ndarray, minimum: float) -> list[tuple[int, int, float]]:
    """One-to-one (row, column, similarity) pairs, the most similar first, down to ``minimum``."""
    similarity, pairs = similarity.copy(), []
    while similarity.size and similarity.max() >= minimum:
        i, j = np.unravel_index(np.argmax(similarity), similarity.shape)
        pairs.append((int(i), int(j), float(similarity[i, j])))
        similarity[i, :], similarity[:, j] = -np.inf, -np.inf
    return pairs


def reference_scores(images, masks, domain: str, task: str = "squares") -> dict[str, float]:
    """Shape rate and count preservation of real ``domain`` images: the ceiling of a translation."""
    return _component_scores(np.stack([coloured_like(image, domain) for image in images]), masks, domain, task)


def mask_area_ratio(input_masks, output_masks) -> float:
    """Total generated mask area / total input mask area (1: instances keep their size)."""
    area_in = float((np.asarray(input_masks) > 0).sum())
    return float((np.asarray(output_masks) > 0).sum()) / max(area_in, 1.0)


def background_error(inputs, input_masks, outputs, output_masks) -> float:
    """Mean |input - output| on [0, 1] images outside both mask sets (and a 1-pixel border)."""
    changed = np.any(np.asarray(input_masks) > 0, -1) | np.any(np.asarray(output_masks) > 0, -1)
    return _mean_change_outside(inputs, outputs, changed)


def _mean_change_outside(inputs, outputs, changed: np.ndarray) -> float:
    """Mean over images of the mean |input - output| (on [0, 1]) outside ``changed`` (N, H, W)
    and a 1-pixel border around it; images that are all instance do not count."""
    errors = []
    for image_in, image_out, region in zip(np.asarray(inputs), np.asarray(outputs), changed, strict=True):
        keep = _outside(region)
        if keep.any():
            errors.append(np.abs(image_in - image_out)[keep].mean() / 2.0)
    return float(np.mean(errors)) if errors else float("nan")


def _outside(region: np.ndarray) -> np.ndarray:
    """The pixels outside ``region`` and a 1-pixel border around it (resized masks miss edge pixels)."""
    return ~ndimage.binary_dilation(region, iterations=1)


def instance_scores(true_masks, predicted_masks) -> dict[str, float]:
    """How well predicted instance masks (B, H, W, N) reproduce the true ones (B, H, W, M), in [-1, 1].

    Each true instance is matched to at most one predicted instance, greedily by IoU;
    ``matched_iou`` is the mean IoU over true instances (0 for an unmatched one),
    ``count_accuracy`` the fraction of images with exactly as many predicted instances as true
    ones, ``count_error`` the mean absolute difference of the counts.
    """
    ious, exact, errors = [], [], []
    for truth, predicted in zip(np.asarray(true_masks) > 0, np.asarray(predicted_masks) > 0, strict=True):
        truth, predicted = (m.reshape(-1, m.shape[-1]) for m in (truth, predicted))  # (pixels, slots)
        truth, predicted = truth[:, truth.any(axis=0)], predicted[:, predicted.any(axis=0)]  # instances only
        intersection = truth.T.astype(np.float64) @ predicted.astype(np.float64)
        union = truth.sum(0)[:, None] + predicted.sum(0)[None, :] - intersection
        iou = intersection / np.maximum(union, 1.0)
        matched = np.zeros(truth.shape[1])
        for t, _, overlap in _greedy_pairs(iou, np.nextafter(0.0, 1.0)):  # any overlap at all
            matched[t] = overlap
        ious.extend(matched)
        exact.append(truth.shape[1] == predicted.shape[1])
        errors.append(abs(truth.shape[1] - predicted.shape[1]))
    return {"matched_iou": float(np.mean(ious)) if ious else 1.0, "count_accuracy": float(np.mean(exact)),
            "count_error": float(np.mean(errors))}  # fmt: skip
