"""Translating images with trained (or converted) generators, for scripts and notebooks.

translator = Translator.from_workdir("runs/shp2gir")
out = translator.translate(image, masks, direction="AtoB")   # arrays in [-1, 1]
out["image"], out["masks"], out["merged"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np

from instagan_jax import checkpoint, checks, domains, sequential, training_config
from instagan_jax import masks as masks_lib
from instagan_jax.models import ModelSpec
from instagan_jax.xla_options import jit_at_first_call


def translate_function(
    spec: ModelSpec, variables: dict, images: jax.Array, masks: jax.Array, ins_per: int, unroll: bool = False
):
    """Batched translation: images (B, H, W, 3), masks (B, H, W, ins_max) sorted and padded (traceable;
    ``unroll``: sequential.scan_chunks's)."""
    generator = spec.generator()

    def generate(x):
        return generator.apply(variables, x)

    if not spec.uses_masks:
        return generate(images), masks
    return sequential.translate(generate, images, masks, ins_per, unroll)


translate_arrays = jit_at_first_call(translate_function, static_argnames=("spec", "ins_per"))


def prepare_masks(masks: np.ndarray, ins_max: int) -> np.ndarray:
    """(H, W, n) masks in [-1, 1] -> (H, W, ins_max): largest first, padded, extras dropped."""
    return masks_lib.order_and_pad(masks, ins_max)


@dataclasses.dataclass
class Translator:
    """Both generators of a checkpoint and the sequential settings of the test loop."""

    spec: ModelSpec
    generators: dict
    ins_per: int = 2
    ins_max: int = 20
    masker: Callable[[np.ndarray], np.ndarray] | None = None  # images -> masks, for photos without any
    binary_masks: bool = False  # threshold input masks at half, as the run's data were (config.binary_masks)
    memory_limit_gb: float = 0  # checks.memory_budget's limit for check_memory; 0: this machine's memory
    compute_dtype: str | None = None  # layers.COMPUTE_DTYPES; None: the checkpoint's spec's (float32 unless trained so)

    def __post_init__(self):
        checks.check_chunking(self.ins_max, self.ins_per)
        if self.compute_dtype is not None:
            self.spec = dataclasses.replace(self.spec, compute_dtype=self.compute_dtype)

    def check_memory(self, size_hw: tuple[int, int], batch: int = 1, what: str = "the photo") -> None:
        """Refuses, before anything is compiled or allocated, a batch of photos of ``size_hw`` whose
        arrays alone (inputs, outputs and the full-size feature maps of the image and of a chunk's
        masks: a lower bound) need more than the memory budget."""
        per_pixel = 2 * (3 + self.ins_max) + 2 * self.spec.ngf  # floats: float32 inputs, outputs (lower bound)
        if self.spec.uses_masks:
            per_pixel += self.ins_per * (self.spec.ngf_mask or self.spec.ngf)
        needed = batch * size_hw[0] * size_hw[1] * 4 * per_pixel
        checks.check_memory(needed, f"{what}: translating {size_hw[1]}x{size_hw[0]} pixels", self.memory_limit_gb,
                            raise_with="--memory_limit_gb")  # fmt: skip

    @classmethod
    def from_workdir(cls, workdir: str, step: int | None = None, averaged: bool = True, **kwargs) -> Translator:
        """The generators of a checkpoint: their moving averages if the run keeps them and ``averaged``;
        its masks thresholded if the run trained on thresholded masks (converted checkpoints: soft)."""
        spec, generators = checkpoint.load_networks(workdir, step, names=("G_A", "G_B"), averaged=averaged)
        config = checkpoint.load_config(workdir, step) if checkpoint.has_config(workdir, step) else {}
        kwargs.setdefault("binary_masks", training_config.binary_masks(config))
        return cls(spec, generators, **kwargs)

    def translate_batch(self, images, masks, direction: str = "AtoB") -> tuple[np.ndarray, np.ndarray]:
        """images (B, H, W, 3) and prepared masks (B, H, W, ins_max) -> translated, as numpy."""
        images, masks = np.asarray(images, np.float32), np.asarray(masks, np.float32)
        checks.check_image_size(*images.shape[1:3])
        self.check_memory(images.shape[1:3], len(images))
        if self.binary_masks:
            masks = np.where(masks > 0, 1.0, -1.0).astype(np.float32)
        variables = self.generators[domains.generator(direction)]
        out_images, out_masks = translate_arrays(self.spec, variables, images, masks, self.ins_per)
        return np.asarray(out_images), np.asarray(out_masks)

    def translate(self, image, masks=None, direction: str = "AtoB") -> dict[str, np.ndarray]:
        """One image (H, W, 3) in [-1, 1] and its masks, (H, W, n) or a list of (H, W); without
        masks, the translator's masker predicts them.

        Returns {"image": (H, W, 3), "masks": (H, W, ins_max), "merged": (H, W), "input_masks":
        the (H, W, ins_max) masks the translation used}.
        """
        if masks is None:
            if self.masker is None:
                raise ValueError("no masks given and no masker: pass masks, or build the Translator with "
                                 "masker=MaskPredictor.from_workdir(DIR) (instagan_jax.mask_prediction)")  # fmt: skip
            masks = self.masker(np.asarray(image, np.float32)[None])[0]
        masks = np.stack(masks, -1) if isinstance(masks, (list, tuple)) else np.asarray(masks)
        prepared = prepare_masks(masks, self.ins_max)
        out_image, out_masks = self.translate_batch(image[None], prepared[None], direction)
        merged = np.asarray(masks_lib.merge(out_masks))[0, ..., 0]
        return {"image": out_image[0], "masks": out_masks[0], "merged": merged, "input_masks": prepared}
