"""The input rules every entry point shares (training, the step, inference, translate, the
demo), each written once so that they agree and name the offending value the same way."""

from __future__ import annotations

# The generators downsample twice by 2 and upsample back to the input size.
SIZE_MULTIPLE = 4


def check_chunking(ins_max, ins_per, names: tuple[str, str] = ("ins_max", "ins_per")) -> None:
    """The sequential mini-batch cuts ins_max mask slots into chunks of ins_per."""
    valid = all(type(v) is int and v > 0 for v in (ins_max, ins_per)) and ins_max % ins_per == 0
    if not valid:
        raise ValueError(f"{names[0]} ({ins_max!r}) must be a positive multiple of {names[1]} ({ins_per!r})")


def check_image_size(height, width, what: str = "image", error: type[Exception] = ValueError) -> None:
    """Height and width must be positive multiples of 4; ``what`` names the file or option."""
    if not all(type(s) is int and s > 0 and s % SIZE_MULTIPLE == 0 for s in (height, width)):
        raise error(f"{what}: height and width must be positive multiples of {SIZE_MULTIPLE}, got {height}x{width}")


def check_integer_ranges(spec, limits: dict[str, tuple[int, int]], prefix: str = "") -> None:
    """Each field of ``spec`` named in ``limits`` is an int in its (lowest, highest): bounds keep
    a spec read from a hostile checkpoint from asking for terabytes."""
    for name, (lowest, highest) in limits.items():
        value = getattr(spec, name)
        if type(value) is not int or not lowest <= value <= highest:
            raise ValueError(f"{prefix}{name} must be an integer in [{lowest}, {highest}], got {value!r}")
