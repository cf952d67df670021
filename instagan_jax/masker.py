"""A small instance masker: the instance masks of a photo, sorted and padded as InstaGAN reads them.

Panoptic-DeepLab's class-agnostic instance branch (Cheng et al., CVPR 2020) at a laptop's
scale: an encoder-decoder made of the generator's layers predicts, per pixel, a foreground
logit, a centre heat-map (a Gaussian at each instance's centre of mass) and the offset from
the pixel to its instance's centre. Instances are the ins_max highest local maxima of the
heat-map above a threshold; every foreground pixel joins the centre nearest to where its
offset points. So touching and overlapping objects come out as separate masks, which
connected components of a foreground map (``connected_components``, the baseline) cannot.
Everything runs in jit with static shapes.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import ndimage

from instagan_jax import checks, layers

MAX_OBJECT_SIZE = 4096.0  # pixels
SCALE_TOLERANCE = 1.25  # scale "auto": objects within this factor of the training size are masked as they are
CENTRE_WEIGHT = 100.0  # the heat-map's squared error is small per pixel: Panoptic-DeepLab weighs it up
OFFSET_WEIGHT = 0.1  # offsets are in pixels


@dataclasses.dataclass(frozen=True)
class MaskerSpec:
    """Everything needed to rebuild a masker and group its outputs; stored beside its checkpoints."""

    width: int = 16
    n_blocks: int = 3
    ins_max: int = 8  # instance slots of the output (largest first)
    sigma: float = 2.0  # pixels: the spread of the centre Gaussians
    centre_threshold: float = 0.2  # heat-map peaks below this are not instances
    peak_window: int = 5  # a peak is the maximum of its peak_window x peak_window neighbourhood
    compute_dtype: str = "float32"  # layers.COMPUTE_DTYPES: how it runs (parameters stay float32)
    object_size: float = 0.0  # object_size() of its training masks (pixels); 0: unknown (scale "auto" is then 1)

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "width": (1, 256), "n_blocks": (1, 32), "ins_max": (1, 256), "peak_window": (1, 31),
    }  # fmt: skip

    def __post_init__(self):
        checks.check_integer_ranges(self, self.LIMITS, prefix="masker ")
        if self.peak_window % 2 == 0:
            raise ValueError(f"masker peak_window must be odd, got {self.peak_window}")
        if self.compute_dtype not in layers.COMPUTE_DTYPES:
            raise ValueError(f"masker compute_dtype must be one of {layers.COMPUTE_DTYPES}, got {self.compute_dtype!r}")
        if not (0 < self.sigma <= 64 and 0 <= self.centre_threshold < 1):
            raise ValueError(f"masker sigma {self.sigma!r} or centre_threshold {self.centre_threshold!r} out of range")
        if not (isinstance(self.object_size, (int, float)) and 0 <= self.object_size <= MAX_OBJECT_SIZE):
            raise ValueError(f"masker object_size must be in [0, {MAX_OBJECT_SIZE}], got {self.object_size!r}")

    def network(self) -> Masker:
        return Masker(self.width, self.n_blocks, layers.module_dtype(self.compute_dtype))

    @classmethod
    def from_dict(cls, fields) -> MaskerSpec:
        if not isinstance(fields, dict) or set(fields) - {f.name for f in dataclasses.fields(cls)}:
            raise ValueError(f"not a masker spec: {str(fields)[:200]}")
        return cls(**fields)


class Masker(nn.Module):
    """(B, H, W, 3) images in [-1, 1] -> {"foreground": logits, "centre": heat-map, "offset": (dy, dx)}."""

    width: int
    n_blocks: int
    dtype: jnp.dtype | None = None  # compute dtype (MaskerSpec.compute_dtype; None: float32); outputs float32

    @nn.compact
    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        conv_in = layers.conv(self.width, 7, dtype=self.dtype, name="conv_in")
        x = nn.relu(layers.instance_norm(conv_in(layers.reflect_pad(images, 3))))
        skips = [x]
        for i in range(2):
            x = layers.conv(self.width * 2 ** (i + 1), 3, stride=2, padding=1, dtype=self.dtype, name=f"down_{i}")(x)
            x = nn.relu(layers.instance_norm(x))
            skips.append(x)
        for i in range(self.n_blocks):
            x = layers.ResnetBlock(self.dtype, name=f"block_{i}")(x)
        for i in range(2):  # back up, with the encoder's features of the same size
            x = layers.UpsampleConv(self.width * 2 ** (1 - i), self.dtype, name=f"up_{i}")(x)
            x = nn.relu(layers.instance_norm(x))
            x = jnp.concatenate([x, skips[1 - i]], axis=-1)
        out = layers.conv(4, 3, dtype=self.dtype, name="head")(layers.reflect_pad(x, 1))
        out = layers.network_output(out, self.dtype)
        return {"foreground": out[..., 0], "centre": out[..., 1], "offset": out[..., 2:]}


def _grid(h: int, w: int) -> jax.Array:
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    return jnp.stack([yy, xx], axis=-1)  # (H, W, 2)


def targets(masks: jax.Array, sigma: float) -> dict[str, jax.Array]:
    """What the masker should predict for (B, H, W, N) instance masks in [-1, 1]."""
    inside = (masks > 0).astype(jnp.float32)  # (B, H, W, N)
    area = inside.sum(axis=(1, 2))  # (B, N)
    grid = _grid(*masks.shape[1:3])
    centres = jnp.einsum("bhwn,hwc->bnc", inside, grid) / jnp.maximum(area, 1.0)[..., None]  # (B, N, 2)
    distance2 = jnp.sum(jnp.square(grid[None, :, :, None] - centres[:, None, None]), axis=-1)  # (B, H, W, N)
    heat = jnp.max(jnp.where(area[:, None, None] > 0, jnp.exp(-distance2 / (2 * sigma**2)), 0.0), axis=-1)
    owners = jnp.maximum(inside.sum(-1, keepdims=True), 1.0)  # overlapping masks: the mean of their centres
    offset = jnp.einsum("bhwn,bnc->bhwc", inside / owners, centres) - grid * (inside.sum(-1, keepdims=True) > 0)
    return {"foreground": (inside.sum(-1) > 0).astype(jnp.float32), "centre": heat, "offset": offset}


def loss(outputs: dict, target: dict) -> tuple[jax.Array, dict]:
    """Foreground cross-entropy + heat-map squared error + offset L1 on foreground pixels."""
    fg = target["foreground"]
    terms = {
        "foreground": optax.sigmoid_binary_cross_entropy(outputs["foreground"], fg).mean(),
        "centre": CENTRE_WEIGHT * jnp.square(outputs["centre"] - target["centre"]).mean(),
        "offset": OFFSET_WEIGHT
        * jnp.sum(jnp.abs(outputs["offset"] - target["offset"]).sum(-1) * fg)
        / jnp.maximum(fg.sum(), 1.0),
    }
    return sum(terms.values()), terms


def group(outputs: dict, spec: MaskerSpec) -> jax.Array:
    """Outputs -> (B, H, W, ins_max) masks in [-1, 1], largest first, empty slots all -1."""
    heat = outputs["centre"]
    b, h, w = heat.shape
    window = (1, spec.peak_window, spec.peak_window)
    local_max = jax.lax.reduce_window(heat, -jnp.inf, jax.lax.max, window, (1, 1, 1), "SAME")
    peaks = jnp.where((heat >= local_max) & (heat > spec.centre_threshold), heat, -jnp.inf).reshape(b, h * w)
    scores, index = jax.lax.top_k(peaks, spec.ins_max)  # (B, K)
    centres = _row_and_column(index, w)  # (B, K, 2)
    found = jnp.isfinite(scores)
    pointed = _grid(h, w)[None] + outputs["offset"]  # where each pixel says its centre is
    distance2 = jnp.sum(jnp.square(pointed[:, :, :, None] - centres[:, None, None]), axis=-1)  # (B, H, W, K)
    nearest = jnp.argmin(jnp.where(found[:, None, None], distance2, jnp.inf), axis=-1)
    inside = (
        (outputs["foreground"] > 0)[..., None] & (nearest[..., None] == jnp.arange(spec.ins_max)) & found[:, None, None]
    )
    return _by_decreasing_area(inside)


def _row_and_column(flat_index: jax.Array, width: int) -> jax.Array:
    """(row, column) of flat indices into rows of ``width``, as float32 (exact below 2^24 pixels).

    In floating point rather than with integer division and remainder: ONNX's TopK gives int64
    indices where JAX's are int32, and converters then mix the two in integer arithmetic."""
    index = flat_index.astype(jnp.float32)
    row = jnp.floor(index / width)
    row = row + (index - row * width >= width) - (index - row * width < 0)  # a quotient rounded across
    return jnp.stack([row, index - row * width], axis=-1)


