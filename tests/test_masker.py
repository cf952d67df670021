"""The instance masker: targets and grouping, its invariants, instance scores, a tiny training
run that resumes, and photos without masks translated end to end (translate.py --masks auto)."""

import dataclasses
import json
import shutil
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import REPO, diverging_from, masker_config
from PIL import Image

from instagan_jax import checkpoint, divergence, evaluation, image_io, mask_prediction, masker, masker_train
from instagan_jax.inference import Translator

SPEC = masker.MaskerSpec(width=4, n_blocks=1, ins_max=4)


def touching_squares() -> np.ndarray:
    m = -np.ones((1, 32, 32, 4), np.float32)
    m[0, 4:14, 4:14, 0] = 1  # two squares sharing an edge, and a bar apart
    m[0, 4:14, 14:24, 1] = 1
    m[0, 20:30, 2:8, 2] = 1
    return m


def perfect_outputs(masks):
    """What a perfect masker would output for these masks."""
    target = masker.targets(jnp.asarray(masks), SPEC.sigma)
    return {"foreground": 20 * target["foreground"] - 10, "centre": target["centre"], "offset": target["offset"]}


def test_grouping_separates_touching_instances_that_connected_components_merge():
    masks = touching_squares()
    outputs = perfect_outputs(masks)
    grouped = np.asarray(masker.group(outputs, SPEC))
    chex.assert_shape(grouped, (1, 32, 32, 4))
    assert set(np.unique(grouped)) <= {-1.0, 1.0}
    assert [int((grouped[0, ..., k] > 0).sum()) for k in range(4)] == [100, 100, 60, 0]  # largest first, then empty
    assert ((grouped > 0).sum(-1) <= 1).all()  # no pixel in two instances
    assert evaluation.instance_scores(masks, grouped) == {"matched_iou": 1.0, "count_accuracy": 1.0, "count_error": 0.0}
    merged = masker.connected_components(np.asarray(outputs["foreground"]) > 0, 4)
    scores = evaluation.instance_scores(masks, merged)
    assert scores["count_accuracy"] == 0.0 and scores["count_error"] == 1.0
    np.testing.assert_allclose(scores["matched_iou"], (0.5 + 0 + 1) / 3)  # one square matched to the merged pair


def test_targets_point_every_instance_pixel_at_its_centre():
    target = masker.targets(jnp.asarray(touching_squares()), SPEC.sigma)
    chex.assert_shape([target["foreground"], target["centre"]], (1, 32, 32))
    chex.assert_shape(target["offset"], (1, 32, 32, 2))
    np.testing.assert_allclose(target["offset"][0, 4, 4], [4.5, 4.5])  # corner -> centre (8.5, 8.5)
    np.testing.assert_allclose(target["offset"][0, 0, 0], [0.0, 0.0])  # background
    peak = np.exp(-0.5 / (2 * SPEC.sigma**2))  # the pixel nearest a centre is 0.5 px² from it
    assert float(target["centre"].max()) == pytest.approx(peak, rel=1e-5)


def test_object_size_is_the_region_of_the_median_foreground_pixel_and_sets_the_scale():
    fg = np.zeros((1, 64, 64), bool)
    fg[0, 4:28, 4:28] = True  # 24 x 24
    fg[0, 40:44, 40:44] = True  # specks do not count
    fg[0, 50:52, 2:4] = True
    assert masker.object_size(fg) == 24.0
    assert masker.object_size(np.zeros((2, 8, 8), bool)) == 0.0
    spec = lambda size: masker.MaskerSpec(object_size=size)
    assert masker.auto_scale(fg[0], spec(6.0)) == 4.0  # objects 4x those it learnt: masked at a quarter
    assert masker.auto_scale(fg[0], spec(48.0)) == 0.5
    assert masker.auto_scale(fg[0], spec(21.0)) == 1.0  # within SCALE_TOLERANCE: as it is
    assert masker.auto_scale(fg[0], spec(0.0)) == 1.0  # a masker that did not record its objects' size
    assert masker.auto_scale(np.zeros((64, 64), bool), spec(6.0)) == 1.0  # nothing to measure


