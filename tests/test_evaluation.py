"""Quality metrics on constructed translations whose scores are known, and evaluate.py end to end."""

import glob
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_config
from PIL import Image

from instagan_jax import evaluation, train, training_data

REPO = pathlib.Path(__file__).resolve().parents[1]
RED, BLUE, GREY = (0.9, 0.1, 0.1), (0.1, 0.2, 0.9), (0.5, 0.55, 0.5)


def picture(shapes, size=32):
    """An image in [-1, 1] on a grey background, and the (H, W, K) masks of the shapes drawn."""
    y, x = np.mgrid[:size, :size] + 0.5
    image = np.broadcast_to(np.array(GREY), (size, size, 3)).copy()
    masks = []
    for kind, cy, cx, r, colour in shapes:
        inside = ((y - cy) ** 2 + (x - cx) ** 2 <= r * r) if kind == "disc" else (abs(y - cy) <= r) & (abs(x - cx) <= r)
        image[inside] = colour
        masks.append(np.where(inside, 1.0, -1.0))
    return image * 2 - 1, np.stack(masks, -1).astype(np.float32)


def test_a_perfect_translation_scores_full_marks_and_the_identity_scores_none():
    discs, disc_masks = picture([("disc", 8, 8, 5, RED), ("disc", 22, 20, 6, RED)])
    squares, square_masks = picture([("square", 8, 8, 5, BLUE), ("square", 22, 20, 6, BLUE)])
    perfect = evaluation.shapes_scores(discs[None], disc_masks[None], squares[None], "A", "B", square_masks[None])
    assert perfect == {"shape_rate": 1.0, "placed_shape_rate": 1.0, "count_preservation": 1.0, "colour_success": 1.0,
                       "background_error": 0.0, "mask_shape_rate": 1.0, "mask_count_preservation": 1.0}  # fmt: skip
    identity = evaluation.shapes_scores(discs[None], disc_masks[None], discs[None], "A", "B")
    assert identity["shape_rate"] == 0.0 and identity["count_preservation"] == 0.0
    assert identity["placed_shape_rate"] == 0.0
    assert identity["colour_success"] == 0.0 and identity["background_error"] == 0.0
    # squares -> discs, with the background brightened by 0.1 (on [0, 1] images)
    brighter = discs.copy()
    brighter[disc_masks.max(-1) < 0] += 0.2
    back = evaluation.shapes_scores(squares[None], square_masks[None], brighter[None], "B", "A")
    assert back["shape_rate"] == 1.0 and back["colour_success"] == 1.0
    assert back["background_error"] == pytest.approx(0.1, abs=1e-6)
    # the dataset-agnostic measure agrees when the masks say where the instances are
    generic = evaluation.background_error(squares[None], square_masks[None], brighter[None], disc_masks[None])
    assert generic == pytest.approx(0.1, abs=1e-6)


def test_merged_instances_and_wrong_shapes_are_counted():
    discs, disc_masks = picture([("disc", 8, 8, 5, RED), ("disc", 22, 20, 6, RED)])
    one_blob, _ = picture([("square", 14, 14, 10, BLUE)])  # two instances became one
    scores = evaluation.shapes_scores(discs[None], disc_masks[None], one_blob[None], "A", "B")
    assert scores["shape_rate"] == 1.0 and scores["count_preservation"] == 0.0
    assert scores["placed_shape_rate"] == 0.5  # the blob stands over one of the two instances
    blue_discs, _ = picture([("disc", 8, 8, 5, BLUE), ("disc", 22, 20, 6, BLUE)])  # colour right, shape not
    scores = evaluation.shapes_scores(discs[None], disc_masks[None], blue_discs[None], "A", "B")
    assert scores["shape_rate"] == 0.0 and scores["colour_success"] == 1.0 and scores["count_preservation"] == 1.0
    assert evaluation.fill_ratio(disc_masks[..., 1] > 0) == pytest.approx(np.pi / 4, abs=0.05)


def test_the_placed_shape_rate_asks_where_the_shapes_are():
    discs, disc_masks = picture([("disc", 8, 8, 5, RED), ("disc", 22, 20, 6, RED)])
    elsewhere, _ = picture([("square", 8, 24, 4, BLUE), ("square", 24, 6, 5, BLUE)])  # right shapes, wrong places
    scores = evaluation.shapes_scores(discs[None], disc_masks[None], elsewhere[None], "A", "B")
    assert scores["shape_rate"] == 1.0 and scores["count_preservation"] == 1.0
    assert scores["placed_shape_rate"] == 0.0
    one_moved, _ = picture([("square", 8, 8, 5, BLUE), ("square", 24, 6, 5, BLUE)])
    scores = evaluation.shapes_scores(discs[None], disc_masks[None], one_moved[None], "A", "B")
    assert scores["placed_shape_rate"] == 0.5
    # a bar grown out of a disc (same centre, about its area) covers half of it: placed
    y, x = np.mgrid[:32, :32] + 0.5
    bar = (abs(y - 16) <= 2.5) & (abs(x - 16) <= 10)
    bars = np.where(bar[..., None], np.array(BLUE), np.array(GREY)) * 2 - 1
    disc, disc_mask = picture([("disc", 16, 16, 7, RED)])
    scores = evaluation.shapes_scores(disc[None], disc_mask[None], bars[None], "A", "B", task="bars")
    assert scores["placed_shape_rate"] == 1.0


