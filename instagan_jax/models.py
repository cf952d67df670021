"""InstaGAN's set generator and set discriminator, and the CycleGAN baselines.

Inputs are NHWC, ``(B, H, W, 3 + N)``: an image and N mask slots, H and W multiples of 4.
Unlike the reference (whose batch > 1 mixes examples, its issue #21), the instance sum and
the "empty slot" test are per example, and no Python loop runs over slots: all slots go
through the shared mask encoder folded into the batch axis (exact, since instance norm is
per sample), the set feature is a validity-weighted sum, and an empty slot is passed
through unchanged.

One divergence from the reference, on purpose: when an example has no instance at all,
the reference forwards slot 0 anyway (an all -1 mask); here the set is empty and its
feature is zero. The reference's own loops never call a network on such an input except
when a whole image has no masks.

A second, numerical one: the reference calls its mask feature extractor once per non-empty
slot, and each call advances that extractor's spectral-norm power iteration, so slot k is
normalised with the sigma of iteration k + 1. Here one power iteration serves every slot
of a call. With a converged ``u`` (any trained checkpoint) the two agree to 1e-6; on a
fresh random ``u`` they differ by about 1e-3 of the logits.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from instagan_jax import checks, layers
from instagan_jax.masks import slot_validity

IMAGE_CHANNELS = 3


def _leaky_relu(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, negative_slope=0.2)


def _fold_slots(masks: jax.Array) -> jax.Array:
    """(B, H, W, N) -> (B * N, H, W, 1)."""
    b, h, w, n = masks.shape
    return masks.transpose(0, 3, 1, 2).reshape(b * n, h, w, 1)


def _unfold_slots(x: jax.Array, b: int) -> jax.Array:
    """(B * N, h, w, C) -> (B, N, h, w, C)."""
    return x.reshape(b, -1, *x.shape[1:])


def _set_feature(features: jax.Array, valid: jax.Array) -> jax.Array:
    """(B, N, h, w, C) per-slot features, (B, N) validity -> (B, h, w, C): the sum over filled slots."""
    return layers.sum_rows(features * valid[:, :, None, None, None].astype(features.dtype))


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: encoder then decoder, (B, H, W, 3) -> (B, H, W, 3)."""

    ngf: int = 64
    n_blocks: int = 9
    upsample: str = "transpose"
    dtype: jnp.dtype | None = None  # compute dtype (ModelSpec.compute_dtype); outputs are float32
    remat_blocks: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        encoder = layers.Encoder(self.ngf, self.n_blocks, self.dtype, self.remat_blocks, name="encoder")
        features = encoder(x)  # (b, h/4, w/4, 4ngf)
        decoder = layers.Decoder(self.ngf, IMAGE_CHANNELS, self.upsample, self.dtype, name="decoder")
        return layers.network_output(decoder(features), self.dtype)


class SetGenerator(nn.Module):
    """InstaGAN's ResnetSetGenerator: translates an image and each of its instance masks.

    image out = Decoder_img([f_img, s]), mask i out = Decoder_seg([f_i, f_img, s]) where
    f_i = Encoder_seg(mask_i) and s = sum of f_i over the example's non-empty slots.

    ``ngf_mask`` (0: ngf, the paper) is the mask encoder's width. The mask path runs once per
    slot, so at the paper's width it is most of the generator's work (4 slots: 80% of the
    FLOPs); binary masks need fewer features than photos. Each decoder's width is its input
    channels / 4, as in the paper: 2 ngf and 3 ngf there; ``mask_decoder_width`` (0: that)
    sets the mask decoder's, which also runs once per slot (with a narrow encoder, 45% of
    the default config's step).
    """

    ngf: int = 64
    n_blocks: int = 9
    upsample: str = "transpose"
    ngf_mask: int = 0
    mask_decoder_width: int = 0
    dtype: jnp.dtype | None = None  # compute dtype (ModelSpec.compute_dtype); outputs are float32
    remat_blocks: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        image, masks = x[..., :IMAGE_CHANNELS], x[..., IMAGE_CHANNELS:]
        b = x.shape[0]
        ngf_mask = self.ngf_mask or self.ngf
        valid = slot_validity(masks)  # (b, n)
        encoder = functools.partial(layers.Encoder, n_blocks=self.n_blocks, dtype=self.dtype,
                                    remat_blocks=self.remat_blocks)  # fmt: skip
        f_img = encoder(self.ngf, name="encoder_img")(image)  # (b, h/4, w/4, 4ngf)
        f_seg = encoder(ngf_mask, name="encoder_seg")(_fold_slots(masks))
        f_seg = _unfold_slots(f_seg, b)  # (b, n, h/4, w/4, 4ngf_mask)
        f_set = _set_feature(f_seg, valid)

        context = jnp.concatenate([f_img, f_set], axis=-1)  # (b, h/4, w/4, 4ngf + 4ngf_mask)
        decoder_img = layers.Decoder(self.ngf + ngf_mask, IMAGE_CHANNELS, self.upsample, self.dtype, name="decoder_img")
        image_out = decoder_img(context)

        # mask i's decoder input is [f_i, context]; its first layer convolves the context
        # once per example, not once per slot
        width = self.mask_decoder_width or self.ngf + 2 * ngf_mask
        decoder_seg = layers.Decoder(width, 1, self.upsample, self.dtype, name="decoder_seg")
        masks_out = decoder_seg(f_seg.reshape(-1, *f_seg.shape[2:]), shared=context)
        masks_out = masks_out.reshape(b, -1, *masks_out.shape[1:3]).transpose(0, 2, 3, 1)  # (b, h, w, n)
        masks_out = jnp.where(valid[:, None, None, :], masks_out.astype(masks.dtype), masks)
        return layers.network_output(jnp.concatenate([image_out, masks_out], axis=-1), self.dtype)


