"""Exported programs (jax.export): the same numbers as Translator and MaskPredictor, read back
from their files with metadata, and damaged or foreign files named."""

import dataclasses
import json
import os
import subprocess
import sys
import zipfile

import chex
import jax
import numpy as np
import pytest
from helpers import REPO
from PIL import Image

from instagan_jax import checkpoint, export, models
from instagan_jax.inference import Translator, prepare_masks
from instagan_jax.mask_prediction import MaskPredictor, load_masker

SIZE = 16
# A Python whose environment holds requirements-serve.txt alone (.ci/run makes one); unset, the
# serving test blocks the imports of jax and this package instead.
SERVE_PYTHON = os.environ.get("INSTAGAN_SERVE_PYTHON")


def photos_and_masks(ins_max: int):
    """Three photos: every slot holding an instance (in no order), none at all, one instance."""
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (3, SIZE, SIZE, 3)).astype(np.float32)
    masks = -np.ones((3, SIZE, SIZE, ins_max), np.float32)
    y, x = np.mgrid[:SIZE, :SIZE]
    for k in range(ins_max):
        masks[0, ..., k] = np.where((y - 2 * k - 3) ** 2 + (x - 8) ** 2 <= (k + 2) ** 2, 1.0, -1.0)
    masks[2, 4:9, 4:12, ins_max - 1] = 1.0
    return images, masks


@pytest.fixture(scope="module")
def default_architecture_workdir(tmp_path_factory) -> str:
    """The default config's generator (resize-convolution upsampling, a narrow mask encoder), fresh weights."""
    spec = models.ModelSpec(ngf=4, ndf=4, n_blocks=1, ngf_mask=2, upsample="resize_conv")
    workdir = str(tmp_path_factory.mktemp("default_architecture"))
    checkpoint.save_networks(workdir, spec, models.init_networks(spec, jax.random.PRNGKey(1), 32, 32, 2), step=7)
    return workdir


@pytest.mark.parametrize("which", ["converted", "default_architecture"])
@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_an_exported_translator_computes_what_the_translator_does(
    which, direction, converted_workdir, default_architecture_workdir, tmp_path
):
    workdir = converted_workdir if which == "converted" else default_architecture_workdir
    translator = Translator.from_workdir(workdir, ins_per=2, ins_max=4)
    path = str(tmp_path / "translator.zip")
    metadata = export.translator_metadata(translator, direction, checkpoint.complete_steps(workdir)[-1])
    export.save_program(path, export.export_translator(translator, direction, SIZE, SIZE), metadata)
    program, stored = export.load_program(path)
    assert stored["direction"] == direction and stored["ins_max"] == 4 and stored["model_spec"]["ngf"] == 4
    assert stored["step"] == (0 if which == "converted" else 7) and stored["package_version"]
    assert stored["input_shapes"][0] == f"(batch, {SIZE}, {SIZE}, 3)"

    images, masks = photos_and_masks(4)
    out_images, out_masks = program.call(images, masks)
    prepared = np.stack([prepare_masks(m, 4) for m in masks])
    expected_images, expected_masks = translator.translate_batch(images, prepared, direction)
    chex.assert_shape([out_images, out_masks], [(3, SIZE, SIZE, 3), (3, SIZE, SIZE, 4)])
    np.testing.assert_allclose(out_images, expected_images, atol=2e-6)
    np.testing.assert_allclose(out_masks, expected_masks, atol=2e-6)
    with pytest.raises(ValueError, match=r"Shape mismatch for args\[0\].shape\[1\]"):
        program.call(images[:, :8], masks)  # a photo of another size: JAX names the argument and the axis
    one_image, one_masks = program.call(images[1:2], masks[1:2])  # any batch size; an empty set alone
    np.testing.assert_allclose(one_image, translator.translate_batch(images[1:2], prepared[1:2], direction)[0],
                               atol=2e-6)  # fmt: skip


