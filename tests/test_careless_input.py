"""Careless and hostile input off the happy path: each case ends in a result that is right or an
error that names what to fix, never a silent wrong result, a lost checkpoint, a hang or a
runaway allocation (RELIABILITY.md, "Careless input")."""

import os
import signal
import subprocess
import sys
import time
import tracemalloc

import ml_collections
import numpy as np
import pytest
from helpers import REPO, tiny_config
from PIL import Image

from instagan_jax import checkpoint, checks, image_io, mask_import, train, training_config, training_data, workdir_lock
from instagan_jax.datasets import builders
from instagan_jax.inference import prepare_masks


def save(array, path, **kwargs):
    Image.fromarray(np.asarray(array, np.uint8)).save(path, **kwargs)
    return str(path)


def box_mask(size_hw, box, value=255):
    mask = np.zeros(size_hw, np.uint8)
    mask[box[0] : box[1], box[2] : box[3]] = value
    return mask


# --- silent wrong results -------------------------------------------------------------------------


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation_and_its_masks_stay_aligned(tmp_path):
    """A phone stores a portrait photo as landscape pixels with orientation 6 ("turn 90 degrees
    clockwise"); viewers and annotation tools show it upright, so its masks are drawn upright."""
    upright = np.zeros((16, 12, 3), np.uint8)
    upright[:4, :, 0] = 255  # a red band at the top of the upright photo
    stored = np.rot90(upright, k=1)  # what the camera wrote: 12 high, 16 wide
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = save(stored, tmp_path / "phone.png", exif=exif)
    mask = save(box_mask((16, 12), (0, 4, 0, 12)), tmp_path / "phone_0.png")  # the band, drawn upright
    image, masks = image_io.read_example(photo, [mask])
    assert image.shape == (16, 12, 3) and masks.shape == (16, 12, 1)
    np.testing.assert_array_equal(image[..., 0] > 0, masks[..., 0] > 0)  # the band is where its mask is


def test_a_mask_painted_on_transparency_is_its_alpha_for_every_reader(tmp_path):
    rgba = np.full((8, 8, 4), 255, np.uint8)  # white everywhere, as painting tools leave the colour
    rgba[..., 3] = box_mask((8, 8), (2, 5, 2, 5))  # the instance is only in the alpha channel
    path = save(rgba, tmp_path / "x_0.png")
    expected = box_mask((8, 8), (2, 5, 2, 5))
    np.testing.assert_array_equal(image_io.read_mask(path), expected)
    photo = save(np.zeros((8, 8, 3)), tmp_path / "x.png")
    np.testing.assert_array_equal(image_io.read_raw_example(photo, [path])[1][0], expected)
    np.testing.assert_array_equal(mask_import.read_label_image(path)[0], expected > 0)
    grey = save(expected, tmp_path / "grey_0.png")  # an opaque mask keeps its grey level
    np.testing.assert_array_equal(image_io.read_mask(grey), expected)


def test_two_photos_of_one_stem_are_refused_naming_both(tmp_path):
    save(np.zeros((8, 8, 3)), tmp_path / "x.png")
    save(np.zeros((8, 8, 3)), tmp_path / "x.jpg")
    with pytest.raises(image_io.DataError, match=r"x.png and .*x.jpg share the name 'x'"):
        image_io.list_images(str(tmp_path))


def test_a_changed_dataset_folder_is_prepared_again_and_never_trains_on_deleted_images(tmp_path):
    root = tmp_path / "root"
    for domain in "AB":
        for stem in ("one", "two"):
            (root / "trainA_seg").mkdir(parents=True, exist_ok=True)
            (root / f"train{domain}").mkdir(exist_ok=True)
            (root / f"train{domain}_seg").mkdir(exist_ok=True)
            save(np.full((8, 8, 3), 60), root / f"train{domain}" / f"{stem}.png")
            save(box_mask((8, 8), (1, 5, 1, 5)), root / f"train{domain}_seg" / f"{stem}_0.png")

    def ids():
        builder = builders.prepare("folder", str(tmp_path / "tfds"), dataroot=str(root))
        return sorted(x["id"].decode() for x in builder.as_dataset(split="trainA").as_numpy_iterator())

    assert ids() == ["one", "two"]
    os.remove(root / "trainA" / "two.png")
    os.remove(root / "trainA_seg" / "two_0.png")
    save(np.full((8, 8, 3), 60), root / "trainA" / "three.png")
    save(box_mask((8, 8), (1, 5, 1, 5)), root / "trainA_seg" / "three_0.png")
    assert ids() == ["one", "three"]


