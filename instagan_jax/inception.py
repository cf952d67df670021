"""The Inception v3 that FID and KID are computed with, built as pytorch-fid builds it.

Papers that compare with InstaGAN report FID from pytorch-fid: torchvision's Inception v3
with the blocks patched to match the TensorFlow graph the FID authors used (average pools
that leave padding out of the count, a max pool in the last block, 1008 classes), weights
``pt_inception-2015-12-05-6726825d.pth``, photos resized bilinearly to 299x299 and scaled to
[-1, 1]. This module rebuilds that network in Flax under the same module names, so the
weights file maps onto it key by key, and reads the file with the safe ``.pth`` reader: no
PyTorch, no download, nothing in the file is run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from instagan_jax import checks, torch_pickle

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_NAME}"
INPUT_SIZE = 299
# Feature width -> how many of pytorch-fid's four blocks run (its BLOCK_INDEX_BY_DIM, plus one).
BLOCKS_FOR_DIMS = {64: 1, 192: 2, 768: 3, 2048: 4}
_IGNORED_KEYS = ("fc.weight", "fc.bias")  # the classifier: FID reads the pool features before it
_PRECISION = jax.lax.Precision.HIGHEST  # float32 throughout, as pytorch-fid on a CPU computes


class InceptionWeightsError(checks.InputError):
    """A weights file that is not the FID Inception network (named, with the reason)."""


class BasicConv(nn.Module):
    """torchvision's BasicConv2d: convolution without bias, batch norm (eps 0.001), ReLU."""

    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        ph, pw = self.padding
        x = nn.Conv(self.features, self.kernel, self.strides, padding=((ph, ph), (pw, pw)), use_bias=False,
                    precision=_PRECISION, name="conv")(x)  # fmt: skip
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _average_pool(x):
    """3x3 average over the pixels inside the image only (count_include_pad=False)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x, stride: int = 2, padding: int = 0):
    pad = ((padding, padding), (padding, padding))
    return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=pad)


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_average_pool(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        row, column = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv(c, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv(c, **row, name="branch7x7_2")(b7)
        b7 = BasicConv(192, **column, name="branch7x7_3")(b7)
        bd = BasicConv(c, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv(c, **column, name="branch7x7dbl_2")(bd)
        bd = BasicConv(c, **row, name="branch7x7dbl_3")(bd)
        bd = BasicConv(c, **column, name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, **row, name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, (1, 1), name="branch_pool")(_average_pool(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool(x)], axis=-1)


class InceptionE(nn.Module):
    """The last two blocks; the FID graph pools the final one with a max, not an average."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        row, column = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv(384, **row, name="branch3x3_2a")(b3),
                              BasicConv(384, **column, name="branch3x3_2b")(b3)], axis=-1)  # fmt: skip
        bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv(384, **row, name="branch3x3dbl_3a")(bd),
                              BasicConv(384, **column, name="branch3x3dbl_3b")(bd)], axis=-1)  # fmt: skip
        pooled = _max_pool(x, stride=1, padding=1) if self.max_pool else _average_pool(x)
        bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInception(nn.Module):
    """Photos in [-1, 1] at 299x299 (NHWC) -> pooled features of width ``dims`` (64, 192, 768, 2048).

    Runs only the blocks the requested width needs and averages its map over space, as
    pytorch-fid does for the narrower taps.
    """

    dims: int = 2048

    @nn.compact
    def __call__(self, x):
        blocks = BLOCKS_FOR_DIMS[self.dims]
        x = BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool(x)
        if blocks > 1:
            x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
            x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
            x = _max_pool(x)
        if blocks > 2:
            for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
                x = InceptionA(pool_features, name=name)(x)
            x = InceptionB(name="Mixed_6a")(x)
            for name, channels in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
                x = InceptionC(channels, name=name)(x)
        if blocks > 3:
            x = InceptionD(name="Mixed_7a")(x)
            x = InceptionE(name="Mixed_7b")(x)
            x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


def _bilinear_weights(size_in: int) -> np.ndarray:
    """(299, size_in) rows of torch's bilinear interpolation, align_corners=False, no antialias:
    samples at half-pixel centres, clamped at the first pixel, two taps per output."""
    scale = np.float32(size_in) / np.float32(INPUT_SIZE)
    # torch's kernel computes scale * (i + 0.5) - 0.5 as one fused multiply-add: exact in float64,
    # rounded once to float32 (two roundings move a weight by up to 2e-5 on a 340-pixel side).
    source = np.maximum((np.float64(scale) * (np.arange(INPUT_SIZE) + 0.5) - 0.5).astype(np.float32), 0)
    low = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    frac = source - low.astype(np.float32)
    weights = np.zeros((INPUT_SIZE, size_in), np.float32)
    np.add.at(weights, (np.arange(INPUT_SIZE), low), 1 - frac)
    np.add.at(weights, (np.arange(INPUT_SIZE), high), frac)
    return weights


