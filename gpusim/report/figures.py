"""Figures for sweep reports: pure functions from rows to a matplotlib Figure.

Every function builds a fresh :class:`matplotlib.figure.Figure` through the object API (no
pyplot, no global figure registry), so they can run on several threads at once and be tested by
inspecting the returned artists. Text is drawn with matplotlib's bundled fonts.

Rows are sweep points as written by the results store: ``point``, ``system``, one column per
swept axis, ``seed``, ``status`` and one float column per metric (None on failed points).
Failed points and missing or non-finite metric values are never plotted. Pass one
:func:`~gpusim.report.plotting.system_colors` mapping to every figure of a report so that each
system keeps its colour. The figures of one run (:func:`gantt`, :func:`comparison_bars`) live in
:mod:`gpusim.report.run_figures` and are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from gpusim.quantities import Better, metric_quantity, speedup
from gpusim.report.format import (
    as_number,
    display_scale,
    format_value,
    hashable,
    infer_axes,
    is_ok,
    metric_axis_label,
)
from gpusim.report.plotting import (
    OTHER_COLOR,
    add_legend,
    distinct,
    new_figure,
    no_data,
    system_colors,
)
from gpusim.report.run_figures import MAX_GANTT_BARS, comparison_bars, gantt

__all__ = ["MAX_GANTT_BARS", "comparison_bars", "gantt", "metric_vs_axis", "speedup_bars"]

Row = Mapping[str, Any]
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_DASH_IN = 4.0  # points: the dash length of lines drawn over one another


def _is_power_of_two(value: float) -> bool:
    if value <= 0:
        return False
    exponent = math.log2(value)
    return abs(exponent - round(exponent)) < 1e-9


def _varying(columns: Sequence[str], rows: Sequence[Row]) -> list[str]:
    """The ``columns`` that take more than one value among ``rows``."""
    return [c for c in columns if len(distinct(r.get(c) for r in rows)) > 1]


def _colors_for(rows: Sequence[Row], colors: Mapping[str, str] | None) -> Mapping[str, str]:
    if colors is not None:
        return colors
    return system_colors([str(r.get("system") or "") for r in rows])


# --- metric against one swept axis ------------------------------------------------------------


@dataclass
class _Line:
    """One drawn line: one system at one combination of the other varying axes (and seed)."""

    system: str
    label: str
    variant: Any
    xy: list[tuple[float, float]] = field(default_factory=list)


def _plotted_points(rows: Sequence[Row], metric: str, axis: str) -> list[tuple[Row, float]]:
    """The successful rows that have ``axis`` and a finite ``metric``, with that value."""
    points = []
    for row in rows:
        value = as_number(row.get(metric))
        if is_ok(row) and value is not None and axis in row:
            points.append((row, value))
    return points


def _x_positions(rows: Sequence[Row], x_values: Sequence[Any], axis: str) -> dict[Any, float]:
    """Where each ``axis`` value sits: itself when all are numbers, else its category index in
    first-seen order over all rows (failed ones included, so categories keep their place)."""
    if all(as_number(v) is not None for v in x_values):
        return {hashable(v): float(v) for v in x_values}
    categories = distinct(row[axis] for row in rows if axis in row)
    return {hashable(v): float(i) for i, v in enumerate(categories)}


def _line_identity(row: Row, series: str, others: Sequence[str]) -> tuple[str, Any, str]:
    """``(system, variant, label)`` of the line ``row`` belongs to; ``others`` are the other
    columns that vary (other axes, then ``seed``), the variant their values."""
    system = str(row.get(series, "") or "")
    variant = tuple(hashable(row.get(o)) for o in others)
    parts = [system] if system else []
    parts += [f"{o}={format_value(row.get(o))}" for o in others]
    return system, variant, ", ".join(parts)


def _lines(
    points: Sequence[tuple[Row, float]],
    axis: str,
    positions: Mapping[Any, float],
    series: str,
    others: Sequence[str],
) -> list[_Line]:
    """The points grouped into lines, each sorted by x. Raises ValueError when a line has two
    points at one x (a swept axis is missing from ``others``)."""
    lines: dict[tuple[str, Any], _Line] = {}
    for row, value in points:
        system, variant, label = _line_identity(row, series, others)
        line = lines.setdefault((system, variant), _Line(system, label, variant))
        line.xy.append((positions[hashable(row[axis])], value))
    for line in lines.values():
        line.xy.sort()
        xs = [x for x, _ in line.xy]
        if len(set(xs)) != len(xs):
            raise ValueError(
                f"metric_vs_axis: series {line.label!r} has several points at one {axis!r} "
                "value; pass every swept axis in `axes` so that series are well defined"
            )
    return list(lines.values())


def _overlap_styles(lines: Sequence[_Line]) -> list[tuple[int, int]]:
    """``(rank, count)`` per line: how many drawn lines have exactly its points and its place
    among them, so coinciding lines can be dashed in turn and all show."""
    groups: dict[tuple[tuple[float, float], ...], list[int]] = {}
    for i, line in enumerate(lines):
        key = tuple((x, float(f"{y:.9g}")) for x, y in line.xy)
        groups.setdefault(key, []).append(i)
    styles = [(0, 1)] * len(lines)
    for members in groups.values():
        for rank, i in enumerate(members):
            styles[i] = (rank, len(members))
    return styles


def _draw_lines(
    ax: Any, lines: Sequence[_Line], colors: Mapping[str, str], factor: float, metric: str
) -> None:
    """One colour per system, one marker per variant; lines drawn over one another take turns
    in a dash pattern and shrinking markers, so each of them shows."""
    variants = distinct(line.variant for line in lines)
    for line, (rank, count) in zip(lines, _overlap_styles(lines), strict=True):
        style: Any = "-" if count == 1 else (rank * _DASH_IN, (_DASH_IN, (count - 1) * _DASH_IN))
        ax.plot(
            [x for x, _ in line.xy],
            [y * factor for _, y in line.xy],
            color=colors.get(line.system, OTHER_COLOR),
            linestyle=style,
            marker=_MARKERS[variants.index(line.variant) % len(_MARKERS)],
            markersize=max(7.0 - 2.0 * rank, 3.0),
            zorder=2 + rank,
            label=line.label or metric,
        )


def _numeric_ticks(ax: Any, x_values: Sequence[Any]) -> None:
    """A log2 x scale with the values as ticks when all are powers of two spanning 4x or more."""
    xs = sorted(float(v) for v in x_values)
    if all(_is_power_of_two(x) for x in xs) and xs[-1] / xs[0] >= 4:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [format_value(v) for v in sorted(x_values, key=float)])
        ax.minorticks_off()


def _category_ticks(ax: Any, rows: Sequence[Row], axis: str) -> None:
    """One tick per category of ``axis``, slanted when the labels would collide."""
    labels = [format_value(v) for v in distinct(row[axis] for row in rows if axis in row)]
    rotate = max(len(t) for t in labels) * len(labels) > 60
    ax.set_xticks(
        list(range(len(labels))),
        labels,
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
    )


def metric_vs_axis(
    rows: Sequence[Row],
    metric: str,
    axis: str,
    *,
    series: str = "system",
    title: str | None = None,
    axes: Sequence[str] | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Plot ``metric`` against the swept ``axis``, one line per well-defined series.

    A series is one value of the ``series`` column (the compared system) together with one
    combination of the values of every *other* swept axis that varies among the plotted points,
    and the seed when several seeds were run. So each drawn line changes only ``axis``; nothing
    is averaged. Lines are labelled ``system, other.axis=value, seed=N`` (only the parts that
    vary or are non-empty) and a legend is shown when there are several. A system has one colour
    (``colors``, default :func:`~gpusim.report.plotting.system_colors` of the rows) and each
    combination of the other axes one marker; lines with identical points are dashed in turn.

    Numeric axes are sorted numerically and drawn on a log2 scale when every value is a power of
    two and they span at least 4x; other axes are drawn as categories in first-seen order.
    Units come from :func:`gpusim.quantities.metric_quantity` and are rescaled by magnitude, with
    the unit on the y label. ``axes`` names the swept-axis columns (default: inferred with
    :func:`gpusim.report.format.infer_axes`). Raises ValueError when two plotted points of one
    series share an ``axis`` value.
    """
    axis_columns = list(axes) if axes is not None else infer_axes(rows)
    points = _plotted_points(rows, metric, axis)
    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    ax.set_title(title or f"{metric} vs {axis}")
    if not points:
        no_data(fig, f"no successful points with {metric!r} and {axis!r}")
        return fig

    plotted = [r for r, _ in points]
    others = _varying([a for a in axis_columns if a not in (axis, series)], plotted)
    others += _varying(["seed"], plotted)
    x_values = distinct(r[axis] for r in plotted)
    lines = _lines(points, axis, _x_positions(rows, x_values, axis), series, others)
    factor, unit = display_scale(metric, (v for _, v in points))
    _draw_lines(ax, lines, _colors_for(rows, colors), factor, metric)

    if all(as_number(v) is not None for v in x_values):
        _numeric_ticks(ax, x_values)
    else:
        _category_ticks(ax, rows, axis)
    ax.set_xlabel(axis)
    ax.set_ylabel(metric_axis_label(metric, unit))
    ax.grid(True, alpha=0.3)
    add_legend(ax, len(lines))
    return fig


