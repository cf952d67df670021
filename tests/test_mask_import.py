"""Mask importers (labelme, COCO-style JSON, label images) on small files written here, and the
hostile versions of each: every problem is a DataError naming the file."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from instagan_jax import image_io, mask_import
from instagan_jax.image_io import DataError

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_json(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def labelme(shapes, height=20, width=30, image_path="..\\photos\\cat.jpg"):
    return {"version": "5.4.1", "imagePath": image_path, "imageHeight": height, "imageWidth": width, "shapes": shapes}


def polygon(points, label="cat", group_id=None, shape_type="polygon"):
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type}


def test_labelme_polygons_rectangles_circles_and_groups(tmp_path):
    shapes = [
        polygon([[2, 2], [10, 2], [10, 8], [2, 8]]),  # 9 x 7 pixels, edges included
        polygon([[20, 10], [25, 15]], label="dog", shape_type="rectangle"),
        polygon([[15, 5], [17, 5]], shape_type="circle"),
        polygon([[0, 15], [3, 15], [3, 18]], group_id=7),  # one instance in two parts
        polygon([[26, 1], [29, 1], [29, 4]], group_id=7),
        polygon([[1, 1], [5, 5]], shape_type="line"),  # not an area: skipped
    ]
    stem, masks = mask_import.read_labelme(write_json(tmp_path / "cat.json", labelme(shapes)))
    assert stem == "cat"  # from imagePath, written on Windows
    assert masks.shape == (4, 20, 30) and masks.dtype == bool
    assert masks[0].sum() == 9 * 7 and masks[0][2:9, 2:11].all()
    assert masks[1][10:16, 20:26].all() and masks[1].sum() == 36
    assert masks[2][5, 15] and masks[2][5, 17] and not masks[2][5, 18]
    assert masks[3][16, 2] and masks[3][2, 28] and not masks[3][10, 15]
    _, only_dogs = mask_import.read_labelme(str(tmp_path / "cat.json"), labels={"dog"})
    assert only_dogs.shape == (1, 20, 30) and np.array_equal(only_dogs[0], masks[1])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(imageHeight=-1), "image size must be positive integers"),
        (lambda d: d.update(imageHeight=100_000, imageWidth=100_000), "over the limit"),
        (lambda d: d.pop("shapes"), "missing 'shapes'"),
        (lambda d: d["shapes"].append(polygon([[1, 1], [2, 2]])), r"shapes\[1\]: a polygon needs 3 to 100000 points"),
        (lambda d: d["shapes"].append(polygon([[1, 1], [2, "x"], [3, 3]])), "pairs of numbers"),
        (lambda d: d["shapes"].append(polygon([[1, 1], [2, 1e300], [3, 3]])), "not finite or beyond"),
        (lambda d: d["shapes"].append(polygon([[1, 1], [2, 2], [3, 3]], shape_type="mask")), "shape_type 'mask'"),
        (lambda d: d["shapes"].append({"points": []}), "missing 'label'"),
        (lambda d: d["shapes"].extend(polygon([[0, 0], [1, 0], [1, 1]]) for _ in range(300)), "257 instances is over"),
    ],
)
def test_hostile_labelme_files_are_refused_naming_the_file(tmp_path, change, message):
    data = labelme([polygon([[2, 2], [10, 2], [10, 8]])])
    change(data)
    path = write_json(tmp_path / "bad.json", data)
    with pytest.raises(DataError, match=message) as error:
        mask_import.read_labelme(path)
    assert path in str(error.value)


def coco(annotations, categories=({"id": 1, "name": "sheep"}, {"id": 2, "name": "dog"})):
    images = [{"id": 1, "file_name": "a/sheep1.jpg", "height": 10, "width": 8},
              {"id": 2, "file_name": "sheep2.jpg", "height": 10, "width": 8}]  # fmt: skip
    return {"images": images, "annotations": annotations, "categories": list(categories)}


def test_coco_polygons_and_rle_per_image(tmp_path):
    from pycocotools import mask as coco_mask

    square = np.zeros((10, 8), np.uint8)
    square[1:4, 2:6] = 1
    compressed = coco_mask.encode(np.asfortranarray(square))
    uncompressed_runs = [10 * 2 + 1, 3, 7, 3, 7, 3, 7, 3, 6 + 10 * 2]  # the same square, column-major
    annotations = [
        {"image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[0, 5, 3, 5, 3, 8, 0, 8]]},
        {"image_id": 1, "category_id": 2, "iscrowd": 0,
         "segmentation": {"size": [10, 8], "counts": compressed["counts"].decode()}},
        {"image_id": 2, "category_id": 1, "iscrowd": 0, "segmentation": {"size": [10, 8], "counts": uncompressed_runs}},
        {"image_id": 2, "category_id": 1, "iscrowd": 1, "segmentation": [[0, 0, 7, 0, 7, 9]]},  # a crowd: skipped
    ]  # fmt: skip
    path = write_json(tmp_path / "instances.json", coco(annotations))
    masks = dict(mask_import.read_coco(path))
    assert sorted(masks) == ["sheep1", "sheep2"]
    assert masks["sheep1"].shape == (2, 10, 8) and masks["sheep2"].shape == (1, 10, 8)
    assert masks["sheep1"][0][5:9, 0:4].all() and masks["sheep1"][0].sum() == 16
    np.testing.assert_array_equal(masks["sheep1"][1], square.astype(bool))
    np.testing.assert_array_equal(masks["sheep2"][0], square.astype(bool))
    only_dogs = dict(mask_import.read_coco(path, categories={"dog"}))
    assert list(only_dogs) == ["sheep1"] and only_dogs["sheep1"].shape == (1, 10, 8)
    with pytest.raises(DataError, match=r"no categories \['cat'\]"):
        dict(mask_import.read_coco(path, categories={"cat"}))


@pytest.mark.parametrize(
    "annotation, message",
    [
        ({"image_id": 9, "segmentation": [[0, 0, 1, 0, 1, 1]]}, "image_id 9 is not in images"),
        ({"image_id": 1, "segmentation": {"size": [10, 8], "counts": [5, 5]}}, "summing to 10 x 8"),
        ({"image_id": 1, "segmentation": {"size": [4, 4], "counts": [16]}}, "differs from its image"),
        ({"image_id": 1, "segmentation": {"size": [10, 8], "counts": "\u00e9\u00e9"}}, "compressed RLE"),
        ({"image_id": 1, "segmentation": "everything"}, "polygons or RLE"),
        ({"image_id": 1, "segmentation": []}, "empty segmentation"),
    ],
)
def test_hostile_coco_annotations_are_refused_naming_the_annotation(tmp_path, annotation, message):
    path = write_json(tmp_path / "bad.json", coco([annotation]))
    with pytest.raises(DataError, match=message) as error:
        dict(mask_import.read_coco(path))
    assert f"{path}: annotations[0]" in str(error.value)


def test_label_images_grey_palette_and_colour(tmp_path):
    labels = np.zeros((6, 7), np.uint8)
    labels[0:2, 0:3], labels[3:6, 4:7] = 3, 1
    Image.fromarray(labels).save(tmp_path / "grey.png")
    palette = Image.fromarray(labels, mode="L").convert("P")
    palette.putpalette([0, 0, 0, 200, 10, 10, 0, 0, 0, 10, 200, 10] + [0] * 756)
    palette.save(tmp_path / "palette.png")
    colours = np.zeros((6, 7, 3), np.uint8)
    colours[0:2, 0:3], colours[3:6, 4:7] = (255, 0, 0), (0, 0, 255)
    Image.fromarray(colours).save(tmp_path / "colour.png")
    for name in ("grey", "palette", "colour"):
        masks = mask_import.read_label_image(str(tmp_path / f"{name}.png"))
        assert masks.shape == (2, 6, 7), name
        assert {int(m.sum()) for m in masks} == {6, 9}, name  # the two instances, whatever their order
        assert not (masks[0] & masks[1]).any()


def test_write_masks_names_files_as_the_authors_and_refuses_unsafe_stems(tmp_path):
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0] = masks[1, 3, 3] = True
    paths = mask_import.write_masks(str(tmp_path / "seg"), "cat", masks, "source.json")
    assert [pathlib.Path(p).name for p in paths] == ["cat_0.png", "cat_1.png"]
    assert image_io.index_masks(str(tmp_path / "seg")) == {"cat": paths}
    assert np.asarray(Image.open(paths[1]))[3, 3] == 255 and np.asarray(Image.open(paths[1])).sum() == 255
    for stem in ("", "..", "a/b", "x" * 300):
        with pytest.raises(DataError, match="source.json: .* cannot name a mask file"):
            mask_import.write_masks(str(tmp_path / "seg"), stem, masks, "source.json")


def run_import(*args):
    return subprocess.run([sys.executable, str(REPO / "experiments" / "import_masks.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_the_command_imports_a_folder_and_refuses_to_mix_with_old_masks(tmp_path):
    folder = tmp_path / "annotations"
    folder.mkdir()
    for name in ("a", "b"):
        write_json(folder / f"{name}.json", labelme([polygon([[1, 1], [6, 1], [6, 6]])], image_path=f"{name}.jpg"))
    write_json(folder / "c.json", labelme([], image_path="c.jpg"))
    out = tmp_path / "testA_seg"
    done = run_import("--format=labelme", f"--input={folder}", f"--output_dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Wrote 2 masks of 2 photos" in done.stdout and "1 photos had no instance" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["a_0.png", "b_0.png"]
    again = run_import("--format=labelme", f"--input={folder}", f"--output_dir={out}")
    assert again.returncode == 1 and "already holds masks of 'a'" in again.stderr
    broken = run_import("--format=coco", f"--input={write_json(tmp_path / 'x.json', [1, 2])}", f"--output_dir={out}")
    assert (
        broken.returncode == 1 and broken.stderr.startswith("error: ") and "x.json: missing 'images'" in broken.stderr
    )
