"""Writes ``.pth`` files without torch: as torch.save lays them out, or as an attacker would.

A file is described by Python objects: ``Global`` pickles as a reference to any name (even
one not importable here), ``Call`` as that name applied to arguments, ``Storage`` as the
persistent id of a storage whose bytes follow. ``legacy_file`` and ``zip_file`` assemble the
two formats; every piece (header pickles, key list, storage bytes) can be replaced.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
_STORAGE_NAMES = {
    np.float32: "FloatStorage",
    np.int64: "LongStorage",
    np.uint8: "ByteStorage",
    np.float16: "HalfStorage",
}


class Global:
    """Pickled as the GLOBAL opcode ``module.name``."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle requires the function of a reduction to be callable
        raise TypeError("only for pickling")


class Call:
    """Pickled as REDUCE: ``func(*args)``, run by whoever unpickles it without restriction."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class Storage:
    """A storage: its bytes, and the persistent id that tensors use to name it."""

    def __init__(self, key: str, array: np.ndarray, type_name: str | None = None, numel: int | None = None):
        self.key, self.data = key, np.ascontiguousarray(array).reshape(-1)
        self.type_name = type_name or _STORAGE_NAMES[self.data.dtype.type]
        self.numel = self.data.size if numel is None else numel
        self.pid: tuple | object = ("storage", Global("torch", self.type_name), key, "cpu", self.numel)


class _Writer(pickle._Pickler):  # the Python pickler: its save() can be extended
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        else:
            super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Storage) else None


def dumps(obj) -> bytes:
    out = io.BytesIO()
    _Writer(out, protocol=2).dump(obj)
    return out.getvalue()


def tensor(storage: Storage, offset: int = 0, size=None, stride=None) -> Call:
    """A tensor view of ``storage``: contiguous over the whole storage by default."""
    size = (storage.data.size,) if size is None else size
    if stride is None:
        stride = tuple(int(np.prod(size[i + 1 :])) for i in range(len(size)))
    return Call(
        Global("torch._utils", "_rebuild_tensor_v2"), storage, offset, size, stride, False, collections.OrderedDict()
    )


def state_dict(arrays: dict[str, np.ndarray]) -> tuple[collections.OrderedDict, list[Storage]]:
    """A state dict of contiguous tensors, one storage each, as torch.save writes a module's."""
    storages = [Storage(str(i), a) for i, a in enumerate(arrays.values())]
    state = collections.OrderedDict(
        (name, tensor(s, size=a.shape)) for (name, a), s in zip(arrays.items(), storages, strict=True)
    )
    return state, storages


def legacy_file(state, storages, *, magic=LEGACY_MAGIC, protocol=1001, sys_info=SYS_INFO, keys=None, legacy_pid=True):
    """The torch 0.4-1.5 stream: 3 header pickles, the state dict, the key list, then the storages."""
    if legacy_pid:
        for s in storages:
            if isinstance(s.pid, tuple) and len(s.pid) == 5:
                s.pid = (*s.pid, None)  # (..., view metadata) in this format
    keys = [s.key for s in storages] if keys is None else keys
    parts = [dumps(magic), dumps(protocol), dumps(sys_info), dumps(state), dumps(keys)]
    for s in storages:
        parts.append(struct.pack("<q", s.numel) + s.data.tobytes())
    return b"".join(parts)


def zip_file(state, storages, *, data_pkl: bytes | None = None, compress=zipfile.ZIP_STORED, byteorder="little"):
    """The torch >= 1.6 archive: archive/data.pkl, archive/data/<key>, archive/version."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compress) as archive:
        archive.writestr("archive/data.pkl", dumps(state) if data_pkl is None else data_pkl)
        archive.writestr("archive/byteorder", byteorder)
        for s in storages:
            archive.writestr(f"archive/data/{s.key}", s.data.tobytes())
        archive.writestr("archive/version", "3\n")
    return out.getvalue()


def sample_arrays() -> dict[str, np.ndarray]:
    """A small state dict with the dtypes and ranks a network's has."""
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(4).astype(np.float32),
        "norm.num_batches_tracked": np.array(7, np.int64),
        "half": rng.standard_normal((2, 5)).astype(np.float16),
    }
