"""A trained translator or masker as a file that runs without this package or its checkpoint.

``export_translator`` and ``export_masker`` trace the same functions ``Translator`` and
``MaskPredictor`` run (the sequential chunks as one scan, empty chunks skipped) with the
weights as constants, through ``jax.export``: StableHLO with its calling convention, which
JAX promises to load and run for at least six months after the JAX release that wrote it
(jax.export's compatibility guarantee). A program file is a zip of ``program.bin``
(``jax.export.serialize``) and ``metadata.json`` (what it computes, its inputs and outputs,
the spec, the checkpoint's step, the package's version); ``load_program`` reads one back,
checking both, and a user with only JAX installed reads it with zipfile and
``jax.export.deserialize``.

Inputs and outputs are float32 in [-1, 1], NHWC, as ``Translator.translate_batch`` takes
them; a translator's masks are the photo's instance masks in any order, empty slots all -1:
the program sorts them as translate.py does. The batch dimension is symbolic unless a batch
size is given. ``export_translator_onnx`` and ``export_masker_onnx`` write the same functions
as ONNX models, for runtimes without JAX (experiments/serve_onnx.py).
"""

from __future__ import annotations

import dataclasses
import json
import zipfile

import jax
import jax.numpy as jnp

import instagan_jax
from instagan_jax import checks, convolution, domains, inference, mask_prediction, masks
from instagan_jax.json_files import MAX_JSON_BYTES, write_whole

PROGRAM, METADATA = "program.bin", "metadata.json"
PROGRAM_LIMIT_BYTES = 4 << 30  # a program holds its weights: the paper's generators are about 100 MB


class ProgramError(checks.InputError):
    """A program file that cannot be used; the message names the file."""


def _batch_dimension(batch: int | None):
    if batch is None:
        return jax.export.symbolic_shape("batch")[0]
    if not (type(batch) is int and batch >= 1):
        raise checks.InputError(f"batch must be a positive integer or None (any batch), got {batch!r}")
    return batch


def _translation(translator: inference.Translator, direction: str, unroll: bool = False):
    """What a translator's program computes: the masks sorted as translate.py sorts them, then translated."""
    variables = translator.generators[domains.generator(direction)]

    def translate(images, instance_masks):
        ordered = masks.largest_first(instance_masks, translator.ins_max)
        if translator.binary_masks:
            ordered = jnp.where(ordered > 0, 1.0, -1.0)
        return inference.translate_function(translator.spec, variables, images, ordered, translator.ins_per, unroll)

    return translate


def export_translator(
    translator: inference.Translator, direction: str, height: int, width: int, batch: int | None = None
) -> jax.export.Exported:
    """(images (B, H, W, 3), masks (B, H, W, ins_max)) -> (translated images, translated masks)."""
    checks.check_image_size(height, width)
    b = _batch_dimension(batch)
    shapes = [jax.ShapeDtypeStruct((b, height, width, c), jnp.float32) for c in (3, translator.ins_max)]
    return jax.export.export(jax.jit(_translation(translator, direction)))(*shapes)


def export_translator_onnx(
    translator: inference.Translator, direction: str, height: int, width: int, metadata: dict,
    batch: int | None = None,
):  # fmt: skip
    """The same translation as an ONNX model. The chunks are unrolled, each behind an If that
    skips it when the whole batch has no instance there: jax2onnx's Loop for the rolled loop is
    one onnxruntime refuses. Inputs "images" and "masks", outputs "translated" and "translated_masks"."""
    checks.check_image_size(height, width)
    return _onnx_model(_translation(translator, direction, unroll=True),
                       [(height, width, 3), (height, width, translator.ins_max)], batch, "instagan_translator",
                       ["images", "masks"], ["translated", "translated_masks"], metadata)  # fmt: skip


def _masker_prediction(predictor: mask_prediction.MaskPredictor):
    """What a masker's program computes: images -> masks at the predictor's fixed scale."""
    if predictor.scale == "auto":
        raise checks.InputError(
            "a masker is exported at a fixed scale (1, or how much larger its objects are), not auto"
        )

    def predict(images):
        return mask_prediction.predict_at_scale(predictor.spec, predictor.scale, predictor.params, images)[0]

    return predict


def export_masker(
    predictor: mask_prediction.MaskPredictor, height: int, width: int, batch: int | None = None
) -> jax.export.Exported:
    """images (B, H, W, 3) -> (B, H, W, ins_max) masks, largest first (scale 1: the photo as it is)."""
    checks.check_image_size(height, width)
    shape = jax.ShapeDtypeStruct((_batch_dimension(batch), height, width, 3), jnp.float32)
    return jax.export.export(jax.jit(_masker_prediction(predictor)))(shape)