class PatchFeatures(nn.Module):
    """The strided half of PatchGAN: n_layers spectral convs 4x4/2, IN after the first."""

    ndf: int = 64
    n_layers: int = 3
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool) -> jax.Array:
        x = _leaky_relu(layers.SpectralConv(self.ndf, dtype=self.dtype, name="conv_0")(x, update_stats))
        for n in range(1, self.n_layers):
            x = layers.SpectralConv(self.ndf * min(2**n, 8), dtype=self.dtype, name=f"conv_{n}")(x, update_stats)
            x = _leaky_relu(layers.instance_norm(x))
        return x


class PatchClassifier(nn.Module):
    """The stride-1 half of PatchGAN: conv4x4 (IN, LReLU) then conv4x4 to one logit per patch."""

    features: int
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool) -> jax.Array:
        if min(x.shape[1:3]) < 3:  # two 4x4 convs with padding 1 take 2 pixels off each side
            raise ValueError(
                f"input too small for the PatchGAN discriminator: features of {x.shape[1:3]} "
                "(images need at least 24 pixels per side for 3 layers)"
            )
        x = layers.SpectralConv(self.features, stride=1, dtype=self.dtype, name="conv_0")(x, update_stats)
        x = _leaky_relu(layers.instance_norm(x))
        logits = layers.SpectralConv(1, stride=1, dtype=self.dtype, name="conv_1")(x, update_stats)
        return layers.network_output(logits, self.dtype)


class NLayerDiscriminator(nn.Module):
    """CycleGAN's PatchGAN discriminator with spectral norm, (B, H, W, 3) -> (B, h, w, 1)."""

    ndf: int = 64
    n_layers: int = 3
    dtype: jnp.dtype | None = None  # compute dtype; the logits are float32

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool = False) -> jax.Array:
        x = PatchFeatures(self.ndf, self.n_layers, self.dtype, name="features")(x, update_stats)
        classifier = PatchClassifier(self.ndf * min(2**self.n_layers, 8), self.dtype, name="classifier")
        return classifier(x, update_stats)


