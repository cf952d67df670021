"""FID and KID between two sets of photos, computed as the papers compute them.

FID is pytorch-fid's: the mean and covariance of Inception pool features per set, and the
Fréchet distance between the two Gaussians in float64 with scipy's matrix square root (and
pytorch-fid's retry with 1e-6 on the diagonal when the product is singular). KID is
torch-fidelity's: the unbiased MMD with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
averaged over random subsets drawn with numpy's RandomState(seed), so the same seed draws the
same subsets. The network runs jitted on this process's devices, the batch split over them
when there are several; moments are summed in float64 on the host batch by batch (memory
flat in the number of photos), while KID keeps the features themselves (8 KiB per photo).
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from scipy import linalg

from instagan_jax import checks, image_io, inception, json_files, parallel

KID_SUBSETS = 100  # torch-fidelity's defaults
KID_SUBSET_SIZE = 1000
KID_SEED = 2020
MAX_STATISTICS_BYTES = 1 << 30


class StatisticsFileError(checks.InputError):
    """A statistics file that cannot be used (named, with the reason)."""


class InceptionFeatures:
    """[0, 1] photos of any sizes -> (n, dims) float32 pool features, a fixed-size batch at a time."""

    def __init__(self, variables: dict, dims: int = 2048, batch_size: int = 50):
        self.dims = dims
        mesh = jax.sharding.Mesh(np.array(jax.local_devices()), (parallel.DATA_AXIS,))  # this process's devices
        self._devices = mesh.devices.size
        self.batch_size = -(-batch_size // self._devices) * self._devices  # every device gets as many rows
        self.variables = jax.device_put(variables, parallel.replicated(mesh))
        self._sharding = parallel.batch_sharded(mesh)
        network = inception.FIDInception(dims)
        self._apply = jax.jit(network.apply, in_shardings=(parallel.replicated(mesh), self._sharding))

    def __call__(self, photos: Sequence[np.ndarray]) -> np.ndarray:
        if not 0 < len(photos) <= self.batch_size:
            raise ValueError(f"{len(photos)} photos in a batch of {self.batch_size}")
        # A short batch (the last, or a small set) is padded to a power of two, not to batch_size:
        # a few more compilations, instead of running the network on up to 49 blank photos.
        rows = min(self.batch_size, -(-(1 << (len(photos) - 1).bit_length()) // self._devices) * self._devices)
        batch = np.zeros((rows, inception.INPUT_SIZE, inception.INPUT_SIZE, 3), np.float32)
        for i, photo in enumerate(photos):
            batch[i] = inception.resize_for_inception(photo)
        features = self._apply(self.variables, jax.device_put(batch, self._sharding))
        return np.asarray(features)[: len(photos)]


def batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclasses.dataclass
class Statistics:
    """A set's feature mean and covariance; ``features`` kept for KID (None when read from a file)."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int
    features: np.ndarray | None = None

    def save(self, path: str) -> None:
        """pytorch-fid's statistics file (``mu``, ``sigma``), usable with its ``--save-stats`` files."""
        json_files.write_whole(path, lambda f: np.savez(f, mu=self.mu, sigma=self.sigma), binary=True)


class MomentAccumulator:
    """Running float64 sums of the features and their outer products, shifted by the first
    batch's mean so that the covariance does not cancel two large numbers."""

    def __init__(self, keep_features: bool = True):
        self.count, self.shift, self.total, self.outer = 0, None, None, None
        self.kept: list[np.ndarray] | None = [] if keep_features else None

    def add(self, features: np.ndarray) -> None:
        x = np.asarray(features, np.float64)
        if self.shift is None:
            self.shift = x.mean(axis=0)
            self.total, self.outer = np.zeros_like(self.shift), np.zeros((x.shape[1], x.shape[1]))
        centred = x - self.shift
        self.count += len(x)
        self.total += centred.sum(axis=0)
        self.outer += centred.T @ centred
        if self.kept is not None:
            self.kept.append(np.asarray(features, np.float32))

    def statistics(self) -> Statistics:
        if self.count < 2:
            raise checks.InputError(f"a covariance needs at least 2 photos, got {self.count}")
        mean_centred = self.total / self.count
        sigma = (self.outer - self.count * np.outer(mean_centred, mean_centred)) / (self.count - 1)
        features = np.concatenate(self.kept) if self.kept is not None else None
        return Statistics(self.shift + mean_centred, sigma, self.count, features)


def statistics_of(extractor: InceptionFeatures, photos: Iterable[np.ndarray], keep_features: bool = True) -> Statistics:
    """Streams ``photos`` ([0, 1], (H, W, 3)) through the network."""
    moments = MomentAccumulator(keep_features)
    for batch in batches(photos, extractor.batch_size):
        moments.add(extractor(batch))
    return moments.statistics()


_TRANSLATED = re.compile(r"_fake_[AB]_img\.png$")


def folder_photo_paths(folder: str) -> list[str]:
    """The folder's photos in name order; in a folder translate.py wrote, only its translations
    ({stem}_fake_B_img.png), not the merged masks beside them."""
    paths = image_io.list_images(folder)
    translated = [p for p in paths if _TRANSLATED.search(os.path.basename(p))]
    return translated or paths


