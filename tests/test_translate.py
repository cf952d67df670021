"""Sequential translation: golden parity with the authors' test loop, CLI and Python API."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from instagan_jax import checkpoint, image_io
from instagan_jax.inference import Translator

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def translator(converted_workdir):
    return Translator.from_workdir(converted_workdir, ins_per=2, ins_max=4)


def test_checkpoint_round_trip_restores_generators(converted, converted_workdir):
    spec, nets = converted
    spec2, restored = checkpoint.load_networks(converted_workdir, names=("G_A",))
    assert spec2 == spec and list(restored) == ["G_A"]
    np.testing.assert_array_equal(
        restored["G_A"]["params"]["decoder_seg"]["conv_out"]["kernel"],
        nets["G_A"]["params"]["decoder_seg"]["conv_out"]["kernel"],
    )
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        checkpoint.load_networks(str(REPO / "no-such-workdir"))


def test_translate_cli_matches_the_authors_test_loop(converted_workdir, golden_dir, tmp_path):
    golden = np.load(golden_dir / "translate.npz")
    for direction, domain, target in (("AtoB", "a", "B"), ("BtoA", "b", "A")):
        out = tmp_path / direction
        cmd = [
            sys.executable,
            str(REPO / "experiments" / "translate.py"),
            f"--workdir={converted_workdir}",
            f"--dataroot={golden_dir / 'folder'}",
            "--phase=test",
            f"--direction={direction}",
            "--ins_per=2",
            "--ins_max=4",
            "--load_size=64,48",
            "--batch_size=2",
            f"--output_dir={out}",
        ]
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
        for i in range(3):
            for kind in ("img", "seg"):
                ours = np.asarray(Image.open(out / f"{domain}{i}_fake_{target}_{kind}.png"), np.int16)
                ref = golden[f"{domain}{i}_fake_{target}_{kind}"].squeeze().astype(np.int16)
                assert ours.shape == ref.shape
                diff = np.abs(ours - ref)
                assert diff.mean() <= 0.5 and diff.max() <= 3, (direction, i, kind, diff.mean(), diff.max())


def test_api_translates_one_image_with_a_list_of_masks(translator, golden_dir):
    stem = "a2"
    masks = image_io.index_masks(str(golden_dir / "folder" / "testA_seg"))[stem]
    image, mask_arrays = image_io.read_example(str(golden_dir / "folder" / "testA" / f"{stem}.png"), masks, (64, 48))
    out = translator.translate(image, [mask_arrays[..., k] for k in range(mask_arrays.shape[-1])])
    assert out["image"].shape == (64, 48, 3) and out["masks"].shape == (64, 48, 4) and out["merged"].shape == (64, 48)
    golden = np.load(golden_dir / "translate.npz")
    diff = np.abs(image_io.to_uint8(out["image"]).astype(int) - golden["a2_fake_B_img"].astype(int))
    assert diff.max() <= 3


def test_an_empty_chunk_leaves_the_image_unchanged(translator):
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    empty = -np.ones((1, 32, 32, 4), np.float32)
    out_image, out_masks = translator.translate_batch(image, empty)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_masks, empty)
    # one example with instances in the first chunk only: the second chunk keeps its output
    masks = empty.copy()
    masks[0, 4:20, 4:20, 0] = 1
    once = Translator(translator.spec, translator.generators, ins_per=2, ins_max=2).translate_batch(
        image, masks[..., :2]
    )
    twice = translator.translate_batch(image, masks)
    np.testing.assert_allclose(twice[0], once[0], atol=1e-6)
    np.testing.assert_array_equal(twice[1][..., 2:], -1)


def test_a_translator_for_thresholded_masks_thresholds_what_it_is_given(translator):
    assert not translator.binary_masks  # a converted checkpoint: the authors' soft masks
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    soft = -np.ones((1, 32, 32, 4), np.float32)
    soft[0, 6:18, 6:18, 0] = np.linspace(-0.9, 0.9, 12)  # a ramp across the instance
    thresholded = np.where(soft > 0, 1.0, -1.0).astype(np.float32)
    binary = Translator(translator.spec, translator.generators, ins_per=2, ins_max=4, binary_masks=True)
    for ours, theirs in zip(
        binary.translate_batch(image, soft), translator.translate_batch(image, thresholded), strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)
    assert not np.allclose(translator.translate_batch(image, soft)[0], binary.translate_batch(image, soft)[0])


def test_bad_arguments_are_refused(translator):
    with pytest.raises(ValueError, match="multiple of ins_per"):
        Translator(translator.spec, translator.generators, ins_per=3, ins_max=4)
    with pytest.raises(ValueError, match="multiples of 4"):
        translator.translate_batch(np.zeros((1, 30, 32, 3)), -np.ones((1, 30, 32, 4)))
    with pytest.raises(ValueError, match="direction"):
        translator.translate_batch(np.zeros((1, 32, 32, 3)), -np.ones((1, 32, 32, 4)), "AtoC")


def test_a_bfloat16_translator_stays_near_the_float32_pixels(translator, golden_dir):
    stem = "a2"
    masks = image_io.index_masks(str(golden_dir / "folder" / "testA_seg"))[stem]
    image, mask_arrays = image_io.read_example(str(golden_dir / "folder" / "testA" / f"{stem}.png"), masks, (64, 48))
    fast = Translator(translator.spec, translator.generators, ins_per=2, ins_max=4, compute_dtype="bfloat16")
    assert fast.spec.compute_dtype == "bfloat16" and translator.spec.compute_dtype == "float32"
    out = fast.translate(image, mask_arrays)
    assert out["image"].dtype == np.float32
    golden = np.load(golden_dir / "translate.npz")
    diff = np.abs(image_io.to_uint8(out["image"]).astype(int) - golden["a2_fake_B_img"].astype(int))
    # bfloat16 rounds each layer to 8 significant bits: a few levels apart, not a different picture
    assert 0 < diff.mean() <= 2.5 and diff.max() <= 20, (diff.mean(), diff.max())  # measured: 1.3 and 9
