"""The input rules every entry point shares (training, the step, inference, translate, the
demo), each written once so that they agree and name the offending value the same way.

Inputs are checked where they enter, before any work or allocation: a value out of range, a
path that is a file where a folder is wanted (or cannot be written, or has a name the file
system refuses), or a job that cannot fit in memory ends in an ``InputError`` naming it.
"""

from __future__ import annotations

import os
import stat

# The generators downsample twice by 2 and upsample back to the input size.
SIZE_MULTIPLE = 4
# Mask slots per image at most: COCO's most crowded image has 93 instances; thousands of slots
# are a mistake (and ask XLA to compile a program for them).
MAX_INSTANCES = 256
# File systems refuse longer names (bytes of one path component).
MAX_NAME_BYTES = 255
MEMORY_VARIABLE = "INSTAGAN_JAX_MEMORY_GB"


class InputError(ValueError):
    """A value, path or file the user gave that cannot be used; the message says which and why."""


def check_chunking(ins_max, ins_per, names: tuple[str, str] = ("ins_max", "ins_per")) -> None:
    """The sequential mini-batch cuts ins_max mask slots into chunks of ins_per."""
    valid = all(type(v) is int and v > 0 for v in (ins_max, ins_per)) and ins_max % ins_per == 0
    if not valid:
        raise InputError(f"{names[0]} ({ins_max!r}) must be a positive multiple of {names[1]} ({ins_per!r})")
    if ins_max > MAX_INSTANCES:
        raise InputError(f"{names[0]} ({ins_max}) is over the limit of {MAX_INSTANCES} mask slots per image")


def check_image_size(height, width, what: str = "image", error: type[Exception] = InputError) -> None:
    """Height and width must be positive multiples of 4; ``what`` names the file or option."""
    if not all(type(s) is int and s > 0 and s % SIZE_MULTIPLE == 0 for s in (height, width)):
        raise error(f"{what}: height and width must be positive multiples of {SIZE_MULTIPLE}, got {height}x{width}")


def parse_size(values, what: str) -> tuple[int, int]:
    """``H,W`` from a flag's list of strings, checked as check_image_size does."""
    try:
        size = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be two integers H,W, got {','.join(map(str, values))!r}") from None
    if len(size) != 2:
        raise InputError(f"{what} must be two integers H,W, got {','.join(map(str, values))!r}")
    check_image_size(*size, what=what)
    return size


def check_integer_ranges(spec, limits: dict[str, tuple[int, int]], prefix: str = "") -> None:
    """Each field of ``spec`` named in ``limits`` is an int in its (lowest, highest): bounds keep
    a spec read from a hostile checkpoint from asking for terabytes."""
    for name, (lowest, highest) in limits.items():
        value = getattr(spec, name)
        if type(value) is not int or not lowest <= value <= highest:
            raise InputError(f"{prefix}{name} must be an integer in [{lowest}, {highest}], got {value!r}")


def check_name(path: str, what: str) -> None:
    """Every component of ``path`` must be a name the file system takes."""
    for part in os.path.normpath(path).split(os.sep):
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise InputError(f"{what} {path[:80]!r}...: a name of {len(os.fsencode(part))} bytes, over the "
                             f"file system's {MAX_NAME_BYTES}; use a shorter one")  # fmt: skip


def writable_folder(path: str, what: str) -> str:
    """Makes the folder ``path`` (and its parents) unless it exists; refuses a file, a folder
    that cannot be written, or a name too long, naming ``what`` (the flag or config key)."""
    if not path:
        raise InputError(f"{what} is empty: give a folder")
    check_name(path, what)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{what} {path} is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise InputError(f"{what} {path}: cannot create this folder ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: this folder cannot be written (permissions or a read-only file system)")
    return path


def regular_file_size(path: str, error: type[Exception] = InputError) -> int:
    """The size of ``path``, or ``error`` naming it if it cannot be read or is not a regular file
    (a folder, or a FIFO or device, which would block or flood its reader)."""
    try:
        info = os.stat(path)
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: not a regular file")
    return info.st_size


def writable_file(path: str, what: str) -> str:
    """A file ``path`` may be written: its folder is (made) writable and it is not a folder."""
    if os.path.isdir(path):
        raise InputError(f"{what} {path} is a folder; give a file name")
    check_name(path, what)
    writable_folder(os.path.dirname(os.path.abspath(path)), f"the folder of {what}")
    return path


def owned_folder(path: str, what: str, marker: str, known: tuple[str, ...] = ()) -> str:
    """A folder this package writes derived files into, made or reused only if it is ours: missing,
    empty, holding ``marker`` (written here) or only ``known`` entries. Anything else (a home
    folder, a dataset, /) is refused, so a mistyped path never fills a folder of the user's. One of
    ours may be read-only (prepared datasets shared with others)."""
    check_name(path, what)
    entries = set(os.listdir(path)) if os.path.isdir(path) else set()
    if entries and (marker in entries or entries <= set(known)):
        return path
    if entries:
        others = ", ".join(sorted(entries - set(known))[:3])
        raise InputError(f"{what} {path} already holds other files ({others}, ...); "
                         "give an empty or new folder, or one this package prepared")  # fmt: skip
    writable_folder(path, what)
    with open(os.path.join(path, marker), "a"):
        pass
    return path


def memory_budget(limit_gb: float = 0) -> int:
    """Bytes a job may plan to hold: ``limit_gb`` if positive, else $INSTAGAN_JAX_MEMORY_GB, else
    the machine's physical memory."""
    if not limit_gb:
        given = os.environ.get(MEMORY_VARIABLE) or "0"
        try:
            limit_gb = float(given)
        except ValueError:
            raise InputError(f"${MEMORY_VARIABLE} must be a number of GB, got {given!r}") from None
    if limit_gb:
        return int(limit_gb * 2**30)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(needed: int, what: str, limit_gb: float = 0, raise_with: str = "") -> None:
    """Refuses a job whose arrays alone (``needed`` bytes, a lower bound) exceed memory_budget."""
    budget = memory_budget(limit_gb)
    if needed > budget:
        raise InputError(
            f"{what} needs at least {needed / 2**30:.1f} GiB, over the {budget / 2**30:.1f} GiB this machine has "
            f"({raise_with + ' or ' if raise_with else ''}${MEMORY_VARIABLE} raises the limit)"
        )
