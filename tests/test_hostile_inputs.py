"""Hostile images, masks, dataset folders and workdirs: each ends in an error naming the file,
never a traceback from inside PIL/orbax/tensorstore, never a hang, never code run."""

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from instagan_jax import checkpoint, image_io
from instagan_jax.datasets import builders

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def png_header_only(path, width, height):
    """A PNG that declares width x height but holds no pixel data: a bomb's cheap first step."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return str(path)


def an_example(folder, stem="0001", n_masks=1, size=(16, 12)):
    """An image and its masks written in the authors' layout under ``folder``; returns their paths."""
    os.makedirs(folder / "trainA", exist_ok=True)
    os.makedirs(folder / "trainA_seg", exist_ok=True)
    image = folder / "trainA" / f"{stem}.png"
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(image)
    masks = []
    for k in range(n_masks):
        masks.append(folder / "trainA_seg" / f"{stem}_{k}.png")
        m = np.zeros(size, np.uint8)
        m[2:6, 2:6] = 255
        Image.fromarray(m).save(masks[-1])
    return str(image), [str(m) for m in masks]


@pytest.mark.parametrize(
    "width, height, message",
    [
        (8000, 8000, "8000x8000 pixels is over the limit of 50000000"),  # ours, before decoding
        (100_000, 100_000, "over the pixel limit"),  # PIL's own bomb error, caught and named
    ],
)
def test_decompression_bombs_are_refused_before_decoding(tmp_path, width, height, message):
    path = png_header_only(tmp_path / "bomb.png", width, height)
    with pytest.raises(image_io.DataError, match=f"bomb.png: .*{message}"):
        image_io.open_image(path, "RGB")


def test_content_decides_not_the_name(tmp_path):
    eps = tmp_path / "eps.png"  # PIL's EPS plugin would hand this to Ghostscript
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(image_io.DataError, match="eps.png: not a PNG/JPEG/BMP/PPM/TIFF image, whatever its name"):
        image_io.open_image(str(eps), "RGB")
    noise = tmp_path / "noise.png"
    noise.write_bytes(os.urandom(2048))
    with pytest.raises(image_io.DataError, match="noise.png: not a PNG"):
        image_io.open_image(str(noise), "L")
    jpeg = tmp_path / "really_a_jpeg.png"
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(jpeg, format="JPEG")
    assert image_io.open_image(str(jpeg), "RGB").size == (8, 8)  # an image is an image


def test_16_bit_and_float_pixels_are_refused_by_mode(tmp_path):
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(deep)
    with pytest.raises(image_io.DataError, match="deep.png: pixel mode I;16 .* save as 8-bit"):
        image_io.open_image(str(deep), "L")
    floats = tmp_path / "floats.tif"
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(floats)
    with pytest.raises(image_io.DataError, match="floats.tif: pixel mode F"):
        image_io.open_image(str(floats), "RGB")
    palette = tmp_path / "palette.png"
    Image.fromarray(np.eye(8, dtype=np.uint8) * 255).convert("P").save(palette)
    assert np.asarray(image_io.open_image(str(palette), "L")).max() == 255  # 8-bit modes still work


def test_thousands_of_masks_for_one_image_are_refused_before_reading_them(tmp_path):
    image, masks = an_example(tmp_path, n_masks=1)
    many = masks * (image_io.MAX_MASKS_PER_IMAGE + 1)
    with pytest.raises(image_io.DataError, match="0001.png: 257 instance masks, over the limit of 256"):
        image_io.read_raw_example(image, many)


def test_links_out_of_the_dataset_are_refused_and_skippable(tmp_path):
    root = tmp_path / "data"
    an_example(root, "0001")
    an_example(root, "0002")
    secret = tmp_path / "secret.png"
    Image.fromarray(np.zeros((16, 12), np.uint8)).save(secret)
    os.remove(root / "trainA_seg" / "0002_0.png")
    os.symlink(secret, root / "trainA_seg" / "0002_0.png")
    image_path = str(root / "trainA" / "0002.png")
    with pytest.raises(image_io.DataError, match=r"0002_0.png: a link to .*secret.png, outside its folder"):
        image_io.read_raw_example(image_path, [str(root / "trainA_seg" / "0002_0.png")])
    os.symlink("0001_0.png", root / "trainA_seg" / "0003_0.png")  # a link inside the folder is fine
    assert image_io.read_raw_example(image_path, [str(root / "trainA_seg" / "0003_0.png")])[1].shape == (1, 16, 12)
    os.remove(root / "trainA_seg" / "0003_0.png")
    for domain in ("B", "B_seg"):  # the builder wants both domains
        shutil.copytree(root / f"trainA{domain[1:]}", root / f"train{domain}", symlinks=True)
    with pytest.raises(image_io.DataError, match="outside its folder"):
        builders.prepare("folder", str(tmp_path / "tfds"), dataroot=str(root))
    builder = builders.prepare("folder", str(tmp_path / "tfds_skip"), dataroot=str(root), skip_bad_files=True)
    assert builder.info.splits["trainA"].num_examples == 1


