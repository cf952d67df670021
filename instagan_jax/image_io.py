"""Reading images and instance masks stored in the authors' folder layout.

    dataroot/{phase}A/0001.png   dataroot/{phase}A_seg/0001_0.png, 0001_1.png, ...

Images are resized with PIL's bicubic filter and scaled to [-1, 1] exactly as the
reference's torchvision transforms do, so translations match the authors' ``test.py``
to the grey level. Masks may be saved as L or RGB and are read as grayscale.

Dataset folders come from elsewhere, so every file is checked before it is decoded, and
every problem raises ``DataError`` naming the file: a link that leads outside its folder, a
FIFO or device (which would block a read forever), content that is not one of
``IMAGE_FORMATS`` whatever its name (PIL's other plugins, e.g. EPS through Ghostscript, are
never reached), more than ``MAX_IMAGE_PIXELS`` pixels (a decompression bomb), 16-bit or
float pixels, truncated data, more than ``MAX_MASKS_PER_IMAGE`` masks for one image.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "PPM", "TIFF")  # what the extensions name; content decides
# A 50-megapixel photo decodes to 150 MB of RGB; raise this (module attribute) for larger ones.
MAX_IMAGE_PIXELS = 50_000_000
# COCO's most crowded image has 93 instances; a folder of thousands of masks is a mistake or an attack.
MAX_MASKS_PER_IMAGE = 256
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
    """Sorted image paths of a folder; an empty folder is an error."""
    paths = sorted(
        os.path.join(image_dir, name) for name in os.listdir(image_dir) if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not paths:
        raise DataError(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return paths


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


def open_image(path: str, mode: str | None) -> Image.Image:
    """A checked, fully decoded image converted to ``mode`` ("RGB" or "L"; None keeps the stored
    mode, e.g. a palette image's indices); DataError otherwise."""
    check_regular_file_inside_folder(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=IMAGE_FORMATS) as img:
                pixels = img.width * img.height
                if pixels > MAX_IMAGE_PIXELS:
                    raise DataError(
                        f"{path}: {img.width}x{img.height} pixels is over the limit of {MAX_IMAGE_PIXELS} "
                        "(image_io.MAX_IMAGE_PIXELS; a decompression bomb or a photo to shrink first)"
                    )
                if img.mode not in _MODES:
                    raise DataError(f"{path}: pixel mode {img.mode} (16-bit or float) is not supported; save as 8-bit")
                img.load()
                return img.convert(mode) if mode else img.copy()
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: over the pixel limit ({e})") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: not a {'/'.join(IMAGE_FORMATS)} image, whatever its name") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable or truncated image ({e})") from None


def _to_unit_range(img: Image.Image, size_hw: tuple[int, int] | None) -> np.ndarray:
    if size_hw is not None and img.size != (size_hw[1], size_hw[0]):
        img = img.resize((size_hw[1], size_hw[0]), Image.BICUBIC)
    # torchvision's ToTensor then Normalize(0.5, 0.5), in float32 and in that order
    return (np.asarray(img, np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)


def read_image(path: str, size_hw: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) float32 in [-1, 1], bicubic-resized to size_hw (height, width) if given."""
    return _to_unit_range(open_image(path, "RGB"), size_hw)


def read_example(image_path: str, mask_paths: Sequence[str], size_hw: tuple[int, int] | None = None):
    """An image and its masks, resized alike: ((H, W, 3), (H, W, n)) float32 in [-1, 1].

    Validated as read_raw_example does.
    """
    image, masks = read_raw_example(image_path, mask_paths)
    masks = [_to_unit_range(Image.fromarray(m), size_hw) for m in masks]
    return _to_unit_range(Image.fromarray(image), size_hw), np.stack(masks, axis=-1)


def read_raw_example(image_path: str, mask_paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) and masks (n, H, W) as stored, uint8, validated: the dataset builders' reader.

    Raises DataError for an image without masks, a mask whose size differs from its
    image's, an unreadable file, or a "mask" that is really a photo.
    """
    if not mask_paths:
        raise DataError(f"{image_path}: no instance masks found for this image ({image_stem(image_path)}_<k>.png)")
    if len(mask_paths) > MAX_MASKS_PER_IMAGE:
        raise DataError(
            f"{image_path}: {len(mask_paths)} instance masks, over the limit of {MAX_MASKS_PER_IMAGE} "
            "(image_io.MAX_MASKS_PER_IMAGE)"
        )
    image = np.asarray(open_image(image_path, "RGB"))
    masks = []
    for path in mask_paths:
        rgb = np.asarray(open_image(path, "RGB"))
        if rgb.shape != image.shape:
            raise DataError(
                f"{path}: mask is {rgb.shape[1]}x{rgb.shape[0]} (WxH) but its image {image_path} "
                f"is {image.shape[1]}x{image.shape[0]}"
            )
        check_is_mask(path, rgb)
        masks.append(np.asarray(open_image(path, "L")))
    return image, np.stack(masks)


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
