"""JSON files: untrusted ones end in a DataError naming the file; written ones are whole or absent."""

import os
import stat

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


def test_written_files_get_the_permissions_of_a_plain_write(tmp_path):
    """Not the temporary file's private 0600: a report others on the machine read stays readable."""
    old_umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.json"
        json_files.write_json(str(fresh), [1])
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        kept = tmp_path / "kept.json"
        kept.write_text("[]")
        kept.chmod(0o640)
        json_files.write_json(str(kept), [2])
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
        assert json_files.read_json(str(kept)) == [2]
    finally:
        os.umask(old_umask)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    """A sparse file of 257 MiB: refused from its size alone (reading it would take the memory)."""
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(json_files.MAX_JSON_BYTES + 2**20)
    with pytest.raises(DataError, match=r"huge.json: 269484032 bytes is over the limit of 268435456"):
        json_files.read_json(str(path))
