"""Stand-in FID Inception weights drawn from a fixed seed, so the real file is never needed.

The golden generator loads these into pytorch-fid's own network; the tests rebuild the same
arrays here and load them into ours. Each tensor's draw depends only on its name, so the
order the two sides list them in does not matter. The scales keep activations of order one
through the whole network (a random network of default scale overflows or dies out), so the
comparison exercises every layer.
"""

from __future__ import annotations

import json
import pathlib
import zlib

import numpy as np
import torch_files

SEED = 20151205
GOLDEN = pathlib.Path(__file__).parent / "data" / "golden" / "fid.npz"


def seeded_tensor(name: str, shape: tuple[int, ...], seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return np.zeros(shape, np.int64)
    if name.startswith("fc."):
        return (0.01 * rng.standard_normal(shape)).astype(np.float32)
    if leaf == "weight" and len(shape) == 4:  # He scale for the ReLU that follows
        fan_in = int(np.prod(shape[1:]))
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if leaf == "weight":  # batch-norm scale
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if leaf == "running_var":
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)  # biases and running means


def seeded_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = SEED) -> dict[str, np.ndarray]:
    return {name: seeded_tensor(name, tuple(shape), seed) for name, shape in shapes.items()}


def torch_shapes() -> dict[str, tuple[int, ...]]:
    """The tensors of pytorch-fid's Inception network, as its own model lists them (the golden file)."""
    with np.load(GOLDEN) as f:
        return {name: tuple(shape) for name, shape in json.loads(str(f["layout"])).items()}


def write_seeded_weights(path) -> None:
    """The seeded weights as a torch 0.4-1.5 .pth, the format of pytorch-fid's file."""
    arrays = seeded_state_dict(torch_shapes())
    pathlib.Path(path).write_bytes(torch_files.legacy_file(*torch_files.state_dict(arrays)))


def golden_images(seed: int = 7) -> list[np.ndarray]:
    """[0, 1] float32 photos: two upsampled to 299 and two downsampled, as both paths must agree."""
    rng = np.random.default_rng(seed)
    sizes = [(32, 32), (40, 56), (320, 340), (301, 299)]
    images = []
    for h, w in sizes:
        smooth = rng.uniform(0, 1, (h // 8 + 2, w // 8 + 2, 3))
        base = np.kron(smooth, np.ones((8, 8, 1)))[:h, :w]  # blocks, so the features see structure
        images.append(np.clip(base + 0.1 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32))
    return images


def feature_sets(seed: int = 11, dims: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of feature vectors with different means and covariances, for FID and KID alone."""
    rng = np.random.default_rng(seed)
    mix_a, mix_b = rng.standard_normal((dims, dims)) / np.sqrt(dims), rng.standard_normal((dims, dims)) / np.sqrt(dims)
    a = np.abs(rng.standard_normal((300, dims)) @ mix_a + 0.5)  # non-negative, as pool features are
    b = np.abs(rng.standard_normal((240, dims)) @ mix_b + 0.6)
    return a.astype(np.float32), b.astype(np.float32)