def test_masks_grouped_on_a_smaller_copy_come_back_with_the_full_size_outlines():
    small = touching_squares()
    full = np.repeat(np.repeat(small, 2, axis=1), 2, axis=2)  # the same instances at twice the size
    foreground = (full > 0).any(-1)
    foreground[0, 60:64, 0:4] = True  # foreground that no instance of the small copy covers stays out
    masks = np.asarray(masker.upsampled(jnp.asarray(small), jnp.asarray(foreground)))
    chex.assert_shape(masks, (1, 64, 64, 4))
    assert ((masks > 0) <= foreground[..., None]).all()
    assert not (masks[0, 60:64, 0:4] > 0).any()
    scores = evaluation.instance_scores(full, masks)
    assert scores["count_accuracy"] == 1.0 and scores["matched_iou"] > 0.97
    assert (np.diff((masks > 0).sum(axis=(1, 2)), axis=-1) <= 0).all()  # largest first


@pytest.mark.parametrize("value", ["big", "0", "-1", "nan", "inf", 100, None])
def test_a_masker_scale_is_auto_or_a_sensible_number(value):
    with pytest.raises(ValueError, match=r"masker scale must be 'auto' or a number"):
        masker.parse_scale(value)
    assert masker.parse_scale("auto") == "auto" and masker.parse_scale("2") == 2.0 and masker.parse_scale(0.5) == 0.5


def test_a_masker_at_scale_2_masks_the_half_size_photo(masker_workdir):
    spec, params = mask_prediction.load_masker(str(masker_workdir / "run"))
    photo = jax.random.uniform(jax.random.PRNGKey(0), (1, 16, 16, 3), minval=-1, maxval=1)
    photo = jax.image.resize(photo, (1, 64, 64, 3), "linear")  # smooth, so that halving it loses little
    masks, foreground = mask_prediction.MaskPredictor(spec, params, scale=2).predict(photo)
    half = mask_prediction.MaskPredictor(spec, params, scale=1)(jax.image.resize(photo, (1, 32, 32, 3), "linear"))
    expected = np.asarray(masker.upsampled(jnp.asarray(half), jnp.asarray(foreground)))
    chex.assert_shape(masks, (1, 64, 64, 4))
    assert np.mean(masks != expected) < 0.01
    assert np.array_equal(foreground, mask_prediction.MaskPredictor(spec, params, scale=1).predict(photo)[1])


def test_a_masker_spec_refuses_values_a_hostile_workdir_could_hold():
    with pytest.raises(ValueError, match=r"masker width must be an integer in \[1, 256\], got 1000000000"):
        masker.MaskerSpec(width=10**9)
    with pytest.raises(ValueError, match=r"masker n_blocks must be an integer in \[1, 32\], got 0"):
        masker.MaskerSpec(n_blocks=0)
    with pytest.raises(ValueError, match="masker ins_max must be an integer"):
        masker.MaskerSpec(ins_max=4.0)
    with pytest.raises(ValueError, match="peak_window must be odd"):
        masker.MaskerSpec(peak_window=4)
    with pytest.raises(ValueError, match="not a masker spec"):
        masker.MaskerSpec.from_dict({"width": 4, "evil": 1})
    with pytest.raises(ValueError, match=r"masker object_size must be in \[0, 4096.0\], got nan"):
        masker.MaskerSpec(object_size=float("nan"))


