"""Display units for sweep metrics and a few helpers shared by the figures and the HTML page.

Metric columns carry their unit in the name, read by :func:`gpusim.quantities.metric_quantity`
(``_s`` seconds, ``_GBps`` decimal gigabytes per second, ``_B`` bytes, ``_per_s`` a rate such as
tokens/s). Seconds, bytes and rates are rescaled for display (``ms``/``us``, ``MB``/``GB``,
``M tokens/s``) by magnitude; the stored values are never changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gpusim.quantities import Dimension, metric_quantity

RESERVED_COLUMNS = frozenset(
    {
        "point",
        "system",
        "seed",
        "status",
        "error",
        "scenario_hash",
        "profile_id",
        "fidelity",
        "gpusim_version",
        "git_rev",
        "wall_s",
        "events",
        "scenario",
    }
)
"""Row columns that are neither a swept axis nor a metric."""

_TIME_SCALES_S: tuple[tuple[float, float, str], ...] = (
    (1.0, 1.0, "s"),
    (1e-3, 1e3, "ms"),
    (1e-6, 1e6, "us"),
    (0.0, 1e9, "ns"),
)
_BYTE_SCALES_B: tuple[tuple[float, float, str], ...] = (
    (1e12, 1e-12, "TB"),
    (1e9, 1e-9, "GB"),
    (1e6, 1e-6, "MB"),
    (1e3, 1e-3, "kB"),
    (0.0, 1.0, "B"),
)
_RATE_PREFIXES: tuple[tuple[float, float, str], ...] = (
    (1e9, 1e-9, "G "),
    (1e6, 1e-6, "M "),
    (1e3, 1e-3, "k "),
    (0.0, 1.0, ""),
)

MISSING = "—"
"""How a missing (failed or absent) metric value is displayed."""


def _pick_scale(table: Sequence[tuple[float, float, str]], magnitude: float) -> tuple[float, str]:
    for threshold, factor, unit in table:
        if magnitude >= threshold:
            return factor, unit
    _, factor, unit = table[-1]
    return factor, unit


def display_scale(metric: str, values: Iterable[float]) -> tuple[float, str]:
    """``(factor, unit)`` to display ``values`` of ``metric``: multiply by ``factor``.

    Seconds become s/ms/us/ns, bytes B/kB/MB/GB/TB and rates take a k/M/G prefix (``M tokens/s``)
    so that the largest magnitude reads as a number >= 1; other metrics are shown as stored
    (factor 1) in the unit their name gives.
    """
    quantity = metric_quantity(metric)
    finite = [abs(v) for v in values if math.isfinite(v)]
    magnitude = max(finite) if finite else 0.0
    if quantity.unit == "s":
        return _pick_scale(_TIME_SCALES_S, magnitude) if magnitude > 0 else (1.0, "s")
    if quantity.unit == "B":
        return _pick_scale(_BYTE_SCALES_B, magnitude)
    if quantity.dimension is Dimension.rate:
        factor, prefix = _pick_scale(_RATE_PREFIXES, magnitude)
        return factor, prefix + quantity.unit
    return 1.0, quantity.unit


def metric_axis_label(metric: str, unit: str) -> str:
    """An axis label for ``metric`` displayed in ``unit`` (``makespan [ms]``)."""
    name = metric_quantity(metric).name
    return f"{name} [{unit}]" if unit else name


def as_number(value: Any) -> float | None:
    """``value`` as a finite float, or None for None, NaN, infinities, bools and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def format_metric(metric: str, value: Any) -> str:
    """One metric value with a magnitude-appropriate unit, 4 significant digits (``1.25 ms``)."""
    number = as_number(value)
    if number is None:
        return MISSING
    factor, unit = display_scale(metric, [number])
    text = f"{number * factor:.4g}"
    return f"{text} {unit}" if unit else text


def format_value(value: Any) -> str:
    """An axis or seed value as text (floats to 6 significant digits)."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple) and len(value) > 1:  # e.g. a list of GPU ids
        return f"{len(value)} x [{value[0]} .. {value[-1]}]"
    return str(value)


def is_ok(row: Mapping[str, Any]) -> bool:
    """Whether a sweep point succeeded."""
    return row.get("status") == "ok"


def infer_axes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Guess the swept-axis columns of ``rows`` (in first-seen order) when no manifest says.

    A non-reserved column is a metric when some row holds None for it (failed points have None
    metrics) or all its values are floats; every other column is an axis. An axis whose values
    are all floats is therefore taken for a metric: pass the manifest's ``axes`` explicitly in
    that case.
    """
    order: dict[str, None] = {}
    for row in rows:
        for column in row:
            if column not in RESERVED_COLUMNS:
                order.setdefault(column)
    axes: list[str] = []
    for column in order:
        values = [row.get(column) for row in rows]
        if any(v is None for v in values):
            continue
        if all(isinstance(v, float) for v in values):
            continue
        axes.append(column)
    return axes


def infer_metrics(rows: Sequence[Mapping[str, Any]], axes: Sequence[str]) -> list[str]:
    """The metric columns of ``rows`` when no manifest lists them: every non-reserved, non-axis
    column holding a number in some row, in first-seen order."""
    order: dict[str, None] = {}
    for row in rows:
        for column, value in row.items():
            if column in RESERVED_COLUMNS or column in axes:
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                order.setdefault(column)
    return list(order)


def hashable(value: Any) -> Any:
    """``value`` itself when hashable, else its ``repr`` (axis values may be lists)."""
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value
