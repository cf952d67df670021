"""Convert the authors' PyTorch InstaGAN / CycleGAN state dicts into Flax variables.

The architecture is inferred from the tensors (ngf, ndf, residual block count, PatchGAN
depth), the Flax tree is built for that architecture, and every Flax leaf is filled from
its torch key through an explicit name map, so a missing key, a stray key or a shape that
does not fit fails with the key named.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import jax
import numpy as np

from instagan_jax.models import ModelSpec, abstract_networks
from instagan_jax.torch_pickle import load_state_dict

# (torch module prefix, Flax module path, kind): kind is conv, conv_transpose or spectral.
_Entry = tuple[str, tuple[str, ...], str]


class NotInstaGANError(ValueError):
    """A state dict that does not hold the network it should."""


def _encoder_entries(prefix: str, path: tuple[str, ...], n_blocks: int) -> Iterator[_Entry]:
    # Sequential: pad, conv7 (1), IN, ReLU, conv (4), IN, ReLU, conv (7), IN, ReLU, blocks (10...)
    yield f"{prefix}.1", (*path, "conv_in"), "conv"
    yield f"{prefix}.4", (*path, "down_0"), "conv"
    yield f"{prefix}.7", (*path, "down_1"), "conv"
    for i in range(n_blocks):
        # ResnetBlock.conv_block: pad, conv (1), IN, ReLU, pad, conv (5), IN
        yield f"{prefix}.{10 + i}.conv_block.1", (*path, f"block_{i}", "conv_0"), "conv"
        yield f"{prefix}.{10 + i}.conv_block.5", (*path, f"block_{i}", "conv_1"), "conv"


def _decoder_entries(prefix: str, path: tuple[str, ...], start: int) -> Iterator[_Entry]:
    # convT (0), IN, ReLU, convT (3), IN, ReLU, pad, conv7 (7), tanh
    yield f"{prefix}.{start}", (*path, "up_0"), "conv_transpose"
    yield f"{prefix}.{start + 3}", (*path, "up_1"), "conv_transpose"
    yield f"{prefix}.{start + 7}", (*path, "conv_out"), "conv"


def _patch_entries(prefix: str, path: tuple[str, ...], n_layers: int) -> Iterator[_Entry]:
    """PatchFeatures then PatchClassifier laid out in one torch Sequential from index 0."""
    yield f"{prefix}.0", (*path, "conv_0"), "spectral"  # conv, LReLU
    for n in range(1, n_layers):  # conv, IN, LReLU
        yield f"{prefix}.{2 + 3 * (n - 1)}", (*path, f"conv_{n}"), "spectral"


def generator_entries(spec: ModelSpec) -> list[_Entry]:
    if spec.uses_masks:
        return [
            *_encoder_entries("encoder_img", ("encoder_img",), spec.n_blocks),
            *_encoder_entries("encoder_seg", ("encoder_seg",), spec.n_blocks),
            *_decoder_entries("decoder_img", ("decoder_img",), 0),
            *_decoder_entries("decoder_seg", ("decoder_seg",), 0),
        ]
    return [
        *_encoder_entries("model", ("encoder",), spec.n_blocks),
        *_decoder_entries("model", ("decoder",), 10 + spec.n_blocks),
    ]


def discriminator_entries(spec: ModelSpec) -> list[_Entry]:
    if spec.uses_masks:
        return [
            *_patch_entries("feature_img", ("features_img",), spec.n_layers_d),
            *_patch_entries("feature_seg", ("features_seg",), spec.n_layers_d),
            ("classifier.0", ("classifier", "conv_0"), "spectral"),
            ("classifier.3", ("classifier", "conv_1"), "spectral"),
        ]
    last = 2 + 3 * (spec.n_layers_d - 1)
    return [
        *_patch_entries("model", ("features",), spec.n_layers_d),
        (f"model.{last}", ("classifier", "conv_0"), "spectral"),
        (f"model.{last + 3}", ("classifier", "conv_1"), "spectral"),
    ]


def infer_generator_spec(state: dict[str, np.ndarray], source: str) -> dict:
    """{model, ngf, n_blocks} of a generator state dict."""
    if "encoder_img.1.weight" in state:
        model, prefix = "insta_gan", "encoder_img"
    elif "model.1.weight" in state:
        model, prefix = "cycle_gan", "model"
    else:
        raise NotInstaGANError(
            f"{source}: not an InstaGAN/CycleGAN generator (no 'encoder_img.1.weight' or 'model.1.weight'; "
            f"first keys: {sorted(state)[:5]})"
        )
    blocks = {int(m.group(1)) for k in state if (m := re.fullmatch(rf"{prefix}\.(\d+)\.conv_block\.1\.weight", k))}
    return {"model": model, "ngf": int(state[f"{prefix}.1.weight"].shape[0]), "n_blocks": len(blocks)}


def infer_discriminator_spec(state: dict[str, np.ndarray], source: str) -> dict:
    """{ndf, n_layers_d} of a discriminator state dict."""
    prefix = "feature_img" if "feature_img.0.module.weight_bar" in state else "model"
    first = f"{prefix}.0.module.weight_bar"
    if first not in state:
        raise NotInstaGANError(f"{source}: not an InstaGAN/CycleGAN discriminator (no '{first}')")
    convs = [k for k in state if re.fullmatch(rf"{prefix}\.\d+\.module\.weight_bar", k)]
    # the set discriminator keeps its two classifier convs apart; the plain one has them inline
    n_layers = len(convs) if prefix == "feature_img" else len(convs) - 2
    return {"ndf": int(state[first].shape[0]), "n_layers_d": n_layers}


def _torch_leaves(prefix: str, kind: str) -> dict[tuple[str, str], str]:
    """Flax (collection, leaf name) -> torch key, for one layer."""
    if kind == "spectral":
        return {
            ("params", "kernel"): f"{prefix}.module.weight_bar",
            ("params", "bias"): f"{prefix}.module.bias",
            ("spectral", "u"): f"{prefix}.module.weight_u",
        }
    return {("params", "kernel"): f"{prefix}.weight", ("params", "bias"): f"{prefix}.bias"}


def _to_flax(name: str, value: np.ndarray) -> np.ndarray:
    # conv (out, in, kh, kw) and conv-transpose (in, out, kh, kw) both become (kh, kw, ., .)
    return value.transpose(2, 3, 1, 0) if name == "kernel" else value


def fill_variables(template: dict, entries: list[_Entry], state: dict[str, np.ndarray], source: str) -> dict:
    """Returns ``template`` (a Flax variables dict) with every leaf taken from ``state``."""
    variables = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), template)
    used = set()
    for prefix, path, kind in entries:
        for (collection, leaf), key in _torch_leaves(prefix, kind).items():
            if key not in state:
                raise NotInstaGANError(f"{source}: missing key '{key}' (needed for {'/'.join(path)}/{leaf})")
            node = variables[collection]
            for part in path:
                node = node[part]
            value = _to_flax(leaf, state[key]).astype(np.float32)
            if value.shape != node[leaf].shape:
                raise NotInstaGANError(
                    f"{source}: '{key}' has shape {state[key].shape}, which does not fit "
                    f"{'/'.join(path)}/{leaf} of shape {node[leaf].shape}"
                )
            node[leaf] = value
            used.add(key)
    # weight_v is recomputed from weight_u by the first power iteration and need not be read.
    unused = sorted(k for k in state if k not in used and not k.endswith(".weight_v"))
    if unused:
        raise NotInstaGANError(f"{source}: unexpected keys {unused[:5]}{' ...' if len(unused) > 5 else ''}")
    return variables


def convert_checkpoint_dir(checkpoint_dir: str, epoch: str = "latest") -> tuple[ModelSpec, dict]:
    """Reads ``{epoch}_net_{G_A,G_B[,D_A,D_B]}.pth`` from the authors' checkpoints folder.

    Returns the inferred ModelSpec and {network name: Flax variables}; the discriminators
    are included only when both files are present.
    """
    if not os.path.isdir(checkpoint_dir):
        raise FileNotFoundError(f"checkpoint directory does not exist: {checkpoint_dir}")

    def path(name):
        return os.path.join(checkpoint_dir, f"{epoch}_net_{name}.pth")

    states = {}
    for name in ("G_A", "G_B", "D_A", "D_B"):
        if name.startswith("G") or os.path.isfile(path(name)):
            states[name] = load_state_dict(path(name))  # FileNotFoundError names a missing generator
    fields = infer_generator_spec(states["G_A"], path("G_A"))
    if (other := infer_generator_spec(states["G_B"], path("G_B"))) != fields:
        raise NotInstaGANError(f"G_A and G_B differ in architecture: {fields} vs {other}")
    has_discriminators = "D_A" in states and "D_B" in states
    if has_discriminators:
        fields.update(infer_discriminator_spec(states["D_A"], path("D_A")))
    spec = ModelSpec(**fields)

    networks = {
        name: convert_state_dict(spec, name, state, path(name))
        for name, state in states.items()
        if name.startswith("G") or has_discriminators
    }
    return spec, networks


def convert_state_dict(spec: ModelSpec, name: str, state: dict[str, np.ndarray], source: str) -> dict:
    """One authors' network (``name`` in G_A, G_B, D_A, D_B) as the Flax variables of ``spec``."""
    entries = generator_entries(spec) if name.startswith("G") else discriminator_entries(spec)
    return fill_variables(abstract_networks(spec)[name], entries, state, source)