def test_training_resumes_and_the_workdir_predicts_masks_as_instagan_reads_them(masker_workdir, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(masker_workdir / "run", workdir)
    before = mask_prediction.load_masker(str(workdir))[1]
    stored_spec = workdir / "checkpoints" / "2" / "masker_spec" / "metadata"
    recorded = json.loads(stored_spec.read_text())
    assert 2 < recorded.pop("object_size") < 16  # the training objects' size, in pixels
    stored_spec.write_text(json.dumps(recorded))  # as specs were saved before they recorded it: still resumes
    after = masker_train.train_masker(masker_config(masker_workdir, num_train_steps=4), str(workdir))
    assert checkpoint.complete_steps(workdir) == [2, 4]
    assert not np.allclose(jax.tree.leaves(before)[0], jax.tree.leaves(after)[0])  # resumed and trained on
    predictor = mask_prediction.MaskPredictor.from_workdir(str(workdir))
    assert dataclasses.replace(predictor.spec, object_size=0) == masker.MaskerSpec(width=4, n_blocks=1, ins_max=4)
    assert predictor.spec.object_size > 2 and predictor.scale == "auto"
    masks = predictor(np.zeros((3, 32, 32, 3), np.float32))
    chex.assert_shape(masks, (3, 32, 32, 4))
    area = (masks > 0).sum(axis=(1, 2))
    assert (np.diff(area, axis=-1) <= 0).all()  # largest first, empty slots last
    with pytest.raises(ValueError, match="multiples of 4"):
        predictor(np.zeros((1, 30, 32, 3), np.float32))


def test_a_diverged_masker_run_stops_before_saving(masker_workdir, tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    shutil.copytree(masker_workdir / "run", workdir)
    diverging_from(3, monkeypatch)
    config = masker_config(masker_workdir, num_train_steps=4, log_every_steps=4)
    config.checkpoint_every_steps = 1
    with pytest.raises(divergence.Diverged, match=r"at step 3; the last good checkpoint is step 2"):
        masker_train.train_masker(config, str(workdir))
    assert checkpoint.complete_steps(workdir) == [2]


def test_a_damaged_masker_workdir_is_named(masker_workdir, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(masker_workdir / "run", workdir)
    (workdir / "checkpoints" / "2" / "masker_spec" / "metadata").write_text('{"width": -1}')
    with pytest.raises(checkpoint.CheckpointError, match=r"checkpoints/2: cannot read its masker_spec"):
        mask_prediction.load_masker(str(workdir))


def test_photos_without_masks_are_translated_with_predicted_ones(masker_workdir, converted_workdir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("p0", "p1"):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(photos / f"{name}.png")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "translate.py"), f"--workdir={converted_workdir}",
                           "--masks=auto", f"--masker_workdir={masker_workdir / 'run'}", f"--image_dir={photos}",
                           "--ins_max=4", f"--output_dir={out}"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("p0", "p1"):
        assert np.asarray(Image.open(out / f"{name}_fake_B_img.png")).shape == (32, 32, 3)
    predicted = image_io.index_masks(str(out / "predicted_masks"))
    predictor = mask_prediction.MaskPredictor.from_workdir(str(masker_workdir / "run"))
    for name in ("p0", "p1"):  # every mask it used, in the authors' layout: as many as the masker finds
        masks = predictor(image_io.read_image(str(photos / f"{name}.png"))[None])[0]
        found = masks[..., (masks > 0).any(axis=(0, 1))]
        assert len(predicted.get(name, [])) == found.shape[-1], (name, predicted)
        for k, path in enumerate(predicted.get(name, [])):
            np.testing.assert_array_equal(image_io.read_mask(path) > 0, found[..., k] > 0)
    assert "predicted masks" in done.stdout
    refused = subprocess.run([sys.executable, str(REPO / "experiments" / "translate.py"),
                              f"--workdir={converted_workdir}", "--masks=auto", f"--image_dir={photos}",
                              f"--output_dir={out}"], cwd=REPO, capture_output=True, text=True,
                             timeout=600)  # fmt: skip
    assert refused.returncode == 1 and "--masks auto needs --masker_workdir" in refused.stderr


def test_the_python_api_predicts_masks_when_given_none(masker_workdir, converted_workdir):
    translator = Translator.from_workdir(converted_workdir, ins_per=2, ins_max=4)
    image = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="no masks given and no masker"):
        translator.translate(image)
    translator.masker = mask_prediction.MaskPredictor.from_workdir(str(masker_workdir / "run"))
    out = translator.translate(image, direction="BtoA")
    chex.assert_shape([out["image"], out["input_masks"]], [(32, 32, 3), (32, 32, 4)])
    np.testing.assert_array_equal(out["input_masks"], translator.masker(image[None])[0])
