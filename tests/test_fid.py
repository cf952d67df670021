"""FID and KID against pytorch-fid and torch-fidelity themselves (tests/golden/make_fid_golden.py).

The real Inception weights are never needed: the golden features come from pytorch-fid's own
network holding weights drawn from a seed (tests/inception_weights.py), which the tests draw
again and hand to ours through a .pth file, so the safe reader's path is the one measured.
"""

import io
import json
import os
import subprocess
import sys
import zipfile

import inception_weights
import numpy as np
import pytest
from helpers import REPO
from PIL import Image

from instagan_jax import checks, fid, inception


@pytest.fixture(scope="module")
def golden(golden_dir):
    with np.load(golden_dir / "fid.npz") as f:
        return dict(f)


def seeded_extractor(weights_path: str, dims: int, batch_size: int) -> fid.InceptionFeatures:
    return fid.InceptionFeatures(inception.load_weights(weights_path, dims, sha256=None), dims, batch_size)


def test_the_network_reads_exactly_the_tensors_pytorch_fid_holds(inception_torch_shapes):
    ours = {key: shape for key, (_, shape) in inception.torch_layout().items()}
    theirs = {key: shape for key, shape in inception_torch_shapes.items()
              if not key.endswith("num_batches_tracked") and not key.startswith("fc.")}  # fmt: skip
    assert ours == theirs
    assert len(ours) == 470


def test_photos_are_resized_to_299_as_torch_resizes_them(golden):
    for i, image in enumerate(inception_weights.golden_images()):
        resized = (inception.resize_for_inception(image) + 1) / 2
        assert resized.shape == (299, 299, 3)
        np.testing.assert_allclose(resized[[0, 1, 150, 298]], golden[f"resized_rows_{i}"], atol=3e-7)


@pytest.mark.parametrize("dims", [64, 192, 768, 2048])
def test_features_equal_pytorch_fids_for_enlarged_and_reduced_photos(golden, seeded_inception, dims):
    extractor = seeded_extractor(seeded_inception, dims, batch_size=3)
    images = inception_weights.golden_images()  # four sizes: two calls, the second one padded
    features = np.concatenate([extractor(batch) for batch in fid.batches(images, extractor.batch_size)])
    expected = np.stack([golden[f"features_{i}_{dims}"] for i in range(len(images))])
    assert features.shape == (4, dims) and features.dtype == np.float32
    assert expected.std() > 0.1  # the seeded network neither died out nor blew up
    # float32 through 94 convolutions: 2.5e-6 measured against features of order 1-6
    np.testing.assert_allclose(features, expected, atol=2e-5, rtol=1e-5)


def test_frechet_distance_and_streamed_moments_equal_pytorch_fids(golden):
    a, b = inception_weights.feature_sets()
    for name, (x, y) in {"regular": (a, b), "singular": (a[:40], b[:30])}.items():
        stats = []
        for features, batch in ((x, 7), (y, 13)):  # batches that do not divide the sets
            moments = fid.MomentAccumulator()
            for rows in fid.batches(features, batch):
                moments.add(np.stack(rows))
            stats.append(moments.statistics())
            np.testing.assert_allclose(stats[-1].sigma, np.cov(features.astype(np.float64), rowvar=False), atol=1e-12)
            np.testing.assert_allclose(stats[-1].mu, features.astype(np.float64).mean(0), atol=1e-12)
        distance = fid.frechet_distance(stats[0].mu, stats[0].sigma, stats[1].mu, stats[1].sigma)
        # float64 as pytorch-fid: 1e-14 apart when regular; the singular pair's root 7e-9 apart
        np.testing.assert_allclose(distance, golden[f"fid_{name}"], rtol=1e-7)
    assert fid.frechet_distance(stats[0].mu, stats[0].sigma, stats[0].mu, stats[0].sigma) == pytest.approx(0, abs=1e-5)


def test_kid_equals_torch_fidelitys_with_its_subsets(golden):
    a, b = inception_weights.feature_sets()
    for subsets, size in ((10, 100), (1, 240)):
        kid = fid.kernel_inception_distance(a, b, subsets, size, seed=2020)
        # float32 kernels on both sides: 8.5e-6 relative measured
        np.testing.assert_allclose([kid["kid"], kid["kid_std"]], golden[f"kid_{subsets}x{size}"], rtol=1e-4, atol=1e-8)
    shrunk = fid.kernel_inception_distance(a, b[:50], subsets=3, subset_size=1000)
    assert shrunk["kid_subset_size"] == 50
    same_source = fid.kernel_inception_distance(a[:150], a[150:], subsets=5, subset_size=100)["kid"]
    assert abs(same_source) < golden["kid_10x100"][0] / 10


def test_weights_that_are_not_the_fid_network_are_refused_naming_the_file(
    tmp_path, inception_torch_shapes, seeded_inception
):
    other = tmp_path / inception.WEIGHTS_NAME
    other.write_bytes(b"not the weights")
    with pytest.raises(inception.InceptionWeightsError, match=f"{other}.*SHA-256.*{inception.WEIGHTS_SHA256}"):
        inception.load_weights(other)
    with pytest.raises(inception.InceptionWeightsError, match=f"{other}: neither a zip archive nor"):
        inception.load_weights(other, sha256=None)
    with pytest.raises(FileNotFoundError, match="download"):
        inception.load_weights(tmp_path / "absent.pth")
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)  # would block the digest forever if opened
    with pytest.raises(inception.InceptionWeightsError, match="not a regular file"):
        inception.load_weights(fifo)
    state = inception_weights.seeded_state_dict(inception_torch_shapes)
    key = "Mixed_6c.branch7x7_2.conv.weight"
    cases = {
        "missing": ({k: v for k, v in state.items() if k != key}, "1 tensors missing"),
        "shape": ({**state, key: state[key][..., :3]}, f"{key} has shape"),
        "nan": ({**state, key: np.full_like(state[key], np.nan)}, f"{key} is not finite"),
        "extra": ({**state, "Mixed_8a.conv.weight": state[key]}, "unexpected keys.*Mixed_8a"),
    }
    for case, (broken, message) in cases.items():
        with pytest.raises(inception.InceptionWeightsError, match=f"{case}.pth: .*{message}"):
            inception.variables_from_state_dict(broken, f"{case}.pth")