class SetDiscriminator(nn.Module):
    """InstaGAN's NLayerSetDiscriminator: Classifier([Features_img(x), sum_i Features_seg(a_i)])."""

    ndf: int = 64
    n_layers: int = 3
    dtype: jnp.dtype | None = None  # compute dtype; the logits are float32

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool = False) -> jax.Array:
        image, masks = x[..., :IMAGE_CHANNELS], x[..., IMAGE_CHANNELS:]
        b = x.shape[0]
        valid = slot_validity(masks)  # (b, n)
        features = functools.partial(PatchFeatures, self.ndf, self.n_layers, self.dtype)
        g_img = features(name="features_img")(image, update_stats)
        g_seg = features(name="features_seg")(_fold_slots(masks), update_stats)
        g_seg = _unfold_slots(g_seg, b)  # (b, n, h', w', c)
        g_set = _set_feature(g_seg, valid)
        # The reference builds its classifier for a width of 2 ndf, hence 2 ndf * 8 features.
        classifier = PatchClassifier(2 * self.ndf * min(2**self.n_layers, 8), self.dtype, name="classifier")
        return classifier(jnp.concatenate([g_img, g_set], -1), update_stats)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the four networks; stored beside every checkpoint."""

    model: str = "insta_gan"  # insta_gan | cycle_gan (the paper's baseline, no masks)
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_layers_d: int = 3
    upsample: str = "transpose"  # the generators' upsampling (layers.UPSAMPLING); the authors' is "transpose"
    ngf_mask: int = 0  # the set generator's mask-encoder width; 0: ngf (the paper); ignored by cycle_gan
    mask_decoder_width: int = 0  # its mask decoder's; 0: its input channels / 4 (the paper's 3 ngf)
    # How the networks run, not what they are (checkpoints of either setting are the same):
    compute_dtype: str = "float32"  # layers.COMPUTE_DTYPES: bfloat16 computes there, parameters stay float32
    remat: str = "none"  # layers.REMAT: what the train step's backward pass recomputes

    # (lowest, highest) of each size; the paper's networks are ngf = ndf = 64, 9 blocks, 3 layers.
    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "ngf": (1, 256), "ngf_mask": (0, 256), "mask_decoder_width": (0, 768), "ndf": (1, 256), "n_blocks": (1, 64),
        "n_layers_d": (1, 6),
    }  # fmt: skip

    def __post_init__(self):
        if self.model not in ("insta_gan", "cycle_gan"):
            raise ValueError(f"model must be 'insta_gan' or 'cycle_gan', got {self.model!r}")
        if not isinstance(self.upsample, str) or self.upsample not in layers.UPSAMPLING:
            raise ValueError(f"upsample must be one of {sorted(layers.UPSAMPLING)}, got {self.upsample!r}")
        if self.compute_dtype not in layers.COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {layers.COMPUTE_DTYPES}, got {self.compute_dtype!r}")
        if self.remat not in layers.REMAT:
            raise ValueError(f"remat must be one of {layers.REMAT}, got {self.remat!r}")
        checks.check_integer_ranges(self, self.LIMITS)

    @classmethod
    def from_dict(cls, fields) -> ModelSpec:
        """The spec stored as JSON beside a checkpoint, checked (a ValueError names what is wrong)."""
        if not isinstance(fields, dict):
            raise ValueError(f"a model spec is a JSON object, got a {type(fields).__name__}")
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown model-spec keys {unknown[:5]}")
        return cls(**fields)

    @property
    def uses_masks(self) -> bool:
        return self.model == "insta_gan"

    def generator(self) -> nn.Module:
        run = {"dtype": self.dtype, "remat_blocks": self.remat == "block"}
        if self.uses_masks:
            return SetGenerator(
                ngf=self.ngf,
                n_blocks=self.n_blocks,
                upsample=self.upsample,
                ngf_mask=self.ngf_mask,
                mask_decoder_width=self.mask_decoder_width,
                **run,
            )
        return ResnetGenerator(ngf=self.ngf, n_blocks=self.n_blocks, upsample=self.upsample, **run)

    def discriminator(self) -> nn.Module:
        cls = SetDiscriminator if self.uses_masks else NLayerDiscriminator
        return cls(ndf=self.ndf, n_layers=self.n_layers_d, dtype=self.dtype)

    @property
    def dtype(self) -> jnp.dtype | None:
        """The modules' compute dtype: None (no casts) for float32."""
        return layers.module_dtype(self.compute_dtype)

    def call(self, network: nn.Module, **options):
        """``network.apply`` with ``options`` (update_stats, mutable) bound; with remat "network" its
        activations are recomputed in the backward pass (``jax.checkpoint``) instead of kept."""
        apply = functools.partial(network.apply, **options)
        return jax.checkpoint(apply) if self.remat == "network" else apply


@functools.cache
def abstract_networks(spec: ModelSpec) -> dict:
    """Shapes and dtypes of ``init_networks``' variables, computed without allocating them.

    Tracing a network's init takes about a second on a CPU and every checkpoint read checks its
    shapes against these: each kind of network is traced once (G_B is G_A's twin), once per spec.
    """
    dummy = jax.ShapeDtypeStruct((1, 32, 32, IMAGE_CHANNELS + (1 if spec.uses_masks else 0)), jnp.float32)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    generator = jax.eval_shape(spec.generator().init, key, dummy)
    discriminator = jax.eval_shape(spec.discriminator().init, key, dummy)
    return {"G_A": generator, "G_B": generator, "D_A": discriminator, "D_B": discriminator}


def init_networks(spec: ModelSpec, key: jax.Array, height: int, width: int, n_slots: int) -> dict:
    """Fresh variables of G_A, G_B, D_A, D_B for inputs of the given size.

    Returns {name: {"params": ..., ["spectral": ...]}}; the shapes do not depend on
    height, width or n_slots, which only size the dummy input.
    """
    channels = IMAGE_CHANNELS + (n_slots if spec.uses_masks else 0)
    dummy = jnp.zeros((1, height, width, channels), jnp.float32)
    keys = jax.random.split(key, 4)
    generator, discriminator = spec.generator(), spec.discriminator()
    return {
        "G_A": generator.init(keys[0], dummy),
        "G_B": generator.init(keys[1], dummy),
        "D_A": discriminator.init(keys[2], dummy),
        "D_B": discriminator.init(keys[3], dummy),
    }