# --- speedup over a baseline ------------------------------------------------------------------


@dataclass
class _Comparison:
    """The successful metric values by (system, point key), and one row per point key."""

    values: dict[tuple[str, tuple[Any, ...]], float] = field(default_factory=dict)
    rows: dict[tuple[Any, ...], Row] = field(default_factory=dict)


def _known_systems(rows: Sequence[Row], baseline: str) -> list[str]:
    """The systems of ``rows`` in first-seen order; ValueError when ``baseline`` is not one."""
    systems = [s for s in distinct(str(row.get("system", "") or "") for row in rows) if s]
    if baseline not in systems:
        known = ", ".join(repr(s) for s in systems) or "none"
        raise ValueError(
            f"speedup_bars: baseline {baseline!r} is not a system in the rows (systems: {known})"
        )
    return systems


def _better_of(metric: str) -> Better:
    """The metric's better direction; ValueError for a metric with none (size, flag, count)."""
    better = metric_quantity(metric).better
    if better is Better.NEITHER:
        raise ValueError(
            f"speedup_bars: {metric!r} has no better direction (a size, flag or count), so a "
            "speedup on it means nothing"
        )
    return better


def _comparison(rows: Sequence[Row], metric: str, axis_columns: Sequence[str]) -> _Comparison:
    """Index the successful values of ``metric`` by system and point key (the axis values and
    the seed). Raises ValueError when a system has two points with one key."""
    out = _Comparison()
    for row in rows:
        key = (*(hashable(row.get(a)) for a in axis_columns), hashable(row.get("seed")))
        out.rows.setdefault(key, row)
        system = str(row.get("system", "") or "")
        value = as_number(row.get(metric))
        if not is_ok(row) or value is None or not system:
            continue
        if (system, key) in out.values:
            raise ValueError(
                f"speedup_bars: system {system!r} has several points with the same axis values "
                "and seed; pass every swept axis in `axes`"
            )
        out.values[(system, key)] = value
    return out