def test_statistics_files_are_checked_before_they_are_read(tmp_path):
    a, _ = inception_weights.feature_sets()
    moments = fid.MomentAccumulator(keep_features=False)
    moments.add(a)
    stats = moments.statistics()
    stats.save(str(tmp_path / "stats.npz"))
    loaded = fid.load_statistics(str(tmp_path / "stats.npz"))
    np.testing.assert_array_equal(loaded.mu, stats.mu), np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    hostile = {
        "pickle.npz": dict(mu=np.array([object()]), sigma=stats.sigma),
        "width.npz": dict(mu=np.zeros(10), sigma=np.zeros((10, 10))),
        "nan.npz": dict(mu=np.full(64, np.nan), sigma=stats.sigma),
        "ints.npz": dict(mu=np.zeros(64, np.int64), sigma=stats.sigma),
        "keys.npz": dict(mean=stats.mu),
    }
    for name, arrays in hostile.items():
        np.savez(tmp_path / name, **arrays)
    (tmp_path / "text.npz").write_text("mu, sigma")
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:  # headers that declare 10^12 values, no data
        for member, shape in (("mu.npy", (10**6,)), ("sigma.npy", (10**6, 10**6))):
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
            archive.writestr(member, header.getvalue())
    for name in [*hostile, "text.npz", "huge.npz"]:
        with pytest.raises(fid.StatisticsFileError, match=name):
            fid.load_statistics(str(tmp_path / name))


def _write_photos(folder, seed, count, translated=False):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = (rng.uniform(0, 1, (24 + 8 * (i % 2), 32, 3)) * 255).astype(np.uint8)
        if translated:  # as translate.py names its outputs, with a merged mask beside each
            Image.fromarray(pixels).save(folder / f"p{i}_fake_B_img.png")
            Image.fromarray(pixels[..., 0] > 128).save(folder / f"p{i}_fake_B_seg.png")
        else:
            Image.fromarray(pixels).save(folder / f"p{i}.jpg", quality=95)


def test_the_command_scores_folders_and_statistics_files_as_the_library_does(tmp_path, seeded_inception):
    _write_photos(tmp_path / "translated", 1, 5, translated=True)
    _write_photos(tmp_path / "real", 2, 4)
    flags = [f"--fid_weights={seeded_inception}", "--fid_weights_sha256=any", "--dims=64", "--batch_size=3"]

    def command(*args):
        done = subprocess.run([sys.executable, str(REPO / "experiments" / "fid.py"), *flags, *args],
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    command("--save_stats", str(tmp_path / "real"), str(tmp_path / "real.npz"))
    out = command(f"--json={tmp_path / 'scores.json'}", "--kid_subset_size=4", str(tmp_path / "translated"),
                  str(tmp_path / "real.npz"))  # fmt: skip
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert f"FID: {scores['fid']:.4f}" in out and scores["photos"] == [5, 0] and "kid" not in scores

    extractor = seeded_extractor(seeded_inception, 64, batch_size=3)
    translated = fid.statistics_of_path(str(tmp_path / "translated"), extractor)
    real = fid.statistics_of_path(str(tmp_path / "real"), extractor)
    assert translated.count == 5  # the masks beside the translations are not photos
    assert scores["fid"] == pytest.approx(fid.frechet_distance(translated.mu, translated.sigma, real.mu, real.sigma),
                                          rel=1e-4)  # fmt: skip
    kid = fid.compare(translated, real, kid_subsets=5, kid_subset_size=4)
    assert kid["kid_subset_size"] == 4 and np.isfinite(kid["kid"]) and kid["kid_std"] > 0

    wrong = subprocess.run([sys.executable, str(REPO / "experiments" / "fid.py"), f"--fid_weights={seeded_inception}",
                            str(tmp_path / "real"), str(tmp_path / "real")], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert wrong.returncode == 1 and f"error: {seeded_inception}: SHA-256" in wrong.stderr
    _write_photos(tmp_path / "one", 3, 1)
    with pytest.raises(checks.InputError, match="one: FID needs at least 2 photos, found 1"):
        fid.statistics_of_path(str(tmp_path / "one"), extractor)


def test_features_split_over_several_devices_equal_those_of_one(tmp_path, seeded_inception):
    photos = inception_weights.golden_images()[:3] * 2  # 6 photos: 8 rows, 2 per device
    np.savez(tmp_path / "photos.npz", *photos)
    single = seeded_extractor(seeded_inception, 64, batch_size=6)
    script = (
        "import numpy as np, jax\n"
        "from instagan_jax import checks, fid, inception\n"
        "assert jax.device_count() == 4\n"
        f"weights = inception.load_weights({seeded_inception!r}, 64, sha256=None)\n"
        "extractor = fid.InceptionFeatures(weights, 64, batch_size=6)\n"
        "assert extractor.batch_size == 8\n"
        f"with np.load({str(tmp_path / 'photos.npz')!r}) as f:\n"
        "    photos = [f[f'arr_{i}'] for i in range(6)]\n"
        f"np.save({str(tmp_path / 'features.npy')!r}, extractor(photos))\n"
    )
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "features.npy"), single(photos), atol=1e-5)
