"""The one spelling of the two domains and the two translation directions.

Domains are "A" and "B", as in the paper, the authors' folders (trainA, testB) and loss
names (G_A, cyc_B); a direction is "AtoB" or "BtoA", as the authors' ``--which_direction``.
Batches hold ``image_A, masks_A, image_B, masks_B``; results files key scores by direction.
"""

from __future__ import annotations

DOMAINS = ("A", "B")
DIRECTIONS = ("AtoB", "BtoA")


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
    return direction


def source(direction: str) -> str:
    """The domain a direction translates from ("AtoB" -> "A")."""
    return check_direction(direction)[0]


def target(direction: str) -> str:
    """The domain a direction translates to ("AtoB" -> "B")."""
    return check_direction(direction)[-1]


def generator(direction: str) -> str:
    """The generator of a direction: G_A translates A to B."""
    return f"G_{source(direction)}"


def inverse(direction: str) -> str:
    return f"{target(direction)}to{source(direction)}"