def _speedups(
    data: _Comparison, metric: str, system: str, baseline: str, groups: Sequence[tuple[Any, ...]]
) -> list[tuple[int, float]]:
    """``(group index, speedup)`` of ``system`` for each group where it has a defined speedup."""
    out = []
    for g, key in enumerate(groups):
        value = data.values.get((system, key))
        ratio = None if value is None else speedup(metric, value, data.values[(baseline, key)])
        if ratio is not None:
            out.append((g, ratio))
    return out


def _draw_bars(
    ax: Any, per_system: Mapping[str, Sequence[tuple[int, float]]], colors: Mapping[str, str]
) -> None:
    """Side by side within each group, one bar per system in its colour, labelled with its
    value; a dashed line at 1 (as good as the baseline)."""
    width = 0.8 / max(len(per_system), 1)
    for i, (system, bars) in enumerate(per_system.items()):
        if not bars:
            continue
        xs = [g - 0.4 + width * (i + 0.5) for g, _ in bars]
        heights = [r for _, r in bars]
        color = colors.get(system, OTHER_COLOR)
        drawn = ax.bar(xs, heights, width=width * 0.95, label=system, color=color)
        ax.bar_label(drawn, fmt="%.2f", fontsize="x-small", padding=2)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0)


def _group_label(row: Row, varying: Sequence[str]) -> str:
    """A group of bars' label: the value of the one varying axis (its name goes on the x label),
    else ``axis=value`` per varying axis (and seed), one a line."""
    if len(varying) == 1 and varying[0] != "seed":
        return format_value(row.get(varying[0]))
    return "\n".join(f"{a}={format_value(row.get(a))}" for a in varying) or "all points"


