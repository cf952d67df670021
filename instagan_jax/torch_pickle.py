"""Read PyTorch ``.pth`` state dicts into numpy without PyTorch, treating the file as hostile.

Two on-disk formats exist: the zip archive of torch >= 1.6 (``archive/data.pkl`` plus one
raw file per storage under ``archive/data/``), and the legacy stream of torch 0.4 - 1.5 in
which the authors' released checkpoints were saved (three header pickles, the state-dict
pickle, the list of storage keys, then each storage as an int64 element count and raw bytes).
Tensors refer to storages by persistent id and are rebuilt through
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``.

Checkpoints come from third-party mirrors, so for any bytes whatsoever, reading guarantees:

- No code from the file runs. Every pickle of both formats (the header pickles and the key
  list included) goes through ``_RestrictedUnpickler``, which resolves only
  ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
  ``torch._utils._rebuild_parameter`` and ``torch.<Dtype>Storage`` to inert stand-ins of its
  own, and refuses every other global by name.
- No byte outside a storage is read. A tensor is first a ``_TensorView`` of plain numbers;
  its offset, sizes and strides (non-negative) are checked against its storage's length
  before the one strided view is made, and the storage's bytes are checked to be present.
- Memory is bounded by the file's size: a pickle may not exceed ``MAX_PICKLE_BYTES`` and is
  read from memory, a storage may not be larger than the file, a tensor may not be larger
  than the file, and all tensors together not larger than ``MAX_EXPANSION`` files.
- The outcome is ``{key: numpy array}`` or ``TorchFileError`` naming the file and the
  problem (``FileNotFoundError`` for a path that is not there). It never hangs: a pickle has
  no loops, and non-regular files (FIFOs, devices) are refused before they are opened.

Limits of what is accepted (all hold for files that torch.save writes): little-endian
storages, no legacy storage views, uncompressed or deflated zip members.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import stat
import struct
import zipfile

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# The authors' state-dict pickle is 22 KB; 100,000 tensors take about 15 MB.
MAX_PICKLE_BYTES = 64 << 20
# All tensors together may take this many times the file: views that share a storage.
MAX_EXPANSION = 4
_MAX_DIMS = 32

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # named so the error says "unsupported dtype", not "unknown global"
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """A file that is not a readable PyTorch state dict."""


def _short(value) -> str:
    """A description of a value from the file that is safe to format whatever it is."""
    if isinstance(value, str):
        return repr(value[:80])
    if isinstance(value, int) and value.bit_length() < 100:
        return str(value)
    return f"a {type(value).__name__}"


def _error_text(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error)[:200]}"


def _is_int(value) -> bool:
    return type(value) is int


class _StorageType:
    """What ``torch.FloatStorage`` & co. stand for in the pickle: a dtype, nothing callable."""

    def __init__(self, name: str):
        self.name = name


class _StorageRef:
    """A storage named by a persistent id: its key, dtype and declared element count."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _TensorView:
    """A tensor as the pickle describes it; becomes an array only after ``_materialise`` checks it."""

    def __init__(self, storage: _StorageRef, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves the four names a state dict needs to inert objects; refuses everything else.

    The rebuild functions are bound methods of this instance, so a pickle cannot set
    attributes on them (BUILD) to change how a later file is read.
    """

    def __init__(self, data, path: str, what: str, storages: dict | None = None):
        super().__init__(io.BytesIO(data))
        self._path, self._what = path, what
        self._storages = storages  # key -> _StorageRef, shared by all tensors; None: no tensors allowed

    def _fail(self, problem: str):
        raise TorchFileError(f"{self._path}: {problem} in the {self._what} pickle")

    def find_class(self, module, name):
        if self._storages is not None:
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return self._rebuild_tensor
            if (module, name) == ("torch._utils", "_rebuild_parameter"):
                return self._rebuild_parameter
            if module == "torch" and name in _STORAGE_DTYPES:
                return _StorageType(name)
        self._fail(f"refused global {str(module)[:80]}.{str(name)[:80]} (a state dict needs no code)")

    def persistent_load(self, pid):
        if self._storages is None:
            self._fail("unexpected persistent id")
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            self._fail(f"persistent id {_short(pid)} is not ('storage', type, key, location, numel)")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(storage_type, _StorageType):
            self._fail(f"storage type {_short(storage_type)} is not a torch storage class")
        if _STORAGE_DTYPES[storage_type.name] is None:
            self._fail(f"unsupported dtype torch.{storage_type.name}")
        if not isinstance(key, str) or not _is_int(numel) or numel < 0:
            self._fail(f"storage key {_short(key)} / element count {_short(numel)} malformed")
        if len(pid) == 6 and pid[5] is not None:
            self._fail(f"storage {key!r} is a legacy storage view (unsupported)")
        dtype = np.dtype(_STORAGE_DTYPES[storage_type.name])
        known = self._storages.setdefault(key, _StorageRef(key, dtype, numel))
        if (known.dtype, known.numel) != (dtype, numel):
            self._fail(f"storage {key!r} declared twice, as {known.numel} x {known.dtype} and {numel} x {dtype}")
        return known

    def _rebuild_tensor(self, storage, offset, size, stride, *unused_args):
        if not isinstance(storage, _StorageRef):
            self._fail(f"tensor built on {_short(storage)}, not a storage")
        if not (_is_int(offset) and isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))):
            self._fail("tensor offset, size or stride malformed")
        size, stride = tuple(size), tuple(stride)
        if len(size) != len(stride) or len(size) > _MAX_DIMS or not all(map(_is_int, size + stride)):
            self._fail(f"tensor on storage {storage.key!r} has malformed sizes or strides ({len(size)}, {len(stride)})")
        return _TensorView(storage, offset, size, stride)

    def _rebuild_parameter(self, data, *unused_args):
        if not isinstance(data, _TensorView):
            self._fail(f"parameter wraps {_short(data)}, not a tensor")
        return data

    def load_checked(self):
        try:
            return self.load()
        except TorchFileError:
            raise
        except Exception as e:  # noqa: BLE001 - every malformed pickle ends here, named
            self._fail(f"malformed pickle ({_error_text(e)})")


_MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


def _pickle_length(data, path: str, what: str) -> int:
    """Bytes of the pickle that starts ``data``, after a pass over its opcodes.

    C's unpickler allocates a counted string or bytes object at its declared length before
    reading it, and grows its memo to the largest index a PUT names: a few bytes could ask
    for gigabytes. Here every count must fit in the data and every memo index must be below
    the pickle's length (a real pickle numbers its memo entries 0, 1, 2, ...).
    """
    try:
        for opcode, arg, position in pickletools.genops(io.BytesIO(data)):
            if opcode.name in _MEMO_PUTS and not (_is_int(arg) and 0 <= arg <= position):
                raise TorchFileError(f"{path}: memo index {_short(arg)} at byte {position} in the {what} pickle")
            if opcode.name == "STOP":
                return position + 1
    except TorchFileError:
        raise
    except Exception as e:  # noqa: BLE001 - pickletools' complaints about counts and opcodes
        if len(data) == MAX_PICKLE_BYTES:
            raise TorchFileError(f"{path}: the {what} pickle is longer than the limit of {MAX_PICKLE_BYTES}") from None
        raise TorchFileError(f"{path}: malformed pickle ({_error_text(e)}) in the {what} pickle") from None
    raise TorchFileError(f"{path}: the {what} pickle has no end")


def _unpickle(data, path: str, what: str, storages: dict | None = None):
    """(value, bytes used) of the pickle that starts ``data``, read by the restricted unpickler."""
    length = _pickle_length(data[:MAX_PICKLE_BYTES], path, what)
    return _RestrictedUnpickler(data[:length], path, what, storages).load_checked(), length


class _Budget:
    """Counts the bytes of the arrays made from one file against ``MAX_EXPANSION`` x its size."""

    def __init__(self, path: str, file_size: int):
        self.path, self.file_size, self.left = path, file_size, MAX_EXPANSION * max(file_size, 1 << 16)

    def take(self, what: str, nbytes: int) -> None:
        if nbytes > max(self.file_size, 1 << 16):
            raise TorchFileError(f"{self.path}: {what} would take {nbytes} bytes, more than the file holds")
        self.left -= nbytes
        if self.left < 0:
            raise TorchFileError(f"{self.path}: its tensors would take over {MAX_EXPANSION} times the file's size")


def _materialise(view: _TensorView, data: np.ndarray, path: str, name: str, budget: _Budget) -> np.ndarray:
    """The array of one tensor, after checking that every element it reads lies in ``data``."""
    where = f"tensor {name!r} (storage {view.storage.key!r} of {len(data)} elements)"
    if view.offset < 0 or any(s < 0 for s in view.size) or any(s < 0 for s in view.stride):
        raise TorchFileError(f"{path}: {where} has a negative offset, size or stride")
    numel = math.prod(view.size)
    budget.take(where, numel * data.dtype.itemsize)
    if numel == 0:
        if view.offset > len(data):
            raise TorchFileError(f"{path}: {where} starts at {view.offset}, past the storage's end")
        return np.zeros(view.size, data.dtype)
    last = view.offset + sum((n - 1) * s for n, s in zip(view.size, view.stride, strict=True))
    if last >= len(data):
        raise TorchFileError(f"{path}: {where} reads element {last}, outside its storage")
    itemsize = data.dtype.itemsize
    strided = np.lib.stride_tricks.as_strided(
        data[view.offset :], shape=view.size, strides=tuple(s * itemsize for s in view.stride), writeable=False
    )
    return np.array(strided)


def _storage_array(ref: _StorageRef, raw, path: str) -> np.ndarray:
    expected = ref.numel * ref.dtype.itemsize
    if len(raw) < expected:
        raise TorchFileError(f"{path}: storage {ref.key!r} has {len(raw)} bytes, needs {expected} (truncated)")
    return np.frombuffer(raw, dtype=ref.dtype.newbyteorder("<"), count=ref.numel)


def _state_dict(result, storages: dict, path: str, file_size: int) -> dict[str, np.ndarray]:
    """{key: array} of the unpickled state dict, with every tensor checked and copied out."""
    if not isinstance(result, dict):
        raise TorchFileError(f"{path}: holds {_short(result)}, not a state dict")
    budget = _Budget(path, file_size)
    state = {}
    for key, value in result.items():
        if not isinstance(key, str):
            raise TorchFileError(f"{path}: state-dict key {_short(key)} is not a string")
        if isinstance(value, _TensorView):
            state[key] = _materialise(value, storages[value.storage.key], path, key, budget)
    return state


def _read_zip(path: str, file_size: int) -> dict:
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        pickles = [n for n in infos if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise TorchFileError(f"{path}: zip archive without data.pkl, not a torch file")
        prefix = pickles[0][: -len("data.pkl")]

        def member(name: str, what: str, limit: int) -> bytes:
            info = infos.get(name)
            if info is None:
                raise TorchFileError(f"{path}: {what} missing from the archive ({name})")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise TorchFileError(f"{path}: {name} uses zip compression {info.compress_type}")
            if info.file_size > limit:
                raise TorchFileError(f"{path}: {name} declares {info.file_size} bytes, over the limit of {limit}")
            return archive.read(info)

        byteorder = infos.get(f"{prefix}byteorder")
        if byteorder is not None and member(byteorder.filename, "byteorder", 16).strip() != b"little":
            raise TorchFileError(f"{path}: big-endian storages are not supported")
        data = member(pickles[0], "data.pkl", MAX_PICKLE_BYTES)
        refs: dict[str, _StorageRef] = {}
        result, _ = _unpickle(data, path, "data.pkl", refs)
        storages = {
            key: _storage_array(ref, member(f"{prefix}data/{key}", f"storage {key!r}", file_size), path)
            for key, ref in refs.items()
        }
    return _state_dict(result, storages, path, file_size)


def _read_legacy(path: str, file_size: int) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    position = 0

    def next_pickle(what: str, storages: dict | None = None):
        nonlocal position
        value, length = _unpickle(memoryview(data)[position:], path, what, storages)
        position += length
        return value

    try:
        magic = next_pickle("magic number")
    except TorchFileError as e:
        raise TorchFileError(f"{path}: neither a zip archive nor a legacy torch file ({e})") from None
    if magic != _LEGACY_MAGIC:
        raise TorchFileError(f"{path}: not a torch file (bad magic number)")
    protocol = next_pickle("protocol version")
    sys_info = next_pickle("sys_info")
    if not _is_int(protocol) or not isinstance(sys_info, dict):
        raise TorchFileError(f"{path}: malformed header (protocol {_short(protocol)}, sys_info {_short(sys_info)})")
    if sys_info.get("little_endian", True) is not True:
        raise TorchFileError(f"{path}: big-endian storages are not supported")
    refs: dict[str, _StorageRef] = {}
    result = next_pickle("state-dict", refs)
    keys = next_pickle("storage-key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise TorchFileError(f"{path}: the storage-key list is malformed")
    storages = {}
    for key in keys:
        ref = refs.get(key)
        if ref is None:
            raise TorchFileError(f"{path}: storage {key!r} is stored but no tensor declares it")
        if position + 8 > len(data):
            raise TorchFileError(f"{path}: truncated before storage {key!r}")
        (numel,) = struct.unpack_from("<q", data, position)
        position += 8
        if numel != ref.numel:
            raise TorchFileError(f"{path}: storage {key!r} holds {numel} elements, its tensors declare {ref.numel}")
        nbytes = numel * ref.dtype.itemsize
        storages[key] = _storage_array(ref, memoryview(data)[position : position + nbytes], path)
        position += nbytes
    missing = sorted(set(refs) - set(storages))
    if missing:
        raise TorchFileError(f"{path}: storages {missing[:5]} are declared by tensors but not stored")
    return _state_dict(result, storages, path, file_size)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a ``.pth`` state dict as {key: numpy array}. Raises FileNotFoundError or TorchFileError."""
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except OSError:
        raise FileNotFoundError(f"no such checkpoint file: {path}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TorchFileError(f"{path}: not a regular file")
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path, info.st_size)
        return _read_legacy(path, info.st_size)
    except TorchFileError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged archive or stream, named
        raise TorchFileError(f"{path}: cannot read as a torch checkpoint ({_error_text(e)})") from None