def resize_for_inception(image: np.ndarray) -> np.ndarray:
    """One (H, W, 3) photo in [0, 1] -> (299, 299, 3) in [-1, 1], as pytorch-fid's model does on entry.

    Done on the host as two small matrix products so photos of every size share one compiled
    network (a resize inside it would compile once per photo size).
    """
    rows, columns = _bilinear_weights(image.shape[0]), _bilinear_weights(image.shape[1])
    resized = np.einsum("yh,hwc,xw->yxc", rows, np.asarray(image, np.float32), columns, optimize=True)
    return 2 * resized - 1


def _flax_leaves(variables, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], jax.ShapeDtypeStruct]]:
    for name, value in variables.items():
        if isinstance(value, dict):
            yield from _flax_leaves(value, prefix + (name,))
        else:
            yield prefix + (name,), value


_TORCH_LEAF = {("params", "kernel"): "weight", ("params", "scale"): "weight", ("params", "bias"): "bias",
               ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}  # fmt: skip


def torch_layout(dims: int = 2048) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """{torch key: (path in the Flax variables, torch shape)} for every tensor the network reads."""
    shapes = jax.eval_shape(FIDInception(dims).init, jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))
    layout = {}
    for path, leaf in _flax_leaves(dict(shapes)):
        collection, *modules, leaf_name = path
        key = ".".join(modules + [_TORCH_LEAF[(collection, leaf_name)]])
        shape = leaf.shape
        if leaf_name == "kernel":  # Flax HWIO <- torch OIHW
            shape = (shape[3], shape[2], shape[0], shape[1])
        layout[key] = (path, tuple(shape))
    return layout


def variables_from_state_dict(state: dict[str, np.ndarray], source: str, dims: int = 2048) -> dict:
    """Maps a pytorch-fid state dict onto ``FIDInception``'s variables, checking every key and shape."""
    layout = torch_layout(dims)
    full_layout = layout if dims == 2048 else torch_layout(2048)
    unexpected = sorted(k for k in state if k not in full_layout and k not in _IGNORED_KEYS
                        and not k.endswith(".num_batches_tracked"))  # fmt: skip
    if unexpected:
        raise InceptionWeightsError(f"{source}: not the FID Inception weights: unexpected keys {unexpected[:5]}")
    missing = sorted(k for k in full_layout if k not in state)
    if missing:
        raise InceptionWeightsError(f"{source}: not the FID Inception weights: {len(missing)} tensors missing, "
                                    f"e.g. {missing[:3]}")  # fmt: skip
    variables: dict = {"params": {}, "batch_stats": {}}
    for key, (path, shape) in layout.items():
        value = state[key]
        if tuple(value.shape) != shape:
            raise InceptionWeightsError(f"{source}: {key} has shape {tuple(value.shape)}, the network needs {shape}")
        if not np.issubdtype(value.dtype, np.floating) or not np.all(np.isfinite(value)):
            raise InceptionWeightsError(f"{source}: {key} is not finite floating point ({value.dtype})")
        value = np.asarray(value, np.float32)
        if path[-1] == "kernel":
            value = value.transpose(2, 3, 1, 0)
        node = variables
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    return variables


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights(path: str | os.PathLike, dims: int = 2048, sha256: str | None = WEIGHTS_SHA256) -> dict:
    """Reads pytorch-fid's weights file into ``FIDInception(dims)``'s variables.

    ``sha256``: the digest the file must have; None accepts other Inception weights of the same
    structure (their scores are not comparable with published ones).
    """
    path = os.fspath(path)
    if dims not in BLOCKS_FOR_DIMS:
        raise ValueError(f"feature width {dims} is not one of pytorch-fid's {sorted(BLOCKS_FOR_DIMS)}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such Inception weights file: {path} (download {WEIGHTS_URL} once)")
    if sha256 is not None:
        checks.regular_file_size(path, error=InceptionWeightsError)  # a FIFO would block the digest
        found = file_sha256(path)
        if found != sha256:
            raise InceptionWeightsError(f"{path}: SHA-256 {found} is not that of pytorch-fid's {WEIGHTS_NAME} "
                                        f"({sha256}); get it from {WEIGHTS_URL}")  # fmt: skip
    try:
        state = torch_pickle.load_state_dict(path)
    except torch_pickle.TorchFileError as e:
        raise InceptionWeightsError(str(e)) from None
    return variables_from_state_dict(state, path, dims)