def test_a_data_dir_that_holds_other_files_is_refused(tmp_path):
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("weeks of work")
    config = tiny_config(tmp_path, data_dir=str(foreign))
    with pytest.raises(checks.InputError, match=r"config.data_dir .*home already holds other files \(thesis.tex"):
        training_data.prepare_dataset(config, str(tmp_path / "run"))
    assert os.listdir(foreign) == ["thesis.tex"]


# --- no lost work ---------------------------------------------------------------------------------


def test_a_workdir_is_held_by_one_run_and_a_dead_runs_lock_is_taken_over(tmp_path, caplog):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from instagan_jax import workdir_lock\n"
         f"with workdir_lock.hold({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(600)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        in_use = rf"in use by another training run: host .* pid {holder.pid}"
        with pytest.raises(workdir_lock.WorkdirInUse, match=in_use):
            with workdir_lock.hold(str(tmp_path)):
                pass
        with pytest.raises(workdir_lock.WorkdirInUse):  # train refuses before building anything
            train.train(tiny_config(tmp_path), str(tmp_path))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with workdir_lock.hold(str(tmp_path)):  # the dead holder's lock is taken over, with a line that says so
        assert f'"pid": {os.getpid()}' in (tmp_path / workdir_lock.LOCK_NAME).read_text()
    assert "took over the lock of host" in caplog.text and f"pid {holder.pid}" in caplog.text


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"max_checkpoints_to_keep": 0}, r"max_checkpoints_to_keep must be an integer in \[1, "),
        ({"ins_max": "4"}, r"config.ins_max must be an integer"),
        ({"dataset": "imagenet"}, "config.dataset must be"),
    ],
)
def test_a_hand_edited_config_in_a_workdir_is_named(tmp_path, overrides, message):
    config = tiny_config(tmp_path).to_dict()
    config.update(overrides)
    with pytest.raises(checkpoint.CheckpointError, match=f"run/checkpoints/4: its config cannot be used .*{message}"):
        training_config.stored(config, "run/checkpoints/4")
    del config["ins_max"]
    with pytest.raises(checkpoint.CheckpointError, match="its config cannot be used"):
        training_config.stored(config, "run/checkpoints/4")
    assert isinstance(training_config.stored(tiny_config(tmp_path).to_dict(), "x"), ml_collections.ConfigDict)


def test_a_checkpoint_without_a_network_that_is_asked_for_is_named(tmp_path, converted):
    spec, networks = converted
    checkpoint.save_networks(str(tmp_path), spec, {"G_A": networks["G_A"]})
    with pytest.raises(checkpoint.CheckpointError, match=r"checkpoints/0: holds no network \['G_B'\]"):
        checkpoint.load_networks(str(tmp_path), names=("G_A", "G_B"))


@pytest.mark.parametrize("kind", ["file", "long name"])
def test_a_workdir_that_is_a_file_or_too_long_a_name_is_refused_by_name(tmp_path, kind):
    if kind == "file":
        workdir, message = tmp_path / "run", "--workdir .*run is a file, not a folder"
        workdir.write_text("not a folder")
    else:
        workdir, message = tmp_path / ("r" * 300), "a name of 300 bytes, over the file system's 255"
    with pytest.raises(checks.InputError, match=message):
        train.train(tiny_config(tmp_path), str(workdir))


# --- bounded cost ---------------------------------------------------------------------------------


def test_only_the_masks_a_translation_uses_are_kept_and_they_are_the_same(tmp_path):
    rng = np.random.default_rng(0)
    photo = save(rng.integers(0, 255, (64, 64, 3)), tmp_path / "p.png")
    sides = [10, 30, 20, 40, 20, 5, 35]  # two of equal area: the earlier one wins, as top_k's order
    paths = [save(box_mask((64, 64), (0, s, 0, s)), tmp_path / f"p_{k}.png") for k, s in enumerate(sides)]
    image, every = image_io.read_example(photo, paths)
    kept_image, kept = image_io.read_example(photo, paths, keep=3)
    np.testing.assert_array_equal(image, kept_image)
    assert kept.shape == (64, 64, 3)
    np.testing.assert_array_equal(prepare_masks(kept, 3), prepare_masks(every, 3))
    tracemalloc.start()
    image_io.read_example(photo, paths * 20, keep=2)  # 140 masks: memory of the 2 kept, not of 140
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 24 * 64 * 64 * 4, peak  # the photo, the kept masks and temporaries; all 140 would be 140


def test_one_photos_masks_over_the_mask_pixel_limit_are_refused_before_reading(tmp_path, monkeypatch):
    photo = save(np.zeros((40, 40, 3)), tmp_path / "p.png")
    monkeypatch.setattr(image_io, "MAX_MASK_PIXELS", 3 * 40 * 40)
    masks = [str(tmp_path / f"p_{k}.png") for k in range(4)]  # never written: refused before any is read
    with pytest.raises(image_io.DataError, match=r"p.png: 4 masks of 40x40 pixels are over the limit of 4800"):
        image_io.read_raw_example(photo, masks)