def test_a_fifo_named_like_an_image_is_refused_without_blocking(tmp_path):
    image, _ = an_example(tmp_path)
    fifo = tmp_path / "trainA_seg" / "0001_1.png"
    os.mkfifo(fifo)
    code = f"from instagan_jax import image_io; image_io.read_raw_example({image!r}, [{str(fifo)!r}])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "0001_1.png: not a regular file" in done.stderr


def test_translate_cli_reports_a_bad_image_in_one_line(converted_workdir, tmp_path):
    root = tmp_path / "data"
    an_example(root, size=(16, 12))
    (root / "trainA" / "0002.png").write_bytes(b"<html>not an image</html>")
    (root / "trainA_seg" / "0002_0.png").write_bytes(b"")
    cmd = [sys.executable, os.path.join(REPO, "experiments", "translate.py"), f"--workdir={converted_workdir}",
           f"--dataroot={root}", "--phase=train", f"--output_dir={tmp_path / 'out'}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "0002.png: not a PNG/JPEG/BMP/PPM/TIFF image" in done.stderr and "Traceback" not in done.stderr


def _damaged_copy(workdir, tmp_path, relative, content):
    copy = tmp_path / "workdir"
    shutil.copytree(workdir, copy)
    (copy / "checkpoints" / "0" / relative).write_text(content)
    return str(copy)


@pytest.mark.parametrize(
    "relative, content, message",
    [
        ("model_spec/metadata", "{not json", "model_spec .JSONDecodeError"),
        ("model_spec/metadata", "DEEP", "model_spec .RecursionError"),
        ("model_spec/metadata", '{"model": "insta_gan", "ngf": 1000000000}', "ngf must be an integer in .1, 256."),
        ("model_spec/metadata", '{"model": "insta_gan", "ngf": "4"}', "ngf must be an integer"),
        ("model_spec/metadata", '{"model": "insta_gan", "__class__": 1}', r"unknown model-spec keys \['__class__'\]"),
        ("model_spec/metadata", '["insta_gan"]', "a model spec is a JSON object, got a list"),
        ("model_spec/metadata", json.dumps({"model": "insta_gan", "ngf": 8, "ndf": 4}), r"is stored as \(.*implies"),
        ("networks/_METADATA", "garbage", "networks .JSONDecodeError"),
        ("networks/_METADATA", "{}", "networks .KeyError"),
        ("networks/manifest.ocdbt", "garbage", "networks .ValueError: DATA_LOSS"),
    ],
)
def test_hostile_workdirs_end_in_a_checkpoint_error_naming_the_folder(
    converted_workdir, tmp_path, relative, content, message
):
    content = "[" * 100_000 + "]" * 100_000 if content == "DEEP" else content  # nesting past the recursion limit
    workdir = _damaged_copy(converted_workdir, tmp_path, relative, content)
    with pytest.raises(checkpoint.CheckpointError, match=f"workdir/checkpoints/0: .*{message}"):
        checkpoint.load_networks(workdir)


def test_damaged_array_data_is_named(converted_workdir, tmp_path):
    workdir = tmp_path / "workdir"
    shutil.copytree(converted_workdir, workdir)
    for data in (workdir / "checkpoints" / "0" / "networks").glob("ocdbt.process_0/d/*"):
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(checkpoint.CheckpointError, match="checkpoints/0: cannot read its networks"):
        checkpoint.load_networks(str(workdir))


def test_a_config_that_is_not_an_object_is_refused(converted_workdir, tmp_path):
    workdir = tmp_path / "workdir"
    shutil.copytree(converted_workdir, workdir)
    (workdir / "checkpoints" / "0" / "config").mkdir()
    (workdir / "checkpoints" / "0" / "config" / "metadata").write_text("[1, 2]")
    with pytest.raises(checkpoint.CheckpointError, match="its config is a list, not an object"):
        checkpoint.load_config(str(workdir))
    (workdir / "checkpoints" / "0" / "config" / "metadata").write_text('{"a": ')
    with pytest.raises(checkpoint.CheckpointError, match="cannot read its config .JSONDecodeError"):
        checkpoint.load_config(str(workdir))