def test_an_exported_masker_predicts_what_the_predictor_does(masker_workdir, tmp_path):
    import onnxruntime  # the export extra (requirements-dev.txt)

    spec, params = load_masker(str(masker_workdir / "run"))
    spec = dataclasses.replace(spec, centre_threshold=0.0)  # a masker trained 2 steps: every peak an instance
    images = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    for scale in (1, 2):
        predictor = MaskPredictor(spec, params, scale=scale)
        expected = predictor(images)
        assert (expected > 0).any(axis=(1, 2)).sum() >= 4  # instances found in both photos
        path = str(tmp_path / f"masker{scale}.zip")
        export.save_program(
            path, export.export_masker(predictor, 32, 32, batch=2), export.masker_metadata(predictor, 2)
        )
        program, stored = export.load_program(path)
        assert stored["computes"] == "masker" and stored["scale"] == scale
        np.testing.assert_array_equal(program.call(images), expected)
        if scale == 1:  # any batch: one photo, then both
            model = export.export_masker_onnx(predictor, 32, 32, export.masker_metadata(predictor, 2))
            session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            np.testing.assert_array_equal(session.run(None, {"images": images[:1]})[0], expected[:1])
            np.testing.assert_array_equal(session.run(None, {"images": images})[0], expected)
        else:
            with pytest.raises(ValueError, match="ONNX masker is exported at scale 1, not 2"):
                export.export_masker_onnx(predictor, 32, 32, export.masker_metadata(predictor, 2))
    with pytest.raises(ValueError, match="fixed scale"):
        export.export_masker(MaskPredictor(spec, params), 32, 32)


def test_a_program_file_that_is_damaged_or_foreign_is_named(converted_workdir, tmp_path):
    not_a_zip = tmp_path / "photo.zip"
    not_a_zip.write_bytes(b"\x89PNG\r\n" + bytes(100))
    with pytest.raises(export.ProgramError, match=r"photo.zip: cannot read it as a program file"):
        export.load_program(str(not_a_zip))
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("evil.py", "import os")
    with pytest.raises(export.ProgramError, match=r"foreign.zip: not a program file .*evil.py"):
        export.load_program(str(foreign))
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w") as archive:
        archive.writestr(export.METADATA, '{"format": "jax.export"}')
        archive.writestr(export.PROGRAM, bytes(range(256)) * 4)
    with pytest.raises(export.ProgramError, match=r"damaged.zip: its program cannot be deserialized"):
        export.load_program(str(damaged))
    os.mkfifo(tmp_path / "fifo.zip")
    with pytest.raises(export.ProgramError, match=r"fifo.zip: not a regular file"):
        export.load_program(str(tmp_path / "fifo.zip"))
    translator = Translator.from_workdir(converted_workdir, ins_per=2, ins_max=4)
    with pytest.raises(ValueError, match="multiples of 4"):
        export.export_translator(translator, "AtoB", 18, 16)


def test_the_command_exports_a_program_that_runs_with_jax_alone(converted_workdir, tmp_path):
    path = tmp_path / "translator.zip"
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "export.py"), f"--workdir={converted_workdir}",
                           "--direction=BtoA", f"--height={SIZE}", f"--width={SIZE}", "--ins_max=4", "--batch=3",
                           f"--output={path}"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    images, masks = photos_and_masks(4)
    np.save(tmp_path / "images.npy", images), np.save(tmp_path / "masks.npy", masks)
    standalone = (
        "import sys, zipfile; sys.modules['instagan_jax'] = None  # importing the package would fail\n"
        "import jax, numpy as np\n"
        f"program = jax.export.deserialize(bytearray(zipfile.ZipFile({str(path)!r}).read('program.bin')))\n"
        "images, masks = program.call(np.load('images.npy'), np.load('masks.npy'))\n"
        "np.save('out.npy', np.asarray(images))\n"
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-c", standalone], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    translator = Translator.from_workdir(converted_workdir, ins_per=2, ins_max=4)
    prepared = np.stack([prepare_masks(m, 4) for m in masks])
    expected = translator.translate_batch(images, prepared, "BtoA")[0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=2e-6)


def test_an_onnx_translator_computes_what_the_translator_does(default_architecture_workdir):
    import onnxruntime  # the export extra (requirements-dev.txt)

    translator = Translator.from_workdir(default_architecture_workdir, ins_per=2, ins_max=4)
    metadata = export.translator_metadata(translator, "BtoA", 7)
    model = export.export_translator_onnx(translator, "BtoA", SIZE, SIZE, metadata)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    stored = json.loads(session.get_modelmeta().custom_metadata_map["instagan_jax"])
    assert stored["format"] == "onnx" and stored["direction"] == "BtoA" and stored["step"] == 7
    images, masks = photos_and_masks(4)
    prepared = np.stack([prepare_masks(m, 4) for m in masks])
    for batch in (slice(0, 3), slice(1, 2)):  # any batch size; an empty mask set alone skips every chunk
        out_images, out_masks = session.run(None, {"images": images[batch], "masks": masks[batch]})
        expected_images, expected_masks = translator.translate_batch(images[batch], prepared[batch], "BtoA")
        np.testing.assert_allclose(out_images, expected_images, atol=2e-5)
        np.testing.assert_allclose(out_masks, expected_masks, atol=2e-5)
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument, match="images"):
        session.run(None, {"images": images[:, :8], "masks": masks})  # a wrong size, named by the runtime