def test_a_translation_that_cannot_fit_in_memory_is_refused_before_it_starts(converted):
    from instagan_jax.inference import Translator

    spec, networks = converted
    translator = Translator(spec, {"G_A": networks["G_A"]}, ins_per=2, ins_max=4, memory_limit_gb=1)
    with pytest.raises(checks.InputError, match=r"translating 20000x20000 pixels needs at least .* over the 1.0 GiB"):
        translator.translate_batch(np.zeros((1, 4, 4, 3)), -np.ones((1, 4, 4, 4)))  # too small to matter
        translator.check_memory((20000, 20000))
    translator.check_memory((64, 64))  # a photo of a usual size passes


def test_thousands_of_shapes_in_one_labelme_instance_are_drawn_in_seconds(tmp_path):
    shapes = [{"label": "x", "shape_type": "rectangle", "group_id": 1, "points": [[i % 3900, i % 3800],
               [i % 3900 + 5, i % 3800 + 5]]} for i in range(3000)]  # fmt: skip
    path = tmp_path / "many.json"
    path.write_text(__import__("json").dumps({"imageHeight": 4000, "imageWidth": 4000, "shapes": shapes}))
    start = time.perf_counter()
    _, masks = mask_import.read_labelme(str(path))
    assert time.perf_counter() - start < 10
    assert masks.shape == (1, 4000, 4000) and masks[0, 100:106, 100:106].all()


@pytest.mark.parametrize(
    "segmentation, message",
    [
        ([[0, 0, 1, 0, 0, 1]] * 100_000, "100000 polygons, over the limit of 10000"),
        ([[0, 0, 7000, 0, 0, 7000]] * 2000, "fill more than 4294967296 pixels of bounding boxes"),
        ([list(range(300_000))], "a polygon needs 3 to 100000 points"),
    ],
)
def test_coco_shapes_that_would_take_hours_to_draw_are_refused_at_once(tmp_path, segmentation, message):
    coco = {"images": [{"id": 1, "file_name": "big.jpg", "height": 7000, "width": 7000}],
            "annotations": [{"image_id": 1, "segmentation": segmentation}]}  # fmt: skip
    path = tmp_path / "coco.json"
    path.write_text(__import__("json").dumps(coco))
    start = time.perf_counter()
    with pytest.raises(image_io.DataError, match=message):
        dict(mask_import.read_coco(str(path)))
    assert time.perf_counter() - start < 30


def test_coco_photos_are_drawn_one_at_a_time_and_a_shared_stem_is_refused(tmp_path):
    polygon = [[1, 1, 6, 1, 6, 6]]
    coco = {"images": [{"id": i, "file_name": f"{i}.jpg", "height": 8, "width": 8} for i in range(3)],
            "annotations": [{"image_id": i, "segmentation": polygon} for i in range(3)]}  # fmt: skip
    path = tmp_path / "coco.json"
    path.write_text(__import__("json").dumps(coco))
    photos = mask_import.read_coco(str(path))
    assert not isinstance(photos, dict)
    assert next(photos)[0] == "0"  # the first photo is ready before the others are drawn
    coco["images"][2]["file_name"] = "train/0.jpg"  # the same stem as val's 0.jpg
    path.write_text(__import__("json").dumps(coco))
    with pytest.raises(image_io.DataError, match=r"images\[2\]: 'train/0.jpg' and '0.jpg' share the name '0'"):
        mask_import.read_coco(str(path))


def test_masks_written_again_replace_the_old_ones_whole(tmp_path):
    three = np.zeros((3, 8, 8), bool)
    mask_import.write_masks(str(tmp_path), "p", three, "run 1")
    mask_import.write_masks(str(tmp_path), "p", three[:1], "run 2")
    mask_import.write_masks(str(tmp_path), "q", three[:2], "run 2")
    assert sorted(os.listdir(tmp_path)) == ["p_0.png", "q_0.png", "q_1.png"]


def test_a_folder_whose_every_image_is_skipped_is_explained(tmp_path):
    root = tmp_path / "root"
    for domain in "AB":
        (root / f"train{domain}").mkdir(parents=True)
        (root / f"train{domain}_seg").mkdir()
        save(np.zeros((8, 8, 3)), root / f"train{domain}" / "only.png")  # no masks: unusable
    with pytest.raises(image_io.DataError, match="trainA: every image was skipped as unusable"):
        builders.prepare("folder", str(tmp_path / "tfds"), dataroot=str(root), skip_bad_files=True)
