"""Read PyTorch ``.pth`` state dicts into numpy without PyTorch installed.

Two on-disk formats exist: the zip archive of torch >= 1.6 (``archive/data.pkl`` plus one
raw file per storage under ``archive/data/``), and the legacy stream of torch 0.4 - 1.5 in
which the authors' released checkpoints were saved (a few header pickles, the state-dict
pickle, the storage keys, then each storage as an int64 element count and raw bytes). Both
pickles refer to storages by persistent id and rebuild tensors through
``torch._utils._rebuild_tensor_v2``; a restricted unpickler maps exactly those names to
numpy and refuses every other global, so reading a file never executes its code.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """A file that is not a readable PyTorch state dict."""


def _rebuild_tensor(storage, storage_offset, size, stride, *unused_args):
    itemsize = storage.dtype.itemsize
    if not size:
        return storage[storage_offset].copy()
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)


def _rebuild_parameter(data, *unused_args):
    return data


_DeferredTensor = collections.namedtuple("_DeferredTensor", "key offset size stride")


class _StorageType:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, load_storage, path, rebuild_tensor=_rebuild_tensor):
        super().__init__(file)
        self._load_storage = load_storage
        self._path = path
        self._rebuild_tensor = rebuild_tensor

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise TorchFileError(f"{self._path}: unsupported object {module}.{name} in the pickle")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchFileError(f"{self._path}: unknown persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        return self._load_storage(key, storage_type.dtype, numel)


def _read_zip(path: str) -> dict:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise TorchFileError(f"{path}: zip archive without data.pkl, not a torch file")
        prefix = pickles[0][: -len("data.pkl")]
        cache = {}

        def load_storage(key, dtype, numel):
            if key not in cache:
                raw = archive.read(f"{prefix}data/{key}")
                cache[key] = np.frombuffer(raw, dtype=dtype, count=numel)
            return cache[key]

        return _Unpickler(io.BytesIO(archive.read(pickles[0])), load_storage, path).load()


def _read_legacy(path: str) -> dict:
    with open(path, "rb") as f:
        try:
            magic = pickle.load(f)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means "not torch"
            raise TorchFileError(f"{path}: neither a zip archive nor a legacy torch file ({e})") from e
        if magic != _LEGACY_MAGIC:
            raise TorchFileError(f"{path}: not a torch file (bad magic number)")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys_info
        # In this format the storage bytes follow the pickle, so tensors are rebuilt afterwards.
        storages = {}

        def declare_storage(key, dtype, numel):
            storages.setdefault(key, {"dtype": dtype})
            return key

        def defer_tensor(key, offset, size, stride, *unused_args):
            return _DeferredTensor(key, offset, tuple(size), tuple(stride))

        result = _Unpickler(f, declare_storage, path, defer_tensor).load()
        for key in pickle.load(f):
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = np.dtype(storages[key]["dtype"])
            raw = f.read(numel * dtype.itemsize)
            if len(raw) != numel * dtype.itemsize:
                raise TorchFileError(f"{path}: truncated storage {key}")
            storages[key]["data"] = np.frombuffer(raw, dtype=dtype)

    def materialise(value):
        if isinstance(value, _DeferredTensor):
            return _rebuild_tensor(storages[value.key]["data"], value.offset, value.size, value.stride)
        return value

    return collections.OrderedDict((k, materialise(v)) for k, v in result.items())


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a ``.pth`` state dict as {key: numpy array}. Raises FileNotFoundError or TorchFileError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        state = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except (TorchFileError, FileNotFoundError):
        raise
    except Exception as e:  # noqa: BLE001 - surface corrupt files with their name
        raise TorchFileError(f"{path}: cannot read as a torch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict):
        raise TorchFileError(f"{path}: holds a {type(state).__name__}, not a state dict")
    state.pop("_metadata", None)
    return {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