def _group_ticks(ax: Any, labels: Sequence[str]) -> None:
    rotate = len(labels) > 6
    ax.set_xticks(
        list(range(len(labels))),
        labels,
        rotation=45 if rotate else 0,
        ha="right" if rotate else "center",
        fontsize="small",
    )
    ax.set_xlim(-0.6, len(labels) - 0.4)


def speedup_bars(
    rows: Sequence[Row],
    metric: str,
    baseline: str,
    *,
    axes: Sequence[str] | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Bars of each system's speedup over ``baseline`` on ``metric``, per matching point.

    A system's point matches a baseline point when every swept-axis value and the seed are
    equal. The speedup (:func:`gpusim.quantities.speedup`) is system / baseline where higher is
    better (throughputs, bandwidths, utilisations) and baseline / system where lower is (times),
    so a bar above the dashed line at 1.0 always means better than the baseline. Bars are grouped
    per axis combination (and seed, when several were run), one bar per non-baseline system in
    its colour (``colors``). Points without a successful match, or whose denominator is 0, get
    no bar. ``axes`` names the swept-axis columns (default: inferred). Raises ValueError when
    ``baseline`` is not a system in ``rows`` or ``metric`` has no better direction.
    """
    systems = _known_systems(rows, baseline)
    better = _better_of(metric)
    axis_columns = [a for a in (axes if axes is not None else infer_axes(rows)) if a != "system"]
    data = _comparison(rows, metric, axis_columns)
    groups = [k for k in data.rows if (baseline, k) in data.values]
    contenders = [s for s in systems if s != baseline]

    fig = new_figure(max(6.0, min(18.0, 1.2 + 0.9 * max(len(groups), 1) * len(contenders))), 4.5)
    ax = fig.add_subplot()
    ratio = "system / baseline" if better is Better.HIGHER else "baseline / system"
    name = metric_quantity(metric).name
    ax.set_title(f"speedup on {name} over {baseline} ({ratio}: {better} {name} is better)")
    if not contenders or not groups:
        no_data(fig, "no successful points to compare with the baseline")
        return fig

    per_system = {s: _speedups(data, metric, s, baseline, groups) for s in contenders}
    _draw_bars(ax, per_system, _colors_for(rows, colors))

    varying = _varying([*axis_columns, "seed"], list(data.rows.values()))
    _group_ticks(ax, [_group_label(data.rows[k], varying) for k in groups])
    if len(varying) == 1 and varying[0] != "seed":
        ax.set_xlabel(varying[0])
    ax.set_ylabel(f"speedup over {baseline} [x] (>1: better)")
    ax.grid(True, axis="y", alpha=0.3)
    add_legend(ax, sum(1 for bars in per_system.values() if bars))
    return fig
