"""The Colab notebook runs top to bottom against a checkpoint made here."""

import base64
import io
import pathlib

import nbformat
import numpy as np
from nbclient import NotebookClient
from PIL import Image

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "colab.ipynb"


def test_colab_notebook_restores_translates_and_shows_the_grid(converted_workdir, masker_workdir, monkeypatch):
    monkeypatch.setenv("INSTAGAN_WORKDIR", converted_workdir)
    monkeypatch.setenv("INSTAGAN_MASKER_WORKDIR", str(masker_workdir / "run"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3").execute()  # raises on any failing cell
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "ModelSpec(model='insta_gan'" in text and "instance masks" in text
    assert "predicted instance masks" in text  # translated without masks, through the masker
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 1
    # the grid: 4 panels of 32x32 with 2-pixel gaps, shown 4x larger
    shown = Image.open(io.BytesIO(base64.b64decode(pictures[0]["data"]["image/png"])))
    assert shown.size == ((4 * 32 + 3 * 2) * 4, 32 * 4)
    assert np.asarray(shown).std() > 0