def read_photo(path: str) -> np.ndarray:
    """[0, 1] RGB as pytorch-fid reads a file (PIL, converted to RGB), checked: a damaged file is named."""
    return np.asarray(image_io.open_image(path, "RGB"), np.float32) / np.float32(255)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)), as pytorch-fid computes it."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature widths differ: {mu1.shape} and {mu2.shape}")
    with warnings.catch_warnings():  # a singular product is handled below, as pytorch-fid's disp=False does
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        logging.warning("FID: the covariance product is singular; adding %g to the diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: the matrix square root has an imaginary part of {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@jax.jit
def _polynomial_mmd(x, y):
    """Unbiased MMD^2 with (x.y / d + 1)^3 between two subsets of equal size m."""
    m, d = x.shape

    def kernel(a, b):
        return (jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST) / d + 1) ** 3

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    off_diagonal = (k_xx.sum() - jnp.trace(k_xx)) + (k_yy.sum() - jnp.trace(k_yy))
    return off_diagonal / (m * (m - 1)) - 2 * k_xy.sum() / (m * m)


def kernel_inception_distance(features1, features2, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                              seed: int = KID_SEED) -> dict:  # fmt: skip
    """KID mean and standard deviation over ``subsets`` random subsets.

    A set smaller than ``subset_size`` shrinks the subsets to its size (torch-fidelity stops
    instead); the size used is returned, as KID's spread, not its expectation, depends on it.
    """
    n1, n2 = len(features1), len(features2)
    size = min(subset_size, n1, n2)
    if size < 2:
        raise ValueError(f"KID needs at least 2 photos per set, got {n1} and {n2}")
    if size < subset_size:
        logging.warning("KID: subsets of %d photos (%d and %d given), not %d", size, n1, n2, subset_size)
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        x = features1[rng.choice(n1, size, replace=False)]
        y = features2[rng.choice(n2, size, replace=False)]
        values.append(float(_polynomial_mmd(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))))
    return {"kid": float(np.mean(values)), "kid_std": float(np.std(values)), "kid_subset_size": size}


def compare(generated: Statistics, real: Statistics, kid_subsets: int = KID_SUBSETS,
            kid_subset_size: int = KID_SUBSET_SIZE) -> dict:  # fmt: skip
    """FID (and KID where both sets kept their features) of ``generated`` against ``real``."""
    scores = {"fid": frechet_distance(generated.mu, generated.sigma, real.mu, real.sigma),
              "photos": [generated.count, real.count]}  # fmt: skip
    if generated.features is not None and real.features is not None and kid_subsets > 0:
        scores.update(kernel_inception_distance(generated.features, real.features, kid_subsets, kid_subset_size))
    return scores


def _declared_array(archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and type an .npy member declares, read from its header alone."""
    with archive.open(name) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    return shape, dtype


def _read_statistics(path: str) -> Statistics:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if not {"mu.npy", "sigma.npy"} <= names:
            raise StatisticsFileError(f"{path}: holds {sorted(names)[:5]}, not pytorch-fid's mu and sigma")
        mu_shape, mu_dtype = _declared_array(archive, "mu.npy")
        sigma_shape, sigma_dtype = _declared_array(archive, "sigma.npy")
    dims = mu_shape[0] if len(mu_shape) == 1 else -1
    if dims not in inception.BLOCKS_FOR_DIMS or sigma_shape != (dims, dims):
        raise StatisticsFileError(f"{path}: mu {mu_shape} and sigma {sigma_shape} are not Inception statistics")
    if not all(np.issubdtype(t, np.floating) for t in (mu_dtype, sigma_dtype)):
        raise StatisticsFileError(f"{path}: mu and sigma are {mu_dtype} and {sigma_dtype}, not floating point")
    with np.load(path, allow_pickle=False) as f:
        mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise StatisticsFileError(f"{path}: mu or sigma holds values that are not finite")
    return Statistics(mu, sigma, count=0)


def load_statistics(path: str) -> Statistics:
    """A pytorch-fid statistics file (``mu``, ``sigma``; ``--save-stats``), checked before reading:
    the arrays' declared shapes and types first, then finite values; no pickles."""
    size = checks.regular_file_size(path, error=StatisticsFileError)
    if size > MAX_STATISTICS_BYTES:
        raise StatisticsFileError(f"{path}: {size} bytes is more than a statistics file holds")
    try:
        return _read_statistics(path)
    except StatisticsFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise StatisticsFileError(f"{path}: not a statistics .npz ({type(e).__name__}: {e})") from None


def statistics_of_path(path: str, extractor: InceptionFeatures, keep_features: bool = True,
                       progress=None) -> Statistics:  # fmt: skip
    """A folder of photos, or a ``.npz`` statistics file, as pytorch-fid's command line takes either.
    ``progress``: wraps the photo paths (e.g. tqdm) for a progress bar with an ETA."""
    if os.path.isdir(path):
        paths = folder_photo_paths(path)
        if len(paths) < 2:
            raise checks.InputError(f"{path}: FID needs at least 2 photos, found {len(paths)}")
        if progress is not None:
            paths = progress(paths)
        return statistics_of(extractor, map(read_photo, paths), keep_features)
    if path.endswith(".npz"):
        return load_statistics(path)
    raise FileNotFoundError(f"{path}: neither a folder of photos nor a .npz statistics file")
