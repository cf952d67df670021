"""Reading images and instance masks stored in the authors' folder layout.

    dataroot/{phase}A/0001.png   dataroot/{phase}A_seg/0001_0.png, 0001_1.png, ...

Images are resized with PIL's bicubic filter and scaled to [-1, 1] exactly as the
reference's torchvision transforms do, so translations match the authors' ``test.py``
to the grey level. Photos are turned upright by their EXIF orientation (as phones save them
and as viewers and annotation tools show them), masks likewise. Every entry point reads a mask
with ``mask_array``: its alpha channel where it has one that is not fully opaque (a painted
layer), else its grey level (L, palette or RGB).

Dataset folders come from elsewhere, so every file is checked before it is decoded, and
every problem raises ``DataError`` naming the file: a link that leads outside its folder, a
FIFO or device (which would block a read forever), content that is not one of
``IMAGE_FORMATS`` whatever its name (PIL's other plugins, e.g. EPS through Ghostscript, are
never reached), more than ``MAX_IMAGE_PIXELS`` pixels (a decompression bomb), 16-bit or
float pixels, truncated data, more than ``MAX_MASKS_PER_IMAGE`` masks for one image, or two
images of one stem (``x.png`` and ``x.jpg``, whose masks and outputs would be confused).
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

from instagan_jax import checks

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "PPM", "TIFF")  # what the extensions name; content decides
# A 50-megapixel photo decodes to 150 MB of RGB; raise this (module attribute) for larger ones.
MAX_IMAGE_PIXELS = 50_000_000
# COCO's most crowded image has 93 instances; a folder of thousands of masks is a mistake or an attack.
MAX_MASKS_PER_IMAGE = checks.MAX_INSTANCES
# One image's masks together, as stored bytes (a dataset keeps them whole): 256 masks of 8 megapixels.
MAX_MASK_PIXELS = 2**31
_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")  # 8-bit modes PIL converts exactly
_MASK_NAME = re.compile(r"^(?P<stem>.+)_(?P<index>\d+)\.png$", re.IGNORECASE)


class DataError(ValueError):
    """A dataset file or folder that cannot be used, with its path in the message."""


def domain_dirs(dataroot: str, phase: str, domain: str) -> tuple[str, str]:
    """(image folder, mask folder) of one domain ('A' or 'B'), checked to exist."""
    image_dir = os.path.join(dataroot, f"{phase}{domain}")
    mask_dir = os.path.join(dataroot, f"{phase}{domain}_seg")
    for folder in (image_dir, mask_dir):
        if not os.path.isdir(folder):
            raise DataError(
                f"{folder}: folder not found (expected the authors' layout {phase}{domain}/ and {phase}{domain}_seg/)"
            )
    return image_dir, mask_dir


def list_images(image_dir: str) -> list[str]:
    """Sorted image paths of a folder; an empty folder, or two images of one stem, is an error."""
    paths = sorted(
        os.path.join(image_dir, name) for name in os.listdir(image_dir) if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not paths:
        raise DataError(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    check_unique_stems(paths)
    return paths


def check_unique_stems(paths: Sequence[str]) -> None:
    """Masks ({stem}_k.png) and outputs are named by stem: two photos of one stem cannot both have theirs."""
    seen: dict[str, str] = {}
    for path in paths:
        stem = image_stem(path)
        if stem in seen:
            raise DataError(f"{path} and {seen[stem]} share the name {stem!r}, so their masks and outputs would be "
                            "confused; rename one")  # fmt: skip
        seen[stem] = path


def index_masks(mask_dir: str) -> dict[str, list[str]]:
    """{image stem: its mask paths ordered by instance index} for a ``*_seg`` folder."""
    found: dict[str, list[tuple[int, str]]] = {}
    for name in os.listdir(mask_dir):
        if match := _MASK_NAME.match(name):
            found.setdefault(match["stem"], []).append((int(match["index"]), os.path.join(mask_dir, name)))
    return {stem: [path for _, path in sorted(items)] for stem, items in found.items()}


def image_stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def check_regular_file_inside_folder(path: str) -> None:
    """A dataset entry must be a regular file whose real path lies in the folder that lists it."""
    folder = os.path.realpath(os.path.dirname(path) or ".")
    real = os.path.realpath(path)
    if os.path.commonpath([folder, real]) != folder:
        raise DataError(f"{path}: a link to {real}, outside its folder; dataset entries must be inside the dataset")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: not a regular file (a folder, FIFO or device)")


def open_image(path: str, mode: str | None, max_pixels: int | None = None) -> Image.Image:
    """A checked, fully decoded image converted to ``mode`` ("RGB" or "L"; None keeps the stored
    mode, e.g. a palette image's indices); DataError otherwise. ``max_pixels`` lowers the limit."""
    check_regular_file_inside_folder(path)
    limit = min(max_pixels or MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=IMAGE_FORMATS) as img:
                pixels = img.width * img.height
                if pixels > limit:
                    raise DataError(
                        f"{path}: {img.width}x{img.height} pixels is over the limit of {limit} "
                        "(image_io.MAX_IMAGE_PIXELS; a decompression bomb or a photo to shrink first)"
                    )
                if img.mode not in _MODES:
                    raise DataError(f"{path}: pixel mode {img.mode} (16-bit or float) is not supported; save as 8-bit")
                img.load()
                img = ImageOps.exif_transpose(img)  # upright, as a viewer shows it
                return img.convert(mode) if mode else img.copy()
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: over the pixel limit ({e})") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: not a {'/'.join(IMAGE_FORMATS)} image, whatever its name") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable or truncated image ({e})") from None