def test_the_chosen_task_counts_the_bystanders_a_translation_keeps():
    scene = [("disc", 8, 8, 5, RED), ("disc", 22, 22, 6, RED)]  # the second disc has no mask: a bystander
    discs, masks = picture(scene)
    masks = masks[..., :1]
    perfect, _ = picture([("square", 8, 8, 5, BLUE), scene[1]])
    blind, _ = picture([("square", 8, 8, 5, BLUE), ("square", 22, 22, 6, BLUE)])  # every disc translated
    kept = evaluation.shapes_scores(discs[None], masks[None], perfect[None], "A", "B", task="chosen")
    changed = evaluation.shapes_scores(discs[None], masks[None], blind[None], "A", "B", task="chosen")
    assert kept["bystanders_kept"] == 1.0 and kept["count_preservation"] == 1.0
    assert changed["bystanders_kept"] == 0.0 and changed["count_preservation"] == 0.0
    assert changed["background_error"] == 0.0  # why the bystanders need a score of their own
    assert kept["placed_shape_rate"] == changed["placed_shape_rate"] == 1.0
    assert "bystanders_kept" not in evaluation.shapes_scores(discs[None], masks[None], perfect[None], "A", "B")


def test_the_bars_task_asks_bars_to_be_long_and_discs_to_be_round():
    y, x = np.mgrid[:32, :32] + 0.5
    bar = (abs(y - 16) <= 2) & (abs(x - 16) <= 9)  # 5 x 18
    square = (abs(y - 16) <= 5) & (abs(x - 16) <= 5)
    disc = (y - 16) ** 2 + (x - 16) ** 2 <= 36
    long_ellipse = ((y - 16) / 3) ** 2 + ((x - 16) / 10) ** 2 <= 1
    assert evaluation.has_shape_of(bar, "B", "bars") and evaluation.has_shape_of(bar, "B", "squares")
    assert evaluation.has_shape_of(square, "B", "squares") and not evaluation.has_shape_of(square, "B", "bars")
    assert evaluation.has_shape_of(square, "B", "chosen") and not evaluation.has_shape_of(bar, "A", "chosen")
    assert evaluation.has_shape_of(disc, "A", "bars") and evaluation.has_shape_of(disc, "A", "squares")
    assert evaluation.has_shape_of(long_ellipse, "A", "squares")
    assert not evaluation.has_shape_of(long_ellipse, "A", "bars")


def test_evaluate_scores_a_run_and_writes_the_page(tmp_path, seeded_inception):
    workdir = tmp_path / "run"
    train.train(tiny_config(tmp_path), str(workdir))
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "evaluate.py"), f"--workdir={workdir}", "--steps=all",
         "--num_examples=4", f"--out_dir={out}", f"--fid_weights={seeded_inception}",
         "--fid_weights_sha256=any", "--fid_dims=64"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())
    assert [r["step"] for r in report["results"]] == [2, 4] and report["num_examples"] == 4
    for r in report["results"]:
        for direction in ("AtoB", "BtoA"):
            assert 0.0 <= r[direction]["shape_rate"] <= 1.0 and r[direction]["background_error"] >= 0.0
            assert (out / r["pictures"][direction]).is_file()
            assert r[direction]["fid"] > 0 and np.isfinite(r[direction]["kid"]) and r[direction]["kid_std"] >= 0
    assert 0.5 < report["reference"]["B"]["shape_rate"] <= 1.0  # real squares mostly look like squares
    assert "step4_AtoB.png" in (out / "index.html").read_text()
    chart = np.asarray(Image.open(out / "learning_curves.png"))
    assert (chart[..., :3].std(axis=(0, 1)) > 0).all()  # drawn, not blank
    events = glob.glob(str(out / "events.out.tfevents.*"))
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(events[0]) for v in e.summary.value}
    assert {"AtoB/shape_rate", "BtoA/count_preservation", "AtoB/fid", "BtoA/kid"} <= tags
    missing = subprocess.run([sys.executable, str(REPO / "experiments" / "evaluate.py"), f"--workdir={workdir}",
                              "--steps=3"], cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert missing.returncode != 0 and "no checkpoint [3]" in missing.stderr


def test_perfect_translations_are_of_the_held_out_examples_evaluate_scores(tmp_path):
    config = tiny_config(tmp_path)
    held_out = training_data.held_out_examples(config, str(tmp_path / "run"), "test", 4)
    perfect = training_data.perfect_translations(config, 4)
    for key in ("image_A", "masks_A", "image_B", "masks_B"):
        np.testing.assert_array_equal(perfect[key], held_out[key], err_msg=key)
    out = tmp_path / "ceiling.json"
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "shapes_ceiling.py"), "--num_examples=4",
                           f"--config={REPO / 'experiments' / 'configs' / 'tiny.py'}", f"--json={out}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for direction, scores in json.loads(out.read_text())["perfect_translation"].items():
        assert scores["colour_success"] == 1.0 and scores["background_error"] < 0.01, direction
        assert 0.5 <= scores["mask_shape_rate"] <= 1.0 and 0.0 <= scores["count_preservation"] <= 1.0
    with pytest.raises(ValueError, match="squares and chosen tasks"):
        training_data.perfect_translations(tiny_config(tmp_path, shapes_task="bars"), 4)
