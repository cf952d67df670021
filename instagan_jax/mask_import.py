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
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

from instagan_jax import checks, image_io
from instagan_jax.image_io import DataError
from instagan_jax.json_files import read_json

MAX_COORDINATE = 1e6  # pixels; anything larger is not a photo's polygon
MAX_POINTS = 100_000  # per polygon: a traced outline of a large photo has thousands
MAX_SHAPES = 10_000  # per labelme file, and polygons per COCO annotation
# Bounding-box pixels the shapes of one photo may fill (drawing costs their area): seconds of work.
MAX_DRAWN_PIXELS = 2**32
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


def _draw(canvas: Image.Image, kind: str, points, where: str, budget: list[int]) -> None:
    """Fills one shape into ``canvas`` (an instance's "L" image, 255 = inside). ``budget`` holds
    the pixels of bounding boxes the photo may still fill: drawing costs their area, so a file
    of huge overlapping shapes is refused instead of drawn for hours."""
    if kind == "polygon" and not 3 <= len(points) <= MAX_POINTS:
        raise DataError(f"{where}: a polygon needs 3 to {MAX_POINTS} points, got {len(points)}")
    if kind != "polygon" and len(points) != 2:
        what = "a rectangle is 2 corner points" if kind == "rectangle" else "a circle is its centre and a point on it"
        raise DataError(f"{where}: {what}, got {len(points)} points")
    if kind == "circle":
        (cx, cy), (px, py) = points
        r = math.hypot(px - cx, py - cy)
        box = [cx - r, cy - r, cx + r, cy + r]
    else:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        box = [min(xs), min(ys), max(xs), max(ys)]
    width, height = canvas.size
    inside_w = max(0.0, min(box[2], width) - max(box[0], 0)) + 1
    inside_h = max(0.0, min(box[3], height) - max(box[1], 0)) + 1
    budget[0] -= int(inside_w * inside_h)
    if budget[0] < 0:
        raise DataError(f"{where}: the photo's shapes fill more than {MAX_DRAWN_PIXELS} pixels of bounding boxes "
                        "(mask_import.MAX_DRAWN_PIXELS): too many or too large overlapping shapes")  # fmt: skip
    draw = ImageDraw.Draw(canvas)
    if kind == "polygon":
        draw.polygon(points, fill=255)
    elif kind == "rectangle":
        draw.rectangle(box, fill=255)
    else:
        draw.ellipse(box, fill=255)


def _canvas(size_hw) -> Image.Image:
    return Image.new("L", (size_hw[1], size_hw[0]), 0)


def _check_count(count: int, size_hw, where: str) -> None:
    if count > image_io.MAX_MASKS_PER_IMAGE:
        raise DataError(f"{where}: {count} instances is over the limit of {image_io.MAX_MASKS_PER_IMAGE}")
    if count * size_hw[0] * size_hw[1] > image_io.MAX_MASK_PIXELS:
        raise DataError(f"{where}: {count} instances of {size_hw[1]}x{size_hw[0]} pixels are over the limit of "
                        f"{image_io.MAX_MASK_PIXELS} mask pixels (image_io.MAX_MASK_PIXELS)")  # fmt: skip


def _stack(canvases: list[Image.Image], size_hw) -> np.ndarray:
    return np.stack([np.asarray(c) > 0 for c in canvases]) if canvases else np.zeros((0, *size_hw), bool)


def read_labelme(path: str, labels: set[str] | None = None) -> tuple[str, np.ndarray]:
    """(stem of the photo, (N, H, W) masks) of one labelme file; ``labels`` keeps only those labels."""
    data = read_json(path)
    size = _size(data.get("imageHeight") if isinstance(data, dict) else None,
                 data.get("imageWidth") if isinstance(data, dict) else None, path)  # fmt: skip
    image_path = data.get("imagePath")
    stem = _stem(image_path) if isinstance(image_path, str) else image_io.image_stem(path)
    shapes = _field(data, "shapes", list, path)
    if len(shapes) > MAX_SHAPES:
        raise DataError(f"{path}: {len(shapes)} shapes, over the limit of {MAX_SHAPES} (mask_import.MAX_SHAPES)")
    instances: dict[object, Image.Image] = {}
    budget = [MAX_DRAWN_PIXELS]
    for i, shape in enumerate(shapes):
        where = f"{path}: shapes[{i}]"
        label = _field(shape, "label", str, where)
        kind = shape.get("shape_type") or "polygon"  # labelme < 4 wrote no type: polygons
        if kind in SKIPPED_SHAPES or (labels is not None and label not in labels):
            continue
        if kind not in AREA_SHAPES:
            raise DataError(f"{where}: shape_type {str(kind)[:40]!r} is not one of {AREA_SHAPES + SKIPPED_SHAPES}")
        points = _points(_field(shape, "points", list, where), where)
        group = shape.get("group_id")
        key = ("group", group) if isinstance(group, int) and not isinstance(group, bool) else ("shape", i)
        if key not in instances:
            _check_count(len(instances) + 1, size, path)
            instances[key] = _canvas(size)
        _draw(instances[key], kind, points, where, budget)
    return stem, _stack(list(instances.values()), size)