def _by_decreasing_area(inside: jax.Array) -> jax.Array:
    """(B, H, W, K) boolean masks -> the same in [-1, 1], sorted by decreasing area (empty ones last)."""
    area = inside.sum(axis=(1, 2))  # (B, K)
    order = jnp.argsort(-area, axis=-1, stable=True)
    inside = jnp.take_along_axis(inside, order[:, None, None], axis=-1)
    return jnp.where(inside, 1.0, -1.0)


def upsampled(masks: jax.Array, foreground: jax.Array) -> jax.Array:
    """Masks grouped on a smaller copy of a photo, brought back to the photo's (B, H, W) foreground.

    The instances come from the smaller copy, where the objects have the size the masker
    learnt; their outlines from the foreground found at full size."""
    b, h, w = foreground.shape
    grown = jax.image.resize(masks, (b, h, w, masks.shape[-1]), "linear") > 0
    return _by_decreasing_area(grown & foreground[..., None])


def _regions(foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, areas) of a (H, W) foreground's connected regions; label k's area is areas[k - 1]."""
    labels, count = ndimage.label(np.asarray(foreground, bool))
    return labels, np.bincount(labels.ravel(), minlength=count + 1)[1:]


def connected_components(foreground: np.ndarray, ins_max: int) -> np.ndarray:
    """The baseline: (B, H, W) foreground -> (B, H, W, ins_max) masks, one per connected region."""
    out = -np.ones((*foreground.shape, ins_max), np.float32)
    for i, fg in enumerate(np.asarray(foreground, bool)):
        labels, areas = _regions(fg)
        for slot, region in enumerate(np.argsort(-areas, kind="stable")[:ins_max]):
            out[i, ..., slot] = np.where(labels == region + 1, 1.0, -1.0)
    return out


def object_size(foreground: np.ndarray) -> float:
    """How large the objects of (B, H, W) foreground maps are: the side (square root of the area,
    in pixels) of the connected region that the median foreground pixel lies in; 0 if none.

    Regions, not instances, so that it can be read off a photo before its instances are known;
    weighted by area, so that specks of noise do not count."""
    areas = np.concatenate([_regions(fg)[1] for fg in np.asarray(foreground, bool)] + [np.zeros(0, np.int64)])
    if not areas.sum():
        return 0.0
    areas = np.sort(areas)
    median = np.searchsorted(np.cumsum(areas), areas.sum() / 2)
    return float(np.sqrt(areas[median]))


def parse_scale(value) -> float | str:
    """A MaskPredictor scale from a flag or argument: "auto" or a positive number."""
    if value == "auto":
        return value
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise checks.InputError(f"masker scale must be 'auto' or a number, got {value!r}") from None
    if not 1 / 16 <= scale <= 64:
        raise checks.InputError(f"masker scale must be 'auto' or a number in [1/16, 64], got {value!r}")
    return scale


def auto_scale(foreground: np.ndarray, spec: MaskerSpec) -> float:
    """How many times larger than its training objects a photo's (H, W) foreground says its objects
    are: 1 when within SCALE_TOLERANCE either way, or when the spec or the photo cannot tell."""
    size = object_size(foreground[None])
    if not (spec.object_size and size):
        return 1.0
    ratio = size / spec.object_size
    return ratio if max(ratio, 1 / ratio) >= SCALE_TOLERANCE else 1.0