def _onnx_model(function, input_shapes, batch, name: str, inputs: list[str], outputs: list[str], metadata: dict):
    """``function`` as a checked ONNX model (jax2onnx, the ``export`` extra), ``metadata`` in its
    metadata_props as JSON under "instagan_jax"; ``batch`` None leaves the batch dimension free."""
    try:
        import onnx
        from jax2onnx import to_onnx
    except ImportError as error:
        raise checks.InputError(
            f"ONNX export needs the export extra: pip install 'instagan-jax[export]' ({error})"
        ) from None
    b = "batch" if batch is None else _batch_dimension(batch)
    # XLA's own convolution forms: the CPU rewrites (convolution.py) help XLA alone, and in
    # onnxruntime they took 4.5x the memory and 7.7x the start-up (benchmarks/export_latency.py)
    with convolution.using("native"):
        model = to_onnx(function, [(b, *shape) for shape in input_shapes], model_name=name, input_names=inputs,
                        output_names=outputs)  # fmt: skip
    onnx.helper.set_model_props(model, {"instagan_jax": json.dumps(_with_versions(metadata, "onnx"))})
    onnx.checker.check_model(model)
    return model


def export_masker_onnx(
    predictor: mask_prediction.MaskPredictor, height: int, width: int, metadata: dict, batch: int | None = None
):
    """The masker as an ONNX model: input "images", output "masks". Scale 1 only: the other scales
    resize the photo with antialiasing, which jax2onnx does not convert."""
    checks.check_image_size(height, width)
    if predictor.scale != 1:
        raise checks.InputError(f"an ONNX masker is exported at scale 1, not {predictor.scale} (the resize other "
                                "scales need has no ONNX form here); export it with --format jax")  # fmt: skip
    return _onnx_model(_masker_prediction(predictor), [(height, width, 3)], batch, "instagan_masker", ["images"],
                       ["masks"], metadata)  # fmt: skip


def translator_metadata(translator: inference.Translator, direction: str, step: int) -> dict:
    return {
        "computes": "translator", "direction": direction, "ins_max": translator.ins_max,
        "ins_per": translator.ins_per, "binary_masks": translator.binary_masks,
        "model_spec": dataclasses.asdict(translator.spec), "step": step,
        "inputs": ["images float32 (B, H, W, 3) in [-1, 1]",
                   f"masks float32 (B, H, W, {translator.ins_max}) in [-1, 1], any order, empty slots -1"],
        "outputs": ["images float32 (B, H, W, 3) in [-1, 1]",
                    f"masks float32 (B, H, W, {translator.ins_max}) in [-1, 1], largest input instance first"],
    }  # fmt: skip


def masker_metadata(predictor: mask_prediction.MaskPredictor, step: int) -> dict:
    return {
        "computes": "masker", "scale": predictor.scale, "masker_spec": dataclasses.asdict(predictor.spec),
        "step": step, "inputs": ["images float32 (B, H, W, 3) in [-1, 1]"],
        "outputs": [f"masks float32 (B, H, W, {predictor.spec.ins_max}) in [-1, 1], largest first"],
    }  # fmt: skip


def _with_versions(metadata: dict, file_format: str) -> dict:
    versions = {"package_version": instagan_jax.__version__, "jax_version": jax.__version__}
    return {**metadata, "format": file_format, **versions}


def save_program(path: str, exported: jax.export.Exported, metadata: dict) -> None:
    """Writes the program and its metadata (with the shapes, the platforms and the versions) as one zip."""
    metadata = {
        **_with_versions(metadata, "jax.export"),
        "serialization_version": exported.calling_convention_version, "platforms": list(exported.platforms),
        "input_shapes": [str(a.shape) for a in exported.in_avals],
        "output_shapes": [str(a.shape) for a in exported.out_avals],
    }  # fmt: skip
    checks.writable_file(path, "--output")

    def write(file):
        with zipfile.ZipFile(file, "w") as archive:
            archive.writestr(METADATA, json.dumps(metadata, indent=1))
            archive.writestr(PROGRAM, bytes(exported.serialize()))

    write_whole(path, write, binary=True)


def load_program(path: str) -> tuple[jax.export.Exported, dict]:
    """(the program, its metadata) of a save_program file; ProgramError naming the file if it is not one."""
    checks.regular_file_size(path, ProgramError)  # a FIFO would block the zip reader
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {info.filename: info.file_size for info in archive.infolist()}
            if set(sizes) != {PROGRAM, METADATA}:
                raise ProgramError(f"{path}: not a program file of instagan_jax.export (holds {sorted(sizes)[:10]})")
            if sizes[METADATA] > MAX_JSON_BYTES or sizes[PROGRAM] > PROGRAM_LIMIT_BYTES:
                raise ProgramError(f"{path}: its parts are too large ({sizes})")
            metadata = json.loads(archive.read(METADATA))
            program = archive.read(PROGRAM)
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProgramError(f"{path}: cannot read it as a program file: {error}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != "jax.export":
        raise ProgramError(f"{path}: its metadata is not of a jax.export program")
    try:
        exported = jax.export.deserialize(bytearray(program))
    except Exception as error:  # noqa: BLE001 - a damaged program raises whatever its parser meets
        raise ProgramError(f"{path}: its program cannot be deserialized: {type(error).__name__}: {error}") from None
    return exported, metadata
