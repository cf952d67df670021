"""The local web demo (gradio): upload or pick a photo, paint each instance on its own layer or
predict the masks, translate, compare and download.

Everything is served from this machine: no CDN fonts (the theme uses the system's), no
analytics, no share links. Uploads are capped in bytes and pixels and stay in gradio's
temporary folder. A bad input ends in a message on the page (``gr.Error``), never a trace.
The translation is ``Translator.translate`` on the page's image and masks, and the PNGs offered
for download are those translate.py writes.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from instagan_jax import checks, domains, image_io, summaries  # noqa: E402
from instagan_jax import masks as masks_lib  # noqa: E402
from instagan_jax.datasets import shapes  # noqa: E402
from instagan_jax.inference import Translator, prepare_masks  # noqa: E402

MAX_PIXELS = 1024 * 1024  # the largest photo translated (a CPU takes seconds per megapixel)
MAX_UPLOAD = "20mb"
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
# small pictures are shown enlarged with their pixels sharp (the files keep their size)
CSS = "[id^=out_] img {image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain}"
DIRECTION_LABELS = {"A → B": "AtoB", "B → A": "BtoA"}


class DemoInputError(gr.Error):
    """A problem with what the user gave, shown on the page."""


def checked_editor(max_layers: int, **kwargs) -> gr.ImageEditor:
    """gradio's ImageEditor whose uploads are read as translate.py reads its files (image_io): one
    that is not an image, truncated, over MAX_PIXELS or 16-bit ends in a message on the page that
    says so. Each layer becomes its mask (image_io.mask_array: alpha where painted on transparency)
    as soon as it is decoded, and more than ``max_layers`` layers are refused before any is.

    The editor's own reading methods are replaced on the instance: a subclass would be a custom
    component to gradio, which the page cannot draw."""
    editor = gr.ImageEditor(**kwargs)
    gradio_preprocess = editor.preprocess

    def preprocess(payload):
        if payload is not None:
            cached = editor.blob_storage.get(payload.id) if payload.id is not None else None
            count = len((cached.layers if cached else payload.layers) or [])
            if count > max_layers:
                raise DemoInputError(f"{count} layers is more than this demo takes ({max_layers}, for a model that "
                                     "translates the largest ins_max instances): merge or delete layers")  # fmt: skip
        return gradio_preprocess(payload)

    def convert_and_format_image(file, flatten_on_white: bool = False):
        if file is None:
            return None
        with tempfile.TemporaryDirectory() as folder:
            if isinstance(file, (bytes, bytearray, memoryview)):
                path, name = os.path.join(folder, "upload"), "the upload"
                with open(path, "wb") as f:
                    f.write(file)
            else:
                path, name = file.path, file.orig_name or "the upload"
            try:
                image = image_io.open_image(path, None, max_pixels=MAX_PIXELS)
            except image_io.DataError as e:
                raise DemoInputError(str(e).replace(path, name)) from None
        if flatten_on_white:  # the photo (and the page's composite)
            return np.asarray(image.convert("RGB"))
        return image_io.mask_array(image)

    editor.preprocess, editor.convert_and_format_image = preprocess, convert_and_format_image
    return editor


def example_photos(folder: str, rendered: int = 40, size: int = 36) -> list[str]:
    """Procedural shapes photos of both domains (discs for A -> B, squares for B -> A), written once,
    at the scale the default configs train on (rendered at 40, resized to 36)."""
    paths = []
    for domain, index in (("A", 3), ("A", 7), ("B", 5)):
        path = os.path.join(folder, f"shapes_{domain}{index}.png")
        if not os.path.exists(path):
            image, _ = shapes.render(domain, seed=2019, index=index, size=(rendered, rendered), max_instances=4)
            Image.fromarray(image).resize((size, size), Image.BICUBIC).save(path)
        paths.append(path)
    return paths


def _as_rgb(array) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return array[..., :3].astype(np.uint8)


def photo_of(editor: dict | None) -> np.ndarray:
    """The editor's photo, (H, W, 3) uint8, within the pixel limit."""
    if not editor or editor.get("background") is None:
        raise DemoInputError("Upload a photo (or pick an example) first.")
    background = _as_rgb(editor["background"])
    h, w = background.shape[:2]
    if h * w > MAX_PIXELS:
        raise DemoInputError(f"The photo is {w}x{h} pixels, over the demo's limit of {MAX_PIXELS}; shrink it first.")
    return background


