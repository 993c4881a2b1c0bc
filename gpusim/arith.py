"""Integer arithmetic the cost models share (tiles, waves, allocation units)."""

from __future__ import annotations


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers (``b > 0``), exact at any size (no float division)."""
    return -(-a // b)


def round_up(value: int, unit: int) -> int:
    """``value`` rounded up to a multiple of ``unit`` (``unit > 0``)."""
    return -(-value // unit) * unit
