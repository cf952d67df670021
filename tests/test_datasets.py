"""tfds builders: the procedural shapes set and the authors' folder layout, with its errors."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from instagan_jax import image_io
from instagan_jax.datasets import builders, shapes


def test_shapes_are_deterministic_and_exact():
    image, masks = shapes.render("A", seed=3, index=7, size=(40, 48))
    again, masks_again = shapes.render("A", seed=3, index=7, size=(40, 48))
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(masks, masks_again)
    assert image.shape == (40, 48, 3) and image.dtype == np.uint8
    assert masks.ndim == 3 and 1 <= masks.shape[0] <= 8 and set(np.unique(masks)) <= {0, 255}
    assert not np.any((masks > 0).sum(0) > 1)  # visible parts: no pixel belongs to two instances


def test_shapes_instance_count_follows_the_requested_range():
    counts = [len(shapes.render("B", 0, i, (96, 96), max_instances=8, min_instances=8)[1]) for i in range(5)]
    assert counts == [8] * 5
    counts = [len(shapes.render("A", 0, i, (64, 64), max_instances=3)[1]) for i in range(30)]
    assert set(counts) == {1, 2, 3}
    with pytest.raises(ValueError, match="min_instances"):
        shapes.render("A", 0, 0, max_instances=2, min_instances=3)


def test_shapes_domains_differ_in_shape_and_colour():
    fill = {"A": [], "B": []}
    hue = {"A": [], "B": []}
    for domain in "AB":
        for i in range(20):
            image, masks = shapes.render(domain, 0, i)
            for m in masks > 0:
                ys, xs = np.nonzero(m)
                fill[domain].append(m.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)))
                r, g, b = image[m].mean(0)
                hue[domain].append(b - r)
    assert np.median(fill["B"]) > 0.95 > 0.85 > np.median(fill["A"])  # squares fill their box, discs ~0.785
    assert max(hue["A"]) < 0 < min(hue["B"])  # red-orange vs blue


def test_the_bars_task_changes_only_domain_b_into_long_bars():
    elongations = []
    for i in range(20):
        image_a, masks_a = shapes.render("A", 0, i, task="bars")
        np.testing.assert_array_equal(image_a, shapes.render("A", 0, i)[0])  # the same discs as in "squares"
        _, masks_b = shapes.render("B", 0, i, max_instances=1, task="bars")  # one bar: nothing occludes it
        ys, xs = np.nonzero(masks_b[0])
        sides = sorted((np.ptp(ys) + 1, np.ptp(xs) + 1))
        elongations.append(sides[1] / sides[0])
    assert np.median(elongations) > 2.5  # drawn 3 to 4.5 times as long as wide, some cut by the border
    with pytest.raises(ValueError, match="task must be one of"):
        shapes.render("B", 0, 0, task="stars")


def write_folder(root, phase="train", n=3, size=(24, 20)):
    for domain in "AB":
        os.makedirs(root / f"{phase}{domain}_seg", exist_ok=True)
        os.makedirs(root / f"{phase}{domain}", exist_ok=True)
        for i in range(n):
            image, masks = shapes.render(domain, 1, i, size)
            Image.fromarray(image).save(root / f"{phase}{domain}" / f"{i:03d}.png")
            for k, m in enumerate(masks):
                Image.fromarray(m).convert("RGB" if k % 2 else "L").save(
                    root / f"{phase}{domain}_seg" / f"{i:03d}_{k}.png"
                )


def prepare_folder(tmp_path, root, **kwargs):
    return builders.prepare("folder", str(tmp_path / "tfds"), dataroot=str(root), **kwargs)


def test_folder_builder_reads_the_authors_layout(tmp_path):
    root = tmp_path / "data"
    write_folder(root, "train")
    write_folder(root, "sample", n=2)
    builder = prepare_folder(tmp_path, root)
    assert sorted(builder.info.splits) == ["sampleA", "sampleB", "trainA", "trainB"]
    example = next(iter(tfds.as_numpy(builder.as_dataset("trainA"))))
    _, masks = shapes.render("A", 1, int(example["id"]), (24, 20))
    assert example["image"].shape == (24, 20, 3)
    np.testing.assert_array_equal(example["masks"][..., 0], masks)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: [os.remove(p) for p in (r / "trainA_seg").glob("001_*")], "001.png: no instance masks"),
        (lambda r: Image.new("L", (5, 5)).save(r / "trainA_seg" / "000_0.png"), "000_0.png: mask is 5x5"),
        (lambda r: (r / "trainB" / "002.png").write_bytes((r / "trainB" / "002.png").read_bytes()[:60]),
         "002.png: unreadable or truncated"),
        (lambda r: Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 20, 3), np.uint8)).save(
            r / "trainB_seg" / "000_0.png"), "000_0.png: does not look like an instance mask"),
        (lambda r: [os.remove(p) for p in (r / "trainA").glob("*.png")], "trainA: no images"),
    ],
)  # fmt: skip
def test_bad_files_are_named(tmp_path, damage, message):
    root = tmp_path / "data"
    write_folder(root)
    damage(root)
    with pytest.raises(image_io.DataError, match=message):
        prepare_folder(tmp_path, root)


def test_skip_bad_files_counts_and_continues(tmp_path, caplog):
    root = tmp_path / "data"
    write_folder(root)
    for p in (root / "trainA_seg").glob("001_*"):
        os.remove(p)
    builder = prepare_folder(tmp_path, root, skip_bad_files=True)
    assert builder.info.splits["trainA"].num_examples == 2
    assert builder.info.splits["trainB"].num_examples == 3
    assert "trainA: skipped 1 unusable images" in caplog.text and "trainB: skipped" not in caplog.text


def test_a_dataroot_without_phase_folders_is_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(image_io.DataError, match="no phase folders"):
        prepare_folder(tmp_path, tmp_path / "empty")
    with pytest.raises(image_io.DataError, match="does not exist"):
        prepare_folder(tmp_path, tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown dataset"):
        builders.prepare("imagenet", str(tmp_path))


def write_coco(root):
    """A two-image COCO 2017 in miniature: polygons for sheep (1) and giraffe (2), one empty box."""
    import json

    for split in ("train", "val"):
        (root / f"{split}2017").mkdir(parents=True)
        images, annotations = [], []
        for i in range(3):
            Image.fromarray(np.full((30, 40, 3), 40 * i, np.uint8)).save(root / f"{split}2017" / f"{i}.jpg")
            images.append({"id": i, "file_name": f"{i}.jpg", "height": 30, "width": 40})
            category = 1 if i < 2 else 2
            poly = [5 + i, 5, 20 + i, 5, 20 + i, 20, 5 + i, 20]
            annotations.append({"id": 10 * i + 1, "image_id": i, "category_id": category, "segmentation": [poly],
                                "area": 225.0, "bbox": [5 + i, 5, 15, 15], "iscrowd": 0})  # fmt: skip
        (root / "annotations").mkdir(exist_ok=True)
        cats = [{"id": 1, "name": "sheep"}, {"id": 2, "name": "giraffe"}]
        payload = {"images": images, "annotations": annotations, "categories": cats}
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(payload))


def test_coco_builder_makes_one_mask_per_instance(tmp_path):
    pytest.importorskip("pycocotools")
    write_coco(tmp_path / "coco")
    coco = builders.CocoConfig(name="sheep_giraffe_16", image_size=16)
    builder = builders.prepare("coco", str(tmp_path / "tfds"), dataroot=str(tmp_path / "coco"), coco=coco)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
        "trainA": 2,
        "trainB": 1,
        "testA": 2,
        "testB": 1,
    }
    example = next(iter(tfds.as_numpy(builder.as_dataset("trainB"))))
    assert example["image"].shape == (16, 16, 3) and example["masks"].shape == (1, 16, 16, 1)
    assert 0 < (example["masks"] > 127).mean() < 1
    # new annotations (here: a sheep of train relabelled as a giraffe) are prepared again, not reused
    annotations = tmp_path / "coco" / "annotations" / "instances_train2017.json"
    original = annotations.read_text()
    annotations.write_text(original.replace('"image_id": 1, "category_id": 1', '"image_id": 1, "category_id": 2'))
    again = builders.prepare("coco", str(tmp_path / "tfds"), dataroot=str(tmp_path / "coco"), coco=coco)
    assert {k: v.num_examples for k, v in again.info.splits.items()} == {
        "trainA": 1,
        "trainB": 2,
        "testA": 2,
        "testB": 1,
    }
    annotations.write_text(original.replace('"category_id": 2', '"category_id": 1'))  # no giraffe left in train
    with pytest.raises(image_io.DataError, match="instances_train2017.json: no image holds a 'giraffe' instance"):
        builders.prepare("coco", str(tmp_path / "tfds"), dataroot=str(tmp_path / "coco"), coco=coco)


@pytest.mark.parametrize("domain", ["A", "B"])
def test_the_chosen_task_adds_unmasked_discs_that_a_translation_keeps(domain):
    from instagan_jax import evaluation

    for index in range(6):
        image, masks = shapes.render(domain, 0, index, (40, 40), max_instances=4, task="chosen")
        plain, plain_masks = shapes.render(domain, 0, index, (40, 40), max_instances=4)
        np.testing.assert_array_equal(masks, plain_masks)  # the same instances as in "squares"
        bystanders = (image != plain).any(-1)
        assert bystanders.any() and not (bystanders & masks.any(0)).any()  # under the instances, without masks
        assert evaluation.coloured_like(image / 127.5 - 1, "A")[bystanders].mean() > 0.95  # discs of A's colours
        translation, counterparts = shapes.render(domain, 0, index, (40, 40), max_instances=4, task="chosen",
                                                  translated=True)  # fmt: skip
        untouched = ~(masks.any(0) | counterparts.any(0))
        np.testing.assert_array_equal(translation[untouched], image[untouched])  # the bystanders stay


@pytest.mark.parametrize("domain", ["A", "B"])
def test_a_perfect_translation_swaps_each_shape_for_its_counterpart_over_the_same_background(domain):
    from instagan_jax import evaluation

    other = "B" if domain == "A" else "A"
    for index in range(6):
        image, masks = shapes.render(domain, 0, index, (40, 40), max_instances=4)
        translation, counterparts = shapes.render(domain, 0, index, (40, 40), max_instances=4, translated=True)
        assert len(counterparts) == len(masks)
        # the last shape is drawn whole: a disc inside its bounding rectangle, an ellipse inside its rectangle
        disc, rectangle = (masks[-1], counterparts[-1]) if domain == "A" else (counterparts[-1], masks[-1])
        assert disc.sum() < rectangle.sum() and not (disc & ~rectangle).any()
        untouched = ~(masks.any(0) | counterparts.any(0))
        np.testing.assert_array_equal(translation[untouched], image[untouched])
        drawn = counterparts.any(0) > 0
        assert evaluation.coloured_like(translation / 127.5 - 1, other)[drawn].mean() > 0.95
    with pytest.raises(ValueError, match="squares"):
        shapes.render("A", 0, 0, task="bars", translated=True)