def stored_size(path: str) -> tuple[int, int]:
    """(height, width) of an image from its header, before anything is decoded (as stored: EXIF
    orientation may swap them), checked as open_image checks the file."""
    check_regular_file_inside_folder(path)
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            return img.height, img.width
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: not a {'/'.join(IMAGE_FORMATS)} image, whatever its name") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable or truncated image ({e})") from None


def _to_unit_range(img: Image.Image, size_hw: tuple[int, int] | None) -> np.ndarray:
    if size_hw is not None and img.size != (size_hw[1], size_hw[0]):
        img = img.resize((size_hw[1], size_hw[0]), Image.BICUBIC)
    # torchvision's ToTensor then Normalize(0.5, 0.5), in float32 and in that order
    return (np.asarray(img, np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)


def read_image(path: str, size_hw: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) float32 in [-1, 1], bicubic-resized to size_hw (height, width) if given."""
    return _to_unit_range(open_image(path, "RGB"), size_hw)


def read_example(
    image_path: str, mask_paths: Sequence[str], size_hw: tuple[int, int] | None = None, keep: int | None = None
):
    """An image and its masks, resized alike: ((H, W, 3), (H, W, n)) float32 in [-1, 1].

    Validated as read_raw_example does, one mask at a time: with ``keep`` only the ``keep``
    largest masks (those a translation of ins_max = keep uses) are held, so memory does not grow
    with the number of masks.
    """
    _check_mask_count(image_path, mask_paths)
    photo = open_image(image_path, "RGB")
    image = _to_unit_range(photo, size_hw)
    kept: list[tuple[float, int, np.ndarray]] = []  # (-area, index, mask): the largest first, then the earliest
    for index, path in enumerate(mask_paths):
        mask = _to_unit_range(Image.fromarray(read_mask(path, photo.size, image_path)), size_hw)
        kept = sorted([*kept, (-float(np.mean(mask)), index, mask)], key=lambda k: k[:2])[:keep]
    return image, np.stack([mask for _, _, mask in sorted(kept, key=lambda k: k[1])], axis=-1)


def _check_mask_count(image_path: str, mask_paths: Sequence[str]) -> None:
    if not mask_paths:
        raise DataError(f"{image_path}: no instance masks found for this image ({image_stem(image_path)}_<k>.png)")
    if len(mask_paths) > MAX_MASKS_PER_IMAGE:
        raise DataError(
            f"{image_path}: {len(mask_paths)} instance masks, over the limit of {MAX_MASKS_PER_IMAGE} "
            "(image_io.MAX_MASKS_PER_IMAGE)"
        )


def read_raw_example(image_path: str, mask_paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) and masks (n, H, W) as stored, uint8, validated: the dataset builders' reader.

    Raises DataError for an image without masks, a mask whose size differs from its
    image's, an unreadable file, a "mask" that is really a photo, or masks that together
    exceed MAX_MASK_PIXELS.
    """
    _check_mask_count(image_path, mask_paths)
    photo = open_image(image_path, "RGB")
    if len(mask_paths) * photo.width * photo.height > MAX_MASK_PIXELS:
        raise DataError(
            f"{image_path}: {len(mask_paths)} masks of {photo.width}x{photo.height} pixels are over the limit of "
            f"{MAX_MASK_PIXELS} mask pixels (image_io.MAX_MASK_PIXELS); shrink them first"
        )
    masks = [read_mask(path, photo.size, image_path) for path in mask_paths]
    return np.asarray(photo), np.stack(masks)


def read_mask(path: str, size_wh: tuple[int, int] | None = None, image_path: str = "") -> np.ndarray:
    """One mask file as (H, W) uint8, 255 = instance (mask_values), checked to be a mask and, with
    ``size_wh``, to be the size of its image ``image_path``."""
    img = open_image(path, None)
    if size_wh is not None and img.size != tuple(size_wh):
        raise DataError(
            f"{path}: mask is {img.width}x{img.height} (WxH) but its image {image_path} is {size_wh[0]}x{size_wh[1]}"
        )
    values = mask_array(img)
    check_is_mask(path, np.asarray(img.convert("RGB")) if mask_values(img) is None else np.stack([values] * 3, -1))
    return values


def mask_array(img: Image.Image) -> np.ndarray:
    """(H, W) uint8 of a mask image or painted layer, 255 = instance: mask_values, else its grey level."""
    values = mask_values(img)
    return np.asarray(img.convert("L")) if values is None else values


def mask_values(img: Image.Image) -> np.ndarray | None:
    """A mask's alpha channel, (H, W) uint8, where it has one that is not fully opaque (a layer
    painted on transparency: its colour says nothing); None where its grey level is the mask."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode not in ("LA", "PA", "RGBA", "La", "RGBa"):
        return None
    alpha = np.asarray(img.getchannel("A"))
    return alpha.copy() if alpha.min() < 255 else None


def check_is_mask(path: str, rgb: np.ndarray) -> None:
    """Masks are grey and mostly black or white; a colourful or mid-grey picture is not a mask."""
    channels = rgb.astype(np.int16)
    colourful = np.mean(np.abs(channels[..., 0] - channels[..., 1]) + np.abs(channels[..., 1] - channels[..., 2]) > 30)
    midtones = np.mean((channels[..., 0] > 40) & (channels[..., 0] < 215))
    if colourful > 0.05 or midtones > 0.25:
        raise DataError(
            f"{path}: does not look like an instance mask ({colourful:.0%} coloured, {midtones:.0%} mid-grey pixels); "
            "masks are black (background) and white (instance)"
        )


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[-1, 1] -> uint8 as the reference's tensor2im: (x + 1) / 2 * 255, truncated."""
    return np.clip((np.asarray(x, np.float32) + 1.0) / 2.0 * 255.0, 0, 255).astype(np.uint8)
