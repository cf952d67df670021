"""JSON files: untrusted ones end in a DataError naming the file; written ones are whole or absent."""

import os

import pytest

from instagan_jax import json_files
from instagan_jax.image_io import DataError


@pytest.mark.parametrize(
    "content, message",
    [(b'{"shapes": [', "not valid JSON"), (b'{"a": NaN}', "not valid JSON"), (b"\xff\xfe\x00", "not valid JSON"),
     (b"[" * 100_000 + b"]" * 100_000, "not valid JSON")],
)  # fmt: skip
def test_malformed_json_is_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"{path}: {message}"):
        json_files.read_json(str(path))


def test_a_fifo_or_a_missing_file_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "metrics.json"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    with pytest.raises(DataError, match=f"{fifo}: not a regular file"):
        json_files.read_json(str(fifo))
    with pytest.raises(DataError, match="missing.json: cannot be read"):
        json_files.read_json(str(tmp_path / "missing.json"))


def test_write_replaces_the_file_whole_or_leaves_the_old_one(tmp_path):
    path = tmp_path / "metrics.json"
    json_files.write_json(str(path), {"results": [{"step": 2}]}, indent=1)
    assert json_files.read_json(str(path)) == {"results": [{"step": 2}]}
    with pytest.raises(TypeError):  # fails half-way through writing: a value JSON cannot hold
        json_files.write_json(str(path), {"results": [{"step": 4}, {"step": object()}]})
    assert json_files.read_json(str(path)) == {"results": [{"step": 2}]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary file left