def read_coco(path: str, categories: set[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(stem of an image's file_name, (N, H, W) masks) for each image of a COCO-style file with an
    instance, drawn one image at a time (memory does not grow with the file's images). ``categories``
    keeps only the annotations of those category names. Two images of one stem are refused."""
    data = read_json(path)
    images, stems = {}, {}
    for i, info in enumerate(_field(data, "images", list, path)):
        where = f"{path}: images[{i}]"
        image_id = _field(info, "id", (int, str), where)
        name = _field(info, "file_name", str, where)
        stem = _stem(name)
        if stem in stems:
            raise DataError(f"{where}: {name!r} and {stems[stem]!r} share the name {stem!r}, so one's masks would "
                            "replace the other's; import them in two runs with two --output_dir")  # fmt: skip
        stems[stem] = name
        images[image_id] = (stem, _size(info.get("height"), info.get("width"), where))
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
    by_image: dict[object, list[tuple[str, object]]] = {}
    for i, ann in enumerate(_field(data, "annotations", list, path)):
        where = f"{path}: annotations[{i}]"
        image_id = _field(ann, "image_id", (int, str), where)
        if image_id not in images:
            raise DataError(f"{where}: image_id {repr(image_id)[:40]} is not in images")
        if ann.get("iscrowd") or (wanted is not None and ann.get("category_id") not in wanted):
            continue
        by_image.setdefault(image_id, []).append((where, ann.get("segmentation")))
        _check_count(len(by_image[image_id]), images[image_id][1], where)

    def drawn():  # the file is checked above, when called; each photo is drawn when reached
        for image_id, found in by_image.items():
            stem, size = images[image_id]
            budget = [MAX_DRAWN_PIXELS]
            yield stem, np.stack([_coco_segmentation(segmentation, size, where, budget)
                                  for where, segmentation in found])  # fmt: skip

    return drawn()


def _coco_segmentation(segmentation, size_hw, where: str, budget: list[int]) -> np.ndarray:
    if isinstance(segmentation, list):  # polygons of one instance (occlusion can split it)
        if not segmentation:
            raise DataError(f"{where}: empty segmentation")
        if len(segmentation) > MAX_SHAPES:
            raise DataError(f"{where}: {len(segmentation)} polygons, over the limit of {MAX_SHAPES}")
        canvas = _canvas(size_hw)
        for polygon in segmentation:
            _draw(canvas, "polygon", _points(polygon, where), where, budget)
        return np.asarray(canvas) > 0
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
    non-black colour is an instance, in increasing order of value; transparent pixels are background."""
    image = image_io.open_image(path, None)
    if image.mode in ("1", "L", "P", "LA", "PA"):
        labels = np.asarray(image.getchannel(0) if image.mode in ("LA", "PA") else image).astype(np.int64)
    else:
        rgb = np.asarray(image.convert("RGB")).astype(np.int64)
        labels = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    alpha = image_io.mask_values(image)
    if alpha is not None:  # painted on transparency: what is transparent is background
        labels[alpha == 0] = 0
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
    """Writes (N, H, W) masks as out_dir/{stem}_{k}.png (0 / 255), replacing the photo's masks
    there whole (masks {stem}_{k}.png of an earlier write with k >= N are removed); returns the paths."""
    check_stem(stem, source)
    checks.writable_folder(out_dir, "the masks' folder")
    paths = []
    for k, mask in enumerate(masks):
        path = os.path.join(out_dir, f"{stem}_{k}.png")
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)
        paths.append(path)
    for stale in image_io.index_masks(out_dir).get(stem, [])[len(paths) :]:
        os.remove(stale)
    return paths