def image_and_masks(editor: dict | None, ins_max: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The editor's photo as (H, W, 3) in [-1, 1], its painted layers as (H, W, n) masks, notes.

    Each non-empty layer is one instance; H and W are cropped to multiples of 4.
    """
    background = photo_of(editor)
    h, w = background.shape[:2]
    notes = []
    crop_h, crop_w = h - h % checks.SIZE_MULTIPLE, w - w % checks.SIZE_MULTIPLE
    if crop_h < checks.SIZE_MULTIPLE or crop_w < checks.SIZE_MULTIPLE:
        raise DemoInputError(f"The photo is {w}x{h} pixels; it needs at least 4x4.")
    if (crop_h, crop_w) != (h, w):
        notes.append(f"cropped from {w}x{h} to {crop_w}x{crop_h} (sides must be multiples of 4)")
    painted = []
    for layer in editor.get("layers") or []:
        layer = np.asarray(layer)
        if layer.shape[:2] != (h, w):
            continue
        mask = layer if layer.ndim == 2 else image_io.mask_array(Image.fromarray(layer))  # read as translate.py does
        if (mask > 0).any():
            painted.append(mask[:crop_h, :crop_w] > 0)
    if not painted:
        raise DemoInputError("No instance is painted: paint each object on its own layer, or press “Predict masks”.")
    if len(painted) > ins_max:
        notes.append(f"{len(painted)} instances painted; the model uses the {ins_max} largest (ins_max)")
    image = background[:crop_h, :crop_w].astype(np.float32) / 127.5 - 1.0
    masks = np.stack([np.where(m, 1.0, -1.0) for m in painted], axis=-1).astype(np.float32)
    return image, masks, notes


def layers_of(masks: np.ndarray) -> list[np.ndarray]:
    """(H, W, n) masks -> one RGBA layer per instance, in the instance's colour (half opaque)."""
    colours = (summaries.instance_colours(masks.shape[-1]) * 255).astype(np.uint8)
    layers = []
    for k in range(masks.shape[-1]):
        inside = masks[..., k] > 0
        if inside.any():
            layer = np.zeros((*inside.shape, 4), np.uint8)
            layer[inside] = (*colours[k], 160)
            layers.append(layer)
    return layers


def build(translator: Translator, masker=None, examples_dir: str | None = None) -> gr.Blocks:
    """The page: editor and controls on the left, the four pictures and downloads on the right."""
    examples_dir = examples_dir or tempfile.mkdtemp(prefix="instagan_demo_")
    out_dir = tempfile.mkdtemp(prefix="instagan_demo_out_")

    def predict(editor):
        if masker is None:
            raise DemoInputError("This demo was started without --masker_workdir: paint the masks instead.")
        background = photo_of(editor)
        h, w = background.shape[:2]
        if h % checks.SIZE_MULTIPLE or w % checks.SIZE_MULTIPLE:
            raise DemoInputError(f"Masks are predicted for photos with sides multiple of 4; this is {w}x{h}.")
        masks = masker((background.astype(np.float32) / 127.5 - 1.0)[None])[0]
        layers = layers_of(masks)
        status = f"Predicted {len(layers)} instance masks: check them (each is a layer), then translate."
        return {"background": background, "layers": layers, "composite": None}, status

    def translate(editor, direction_label):
        direction = DIRECTION_LABELS[direction_label]
        image, masks, notes = image_and_masks(editor, translator.ins_max)
        out = translator.translate(image, masks, direction)
        target = domains.target(direction)
        coloured = [(summaries.colour_masks(out[k]) * 255).astype(np.uint8) for k in ("input_masks", "masks")]
        pictures = [image_io.to_uint8(image), coloured[0], image_io.to_uint8(out["image"]), coloured[1]]
        files = []
        for kind, array in (("img", image_io.to_uint8(out["image"])), ("seg", image_io.to_uint8(out["merged"]))):
            path = os.path.join(out_dir, f"photo_fake_{target}_{kind}.png")
            Image.fromarray(array).save(path)
            files.append(path)
        used = int(masks_lib.slot_validity(prepare_masks(masks, translator.ins_max)[None]).sum())
        status = f"Translated {direction_label} with {used} instance masks." + "".join(f" Note: {n}." for n in notes)
        return (*pictures, files, status)

    with gr.Blocks(title="instagan-jax demo", analytics_enabled=False) as page:
        gr.Markdown(
            "# InstaGAN: instance-aware translation\nUpload a photo or pick an example; paint each object on its "
            "own layer (or press **Predict masks**); choose the direction; **Translate**."
        )
        with gr.Row():
            with gr.Column():
                brush = gr.Brush(colors=["#e6194b", "#3cb44b", "#4363d8", "#f58231"], color_mode="fixed")
                editor = checked_editor(2 * translator.ins_max + 1, label="photo and instance layers", type="numpy",
                                        image_mode="RGBA", sources=("upload",), format="png", elem_id="editor",
                                        brush=brush)  # fmt: skip
                direction = gr.Radio(list(DIRECTION_LABELS), value="A → B", label="direction", elem_id="direction")
                with gr.Row():
                    predict_button = gr.Button("Predict masks", elem_id="predict", interactive=masker is not None)
                    translate_button = gr.Button("Translate", variant="primary", elem_id="translate")
                gr.Examples(example_photos(examples_dir), inputs=editor, label="examples (shapes)")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                with gr.Row():
                    names = ("input", "input masks", "translated", "translated masks")
                    shown = [gr.Image(label=name, type="numpy", format="png", interactive=False, elem_id=f"out_{i}",
                                      height=192) for i, name in enumerate(names)]  # fmt: skip
                downloads = gr.File(label="the PNGs translate.py writes", file_count="multiple", elem_id="downloads")
        predict_button.click(predict, inputs=editor, outputs=[editor, status])
        translate_button.click(translate, inputs=[editor, direction], outputs=[*shown, downloads, status])
    return page


def serve(page: gr.Blocks, port: int | None, examples_dir: str) -> None:
    """Serves on 127.0.0.1 only; blocks until interrupted."""
    page.launch(server_name="127.0.0.1", server_port=port, theme=THEME, css=CSS, max_file_size=MAX_UPLOAD,
                ssr_mode=False, share=False, footer_links=[], allowed_paths=[examples_dir], quiet=False)  # fmt: skip