def test_a_folder_is_served_with_onnxruntime_alone_as_translate_py_translates_it(converted_workdir, masker_workdir,
                                                                                  tmp_path):  # fmt: skip
    rng = np.random.default_rng(2)
    for folder in ("testA", "testA_seg"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    for stem, count in (("p0", 3), ("p1", 1), ("p2", 5)):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8)).save(
            tmp_path / "data" / "testA" / f"{stem}.png"
        )
        for k in range(count):
            mask = np.zeros((SIZE, SIZE), np.uint8)
            mask[k : k + 4 + k, 2 * k : 2 * k + 5] = 255
            Image.fromarray(mask).save(tmp_path / "data" / "testA_seg" / f"{stem}_{k}.png")
    model = tmp_path / "a2b.onnx"
    tool = lambda name, *args: subprocess.run([sys.executable, str(REPO / "experiments" / f"{name}.py"), *args],
                                              capture_output=True, text=True, timeout=600)  # fmt: skip
    done = tool("export", f"--workdir={converted_workdir}", "--format=onnx", f"--height={SIZE}", f"--width={SIZE}",
                "--ins_max=4", f"--output={model}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    done = tool("translate", f"--workdir={converted_workdir}", f"--dataroot={tmp_path / 'data'}", "--ins_max=4",
                f"--output_dir={tmp_path / 'ours'}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]

    def serve(dataroot, output, *extra):
        args = [f"--model={model}", f"--dataroot={dataroot}", f"--output_dir={output}", *extra]
        script = str(REPO / "experiments" / "serve_onnx.py")
        if SERVE_PYTHON:  # a venv holding requirements-serve.txt alone
            command = [SERVE_PYTHON, script, *args]
        else:  # here: jax and this package made unimportable, as serving needs neither
            blocked = "import runpy, sys; sys.modules['jax'] = sys.modules['instagan_jax'] = None\n"
            run = f"sys.argv = ['serve_onnx.py', *{args!r}]\nrunpy.run_path({script!r}, run_name='__main__')"
            command = [sys.executable, "-c", blocked + run]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "translated 3 photos" in done.stdout

    if SERVE_PYTHON:
        assert subprocess.run([SERVE_PYTHON, "-c", "import jax"], capture_output=True).returncode != 0

    def assert_same_files(a, b, tolerance):
        for stem in ("p0", "p1", "p2"):
            for kind in ("img", "seg"):
                name = f"{stem}_fake_B_{kind}.png"
                first, second = (np.asarray(Image.open(tmp_path / d / name), np.int16) for d in (a, b))
                assert np.abs(first - second).max() <= tolerance, name

    serve(tmp_path / "data", tmp_path / "served")
    assert_same_files("ours", "served", 1)
    # With an ONNX masker: the same files as serving the masks it predicts, written as a _seg folder.
    spec, params = load_masker(str(masker_workdir / "run"))
    predictor = MaskPredictor(dataclasses.replace(spec, centre_threshold=0.0), params, scale=1)
    masker_model = export.export_masker_onnx(predictor, SIZE, SIZE, export.masker_metadata(predictor, 2))
    (tmp_path / "masker.onnx").write_bytes(masker_model.SerializeToString())
    (tmp_path / "predicted" / "testA_seg").mkdir(parents=True)
    os.symlink(tmp_path / "data" / "testA", tmp_path / "predicted" / "testA")
    for stem in ("p0", "p1", "p2"):
        photo = np.asarray(Image.open(tmp_path / "data" / "testA" / f"{stem}.png"), np.float32) / 127.5 - 1
        for k, mask in enumerate(np.moveaxis(predictor(photo[None])[0][..., :4], -1, 0)):
            if (mask > 0).any():
                Image.fromarray(((mask > 0) * 255).astype(np.uint8)).save(
                    tmp_path / "predicted" / "testA_seg" / f"{stem}_{k}.png"
                )
    assert len(os.listdir(tmp_path / "predicted" / "testA_seg")) >= 3
    serve(tmp_path / "data", tmp_path / "served_masker", f"--masker={tmp_path / 'masker.onnx'}")
    serve(tmp_path / "predicted", tmp_path / "served_predicted")
    assert_same_files("served_masker", "served_predicted", 0)
