"""Instance masks people already have, in the authors' layout: ``{stem}_{k}.png``, 255 = instance.

Three sources, each read into ``{stem: (N, H, W) bool masks}``:
  - labelme JSON, one file per photo: polygons, rectangles and circles; shapes that share a
    ``group_id`` are one instance (labelme's convention); lines and points are not areas and
    are skipped;
  - a COCO-style JSON for a folder of photos: polygons, or RLE (compressed RLE needs
    pycocotools); crowd regions are skipped;
  - label images, one per photo: 0 (or black) is background, every other value (or colour)
    one instance.
``write_masks`` writes one photo's masks. The files come from elsewhere: each is checked
(size, types, finite coordinates, the image-size limit of image_io, at most
image_io.MAX_MASKS_PER_IMAGE instances, stems that stay file names) and every problem is a
DataError naming the file and the shape or annotation.
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageDraw

from instagan_jax import image_io
from instagan_jax.image_io import DataError
from instagan_jax.json_files import read_json

MAX_COORDINATE = 1e6  # pixels; anything larger is not a photo's polygon
MAX_MASK_PIXELS = 2**31  # all of one photo's masks together, held in memory as bytes
AREA_SHAPES = ("polygon", "rectangle", "circle")
SKIPPED_SHAPES = ("line", "linestrip", "point", "points")


def _field(obj, key: str, kind, where: str):
    """obj[key], which must be of ``kind``; DataError naming ``where`` otherwise."""
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"{where}: {key!r} must be {names}, got {type(value).__name__}")
    return value


def _stem(image_path: str) -> str:
    """The photo's stem from an annotation's path, written on Windows or elsewhere."""
    return image_io.image_stem(image_path.replace("\\", "/"))


def _size(height, width, where: str) -> tuple[int, int]:
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise DataError(f"{where}: image size must be positive integers, got {height!r} x {width!r}")
    if height * width > image_io.MAX_IMAGE_PIXELS:
        raise DataError(f"{where}: {width}x{height} pixels is over the limit of {image_io.MAX_IMAGE_PIXELS}")
    return height, width


def _points(values, where: str) -> list[tuple[float, float]]:
    """[[x, y], ...] or [x, y, x, y, ...] -> finite (x, y) tuples."""
    if not isinstance(values, list):
        raise DataError(f"{where}: points must be a list")
    flat = [v for p in values for v in p] if values and isinstance(values[0], list) else values
    if len(flat) % 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
        raise DataError(f"{where}: points must be pairs of numbers")
    if not all(math.isfinite(v) and abs(v) <= MAX_COORDINATE for v in flat):
        raise DataError(f"{where}: a coordinate is not finite or beyond {MAX_COORDINATE:g} pixels")
    return list(zip(flat[0::2], flat[1::2], strict=True))


def _draw(size_hw: tuple[int, int], kind: str, points, where: str) -> np.ndarray:
    canvas = Image.new("L", (size_hw[1], size_hw[0]), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "polygon":
        if len(points) < 3:
            raise DataError(f"{where}: a polygon needs at least 3 points, got {len(points)}")
        draw.polygon(points, fill=255)
    elif kind == "rectangle":
        if len(points) != 2:
            raise DataError(f"{where}: a rectangle is 2 corner points, got {len(points)}")
        (x0, y0), (x1, y1) = points
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=255)
    else:  # circle: centre and a point on it
        if len(points) != 2:
            raise DataError(f"{where}: a circle is its centre and a point on it, got {len(points)} points")
        (cx, cy), (px, py) = points
        r = math.hypot(px - cx, py - cy)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    return np.asarray(canvas) > 0


def _check_count(count: int, size_hw, where: str) -> None:
    if count > image_io.MAX_MASKS_PER_IMAGE:
        raise DataError(f"{where}: {count} instances is over the limit of {image_io.MAX_MASKS_PER_IMAGE}")
    if count * size_hw[0] * size_hw[1] > MAX_MASK_PIXELS:
        raise DataError(f"{where}: {count} instances of {size_hw[1]}x{size_hw[0]} pixels are over the limit of "
                        f"{MAX_MASK_PIXELS} mask pixels (mask_import.MAX_MASK_PIXELS)")  # fmt: skip


def _stack(masks: list[np.ndarray], size_hw) -> np.ndarray:
    return np.stack(masks) if masks else np.zeros((0, *size_hw), bool)


def read_labelme(path: str, labels: set[str] | None = None) -> tuple[str, np.ndarray]:
    """(stem of the photo, (N, H, W) masks) of one labelme file; ``labels`` keeps only those labels."""
    data = read_json(path)
    size = _size(data.get("imageHeight") if isinstance(data, dict) else None,
                 data.get("imageWidth") if isinstance(data, dict) else None, path)  # fmt: skip
    image_path = data.get("imagePath")
    stem = _stem(image_path) if isinstance(image_path, str) else image_io.image_stem(path)
    instances: dict[object, np.ndarray] = {}
    for i, shape in enumerate(_field(data, "shapes", list, path)):
        where = f"{path}: shapes[{i}]"
        label = _field(shape, "label", str, where)
        kind = shape.get("shape_type") or "polygon"  # labelme < 4 wrote no type: polygons
        if kind in SKIPPED_SHAPES or (labels is not None and label not in labels):
            continue
        if kind not in AREA_SHAPES:
            raise DataError(f"{where}: shape_type {str(kind)[:40]!r} is not one of {AREA_SHAPES + SKIPPED_SHAPES}")
        area = _draw(size, kind, _points(_field(shape, "points", list, where), where), where)
        group = shape.get("group_id")
        key = ("group", group) if isinstance(group, int) and not isinstance(group, bool) else ("shape", i)
        instances[key] = instances[key] | area if key in instances else area
        _check_count(len(instances), size, path)
    return stem, _stack(list(instances.values()), size)


def read_coco(path: str, categories: set[str] | None = None) -> dict[str, np.ndarray]:
    """{stem of each image's file_name: (N, H, W) masks} of a COCO-style file; images without an
    instance are left out. ``categories`` keeps only the annotations of those category names."""
    data = read_json(path)
    images = {}
    for i, info in enumerate(_field(data, "images", list, path)):
        where = f"{path}: images[{i}]"
        image_id = _field(info, "id", (int, str), where)
        name = _field(info, "file_name", str, where)
        images[image_id] = (_stem(name), _size(info.get("height"), info.get("width"), where))
    wanted = None
    if categories is not None:
        known = {}
        for i, c in enumerate(_field(data, "categories", list, path)):
            where = f"{path}: categories[{i}]"
            known[_field(c, "name", str, where)] = _field(c, "id", (int, str), where)
        missing = sorted(categories - set(known))
        if missing:
            raise DataError(f"{path}: no categories {missing} (it has {sorted(known)[:20]})")
        wanted = {known[name] for name in categories}
    masks: dict[object, list[np.ndarray]] = {}
    for i, ann in enumerate(_field(data, "annotations", list, path)):
        where = f"{path}: annotations[{i}]"
        image_id = _field(ann, "image_id", (int, str), where)
        if image_id not in images:
            raise DataError(f"{where}: image_id {repr(image_id)[:40]} is not in images")
        if ann.get("iscrowd") or (wanted is not None and ann.get("category_id") not in wanted):
            continue
        size = images[image_id][1]
        masks.setdefault(image_id, []).append(_coco_segmentation(ann.get("segmentation"), size, where))
        _check_count(len(masks[image_id]), size, where)
    return {images[image_id][0]: np.stack(found) for image_id, found in masks.items()}


def _coco_segmentation(segmentation, size_hw, where: str) -> np.ndarray:
    if isinstance(segmentation, list):  # polygons of one instance (occlusion can split it)
        if not segmentation:
            raise DataError(f"{where}: empty segmentation")
        area = np.zeros(size_hw, bool)
        for polygon in segmentation:
            area |= _draw(size_hw, "polygon", _points(polygon, where), where)
        return area
    if isinstance(segmentation, dict):
        return _decode_rle(segmentation, size_hw, where)
    raise DataError(f"{where}: segmentation must be polygons or RLE, got {type(segmentation).__name__}")


def _decode_rle(rle: dict, size_hw, where: str) -> np.ndarray:
    size = _field(rle, "size", list, where)
    if [*size] != [*size_hw]:
        raise DataError(f"{where}: RLE size {size} differs from its image's {list(size_hw)}")
    counts = _field(rle, "counts", (list, str), where)
    h, w = size_hw
    if isinstance(counts, str):  # compressed: pycocotools' format, decoded by pycocotools
        try:
            from pycocotools import mask as coco_mask
        except ImportError:
            raise DataError(f"{where}: compressed RLE needs pycocotools (pip install pycocotools)") from None
        try:
            return coco_mask.decode({"size": [h, w], "counts": counts.encode("ascii")}).astype(bool)
        except (ValueError, UnicodeEncodeError) as e:
            raise DataError(f"{where}: unreadable compressed RLE ({e})") from None
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts) or sum(counts) != h * w:
        raise DataError(f"{where}: RLE counts must be non-negative integers summing to {h} x {w}")
    values = np.arange(len(counts)) % 2 == 1  # runs alternate background, instance, ...
    return np.repeat(values, counts).reshape(w, h).T  # column-major, as COCO stores it


def read_label_image(path: str) -> np.ndarray:
    """(N, H, W) masks of one label image: every non-zero value (grey or palette index) or
    non-black colour is an instance, in increasing order of value."""
    image = image_io.open_image(path, None)
    if image.mode in ("1", "L", "P", "LA", "PA"):
        labels = np.asarray(image.getchannel(0) if image.mode in ("LA", "PA") else image).astype(np.int64)
    else:
        rgb = np.asarray(image.convert("RGB")).astype(np.int64)
        labels = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    values = np.unique(labels)
    values = values[values != 0]
    _check_count(len(values), labels.shape, path)
    return labels[None] == values[:, None, None]


def check_stem(stem: str, source: str) -> str:
    """A photo's stem must be a plain file name (it comes from the annotation file)."""
    if not stem or stem in (".", "..") or "/" in stem or "\\" in stem or "\0" in stem or len(stem) > 200:
        raise DataError(f"{source}: {stem[:60]!r} cannot name a mask file")
    return stem


def write_masks(out_dir: str, stem: str, masks: np.ndarray, source: str) -> list[str]:
    """Writes (N, H, W) masks as out_dir/{stem}_{k}.png (0 / 255); returns the paths."""
    check_stem(stem, source)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for k, mask in enumerate(masks):
        path = os.path.join(out_dir, f"{stem}_{k}.png")
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)
        paths.append(path)
    return paths
