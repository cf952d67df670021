"""A trained instance masker as a function: photos in, instance masks out.

``MaskPredictor`` is what translation, the demo and export use; ``load_masker`` reads a masker
workdir (experiments/train_masker.py) through checkpoint.py's readers, checking the stored
spec and the parameters' shapes. Kept apart from the training loop (masker_train.py), so
that predicting needs neither the training data nor TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from instagan_jax import checkpoint, checks
from instagan_jax import masker as masker_lib
from instagan_jax.xla_options import jit_at_first_call

ITEMS = ("masker", "trainer", "masker_spec", "config")  # what a masker checkpoint holds


def init_params(spec: masker_lib.MaskerSpec, key, height: int, width: int):
    net = spec.network()
    return net.init(key, jnp.zeros((1, height, width, 3)))["params"]


def load_masker(workdir: str, step: int | None = None) -> tuple[masker_lib.MaskerSpec, dict]:
    """(spec, params) of a masker workdir's newest (or given) checkpoint; CheckpointError if damaged."""
    with checkpoint.opened(workdir, step, ITEMS, "(train a masker first)") as (mngr, step):
        with checkpoint.reading(workdir, step, "masker_spec"):
            spec = masker_lib.MaskerSpec.from_dict(checkpoint.restore_json(mngr, workdir, step, "masker_spec"))
        expected = jax.eval_shape(functools.partial(init_params, spec, jax.random.PRNGKey(0), 32, 32))
        params = checkpoint.restore_arrays(mngr, workdir, step, "masker", expected)
    return spec, params


def predict_masks(spec: masker_lib.MaskerSpec, params: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    outputs = spec.network().apply({"params": params}, images)
    return masker_lib.group(outputs, spec), outputs["foreground"] > 0


def predict_smaller(spec: masker_lib.MaskerSpec, size: tuple[int, int], params, images, foreground) -> jax.Array:
    """Masks grouped on the images resized to ``size``, within their full-size foreground."""
    smaller = jax.image.resize(images, (images.shape[0], *size, images.shape[-1]), "linear")
    return masker_lib.upsampled(predict_masks(spec, params, smaller)[0], foreground)


def predict_at_scale(spec: masker_lib.MaskerSpec, scale: float, params, images) -> tuple[jax.Array, jax.Array]:
    """(masks, full-size foreground) of photos whose objects are ``scale`` times (a number) the
    masker's: grouped on the photos as they are (1), or resized by 1/scale."""
    masks, foreground = predict_masks(spec, params, images)
    if scale != 1:
        masks = predict_smaller(spec, scaled_size(*images.shape[1:3], scale), params, images, foreground)
    return masks, foreground


_compiled_prediction = jit_at_first_call(predict_masks, static_argnums=0)
_compiled_at_scale = jit_at_first_call(predict_at_scale, static_argnums=(0, 1))
_compiled_smaller_prediction = jit_at_first_call(predict_smaller, static_argnums=(0, 1))


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(H, W) divided by ``scale``, each the nearest multiple of checks.SIZE_MULTIPLE (at least twice it)."""
    step = checks.SIZE_MULTIPLE
    return tuple(max(2 * step, step * round(side / scale / step)) for side in (height, width))


@dataclasses.dataclass(frozen=True)
class MaskPredictor:
    """A trained masker as a function: (B, H, W, 3) images in [-1, 1] -> (B, H, W, ins_max) masks,
    largest first, as InstaGAN reads them (``Translator(..., masker=MaskPredictor.from_workdir(DIR))``).

    ``scale``: how many times larger a photo's objects are than those the masker learnt from;
    the masker then groups instances on the photo resized by 1/scale, and keeps the outlines
    of its full-size foreground. "auto" (default) reads it off each photo's foreground
    (masker.auto_scale); 1 masks every photo as it is.
    """

    spec: masker_lib.MaskerSpec
    params: dict
    scale: float | str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "scale", masker_lib.parse_scale(self.scale))

    @classmethod
    def from_workdir(cls, workdir: str, step: int | None = None, scale: float | str = "auto") -> MaskPredictor:
        return cls(*load_masker(workdir, step), scale=scale)

    def __call__(self, images) -> np.ndarray:
        return self.predict(images)[0]

    def predict(self, images) -> tuple[np.ndarray, np.ndarray]:
        """(masks, (B, H, W) foreground map): the masks and the network's foreground before grouping."""
        images = jnp.asarray(images, jnp.float32)
        checks.check_image_size(*images.shape[1:3])
        if self.scale != "auto":  # one scale for the whole batch: one call
            masks, foreground = _compiled_at_scale(self.spec, self.scale, self.params, images)
            return np.asarray(masks), np.asarray(foreground)
        masks, foreground = _compiled_prediction(self.spec, self.params, images)
        masks, foreground = np.array(masks), np.asarray(foreground)
        for i in range(len(images)):  # auto: each photo at its own scale
            scale = masker_lib.auto_scale(foreground[i], self.spec)
            if scale != 1:
                size = scaled_size(*images.shape[1:3], scale)
                masks[i] = _compiled_smaller_prediction(
                    self.spec, size, self.params, images[i : i + 1], foreground[i : i + 1]
                )[0]
        return masks, foreground
