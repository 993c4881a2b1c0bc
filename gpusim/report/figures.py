"""Figures for sweep reports: pure functions from rows or trace events to a matplotlib Figure.

Every function builds a fresh :class:`matplotlib.figure.Figure` through the object API (no
pyplot, no global figure registry), so they can run on several threads at once and be tested by
inspecting the returned artists. Text is drawn with matplotlib's bundled fonts.

Rows are sweep points as written by the results store: ``point``, ``system``, one column per
swept axis, ``seed``, ``status`` and one float column per metric (None on failed points).
Failed points and missing or non-finite metric values are never plotted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from gpusim.engine.trace import TraceEvent, Track
from gpusim.report.format import (
    as_number,
    display_scale,
    format_value,
    hashable,
    infer_axes,
    is_ok,
    metric_axis_label,
)

MAX_GANTT_BARS = 5000
"""Most bars :func:`gantt` draws in one figure; later events are left out (and the title says)."""

_MAX_GANTT_LEGEND = 10
_OTHER_COLOR = "0.6"


def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), layout="tight")
    FigureCanvasAgg(fig)  # a canvas of its own, so draw() and savefig() need no pyplot
    return fig


def _no_data(fig: Figure, message: str) -> None:
    ax = fig.axes[0] if fig.axes else fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _is_number(value: Any) -> bool:
    return as_number(value) is not None


def _plain_number(value: float, _pos: int | None = None) -> str:
    return f"{value:g}"


def _is_power_of_two(value: float) -> bool:
    if value <= 0:
        return False
    exponent = math.log2(value)
    return abs(exponent - round(exponent)) < 1e-9


def _distinct(values: Iterable[Any]) -> list[Any]:
    seen: dict[Any, Any] = {}
    for value in values:
        seen.setdefault(hashable(value), value)
    return list(seen.values())


def _legend(ax: Any, count: int) -> None:
    if count > 8:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    elif count > 1:
        ax.legend(fontsize="small")


def metric_vs_axis(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    axis: str,
    *,
    series: str = "system",
    title: str | None = None,
    axes: Sequence[str] | None = None,
) -> Figure:
    """Plot ``metric`` against the swept ``axis``, one line per well-defined series.

    A series is one value of the ``series`` column (the compared system) together with one
    combination of the values of every *other* swept axis that varies among the plotted points,
    and the seed when several seeds were run. So each drawn line changes only ``axis``; nothing
    is averaged. Lines are labelled ``system, other.axis=value, seed=N`` (only the parts that
    vary or are non-empty) and a legend is shown when there are several.

    Numeric axes are sorted numerically and drawn on a log2 scale when every value is a power of
    two and they span at least 4x; other axes are drawn as categories in first-seen order.
    Seconds are shown in s/ms/us and bytes in B..TB by magnitude, with the unit on the y label.
    ``axes`` names the swept-axis columns (default: inferred with
    :func:`gpusim.report.format.infer_axes`). Raises ValueError when two plotted points of one
    series share an ``axis`` value.
    """
    axis_columns = list(axes) if axes is not None else infer_axes(rows)
    others = [a for a in axis_columns if a not in (axis, series)]
    points: list[tuple[Mapping[str, Any], float]] = []
    for row in rows:
        value = as_number(row.get(metric))
        if is_ok(row) and value is not None and axis in row:
            points.append((row, value))

    fig = _new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    ax.set_title(title or f"{metric} vs {axis}")
    if not points:
        _no_data(fig, f"no successful points with {metric!r} and {axis!r}")
        return fig

    varying = [a for a in others if len(_distinct(r.get(a) for r, _ in points)) > 1]
    seeds_vary = len(_distinct(r.get("seed") for r, _ in points)) > 1

    x_values = _distinct(r[axis] for r, _ in points)
    numeric = all(_is_number(v) for v in x_values)
    positions: dict[Any, float] = {}
    if numeric:
        positions = {hashable(v): float(v) for v in x_values}
    else:
        categories = _distinct(row[axis] for row in rows if axis in row)
        positions = {hashable(v): float(i) for i, v in enumerate(categories)}

    lines: dict[tuple[Any, ...], list[tuple[float, float]]] = {}
    labels: dict[tuple[Any, ...], str] = {}
    for row, value in points:
        key_parts: list[Any] = [hashable(row.get(series, ""))]
        label_parts: list[str] = []
        if str(row.get(series, "") or ""):
            label_parts.append(str(row[series]))
        for other in varying:
            key_parts.append(hashable(row.get(other)))
            label_parts.append(f"{other}={format_value(row.get(other))}")
        if seeds_vary:
            key_parts.append(hashable(row.get("seed")))
            label_parts.append(f"seed={format_value(row.get('seed'))}")
        key = tuple(key_parts)
        labels[key] = ", ".join(label_parts) or metric
        lines.setdefault(key, []).append((positions[hashable(row[axis])], value))

    factor, unit = display_scale(metric, (v for _, v in points))
    for key, xy in lines.items():
        xy.sort()
        xs = [x for x, _ in xy]
        if len(set(xs)) != len(xs):
            raise ValueError(
                f"metric_vs_axis: series {labels[key]!r} has several points at one {axis!r} "
                "value; pass every swept axis in `axes` so that series are well defined"
            )
        ax.plot(xs, [y * factor for _, y in xy], marker="o", label=labels[key])

    if numeric:
        xs_all = sorted(positions.values())
        if (
            all(_is_power_of_two(x) for x in xs_all)
            and xs_all[0] > 0
            and xs_all[-1] / xs_all[0] >= 4
        ):
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs_all, [format_value(v) for v in sorted(x_values, key=float)])
            ax.minorticks_off()
    else:
        ordered = sorted(positions.items(), key=lambda kv: kv[1])
        shown = {hashable(v): v for v in _distinct(row[axis] for row in rows if axis in row)}
        tick_labels = [format_value(shown[k]) for k, _ in ordered]
        rotate = max(len(t) for t in tick_labels) * len(tick_labels) > 60
        ax.set_xticks(
            [p for _, p in ordered],
            tick_labels,
            rotation=30 if rotate else 0,
            ha="right" if rotate else "center",
        )
    ax.set_xlabel(axis)
    ax.set_ylabel(metric_axis_label(metric, unit))
    ax.grid(True, alpha=0.3)
    _legend(ax, len(lines))
    return fig


def speedup_bars(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    baseline: str,
    *,
    lower_is_better: bool = True,
    axes: Sequence[str] | None = None,
) -> Figure:
    """Bars of each system's speedup over ``baseline`` on ``metric``, per matching point.

    A system's point matches a baseline point when every swept-axis value and the seed are
    equal. The speedup is baseline / system when ``lower_is_better`` (times) and system /
    baseline otherwise (throughputs). Bars are grouped per axis combination (and seed, when
    several were run), one bar per non-baseline system, with a dashed line at 1.0. Points
    without a successful match, or whose denominator is 0, get no bar. ``axes`` names the
    swept-axis columns (default: inferred). Raises ValueError when ``baseline`` is not a system
    in ``rows``.
    """
    systems = _distinct(str(row.get("system", "") or "") for row in rows)
    systems = [s for s in systems if s]
    if baseline not in systems:
        known = ", ".join(repr(s) for s in systems) or "none"
        raise ValueError(
            f"speedup_bars: baseline {baseline!r} is not a system in the rows (systems: {known})"
        )
    axis_columns = [a for a in (list(axes) if axes is not None else infer_axes(rows))]
    axis_columns = [a for a in axis_columns if a != "system"]

    def key_of(row: Mapping[str, Any]) -> tuple[Any, ...]:
        return (*(hashable(row.get(a)) for a in axis_columns), hashable(row.get("seed")))

    ok_values: dict[tuple[str, tuple[Any, ...]], float] = {}
    group_rows: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for row in rows:
        system = str(row.get("system", "") or "")
        key = key_of(row)
        group_rows.setdefault(key, row)
        value = as_number(row.get(metric))
        if not is_ok(row) or value is None or not system:
            continue
        if (system, key) in ok_values:
            raise ValueError(
                f"speedup_bars: system {system!r} has several points with the same axis values "
                "and seed; pass every swept axis in `axes`"
            )
        ok_values[(system, key)] = value

    seeds_vary = len(_distinct(r.get("seed") for r in group_rows.values())) > 1
    varying = [a for a in axis_columns if len(_distinct(r.get(a) for r in group_rows.values())) > 1]
    groups = [k for k in group_rows if (baseline, k) in ok_values]
    contenders = [s for s in systems if s != baseline]

    n_groups = max(len(groups), 1)
    fig = _new_figure(max(6.0, min(18.0, 1.2 + 0.9 * n_groups * max(len(contenders), 1))), 4.5)
    ax = fig.add_subplot()
    direction = "baseline / system" if lower_is_better else "system / baseline"
    ax.set_title(f"speedup on {metric} over {baseline} ({direction})")
    if not contenders or not groups:
        _no_data(fig, "no successful points to compare with the baseline")
        return fig

    width = 0.8 / len(contenders)
    drawn = 0
    for i, system in enumerate(contenders):
        xs: list[float] = []
        heights: list[float] = []
        for g, key in enumerate(groups):
            value = ok_values.get((system, key))
            if value is None:
                continue
            base = ok_values[(baseline, key)]
            num, den = (base, value) if lower_is_better else (value, base)
            if den == 0:
                continue
            xs.append(g - 0.4 + width * (i + 0.5))
            heights.append(num / den)
        if xs:
            bars = ax.bar(xs, heights, width=width * 0.95, label=system, color=f"C{i}")
            ax.bar_label(bars, fmt="%.2f", fontsize="x-small", padding=2)
            drawn += 1
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0)

    single_axis = len(varying) == 1 and not seeds_vary

    def group_label(key: tuple[Any, ...]) -> str:
        row = group_rows[key]
        if single_axis:  # the axis name goes on the x label once
            return format_value(row.get(varying[0]))
        parts = [f"{a}={format_value(row.get(a))}" for a in varying]
        if seeds_vary:
            parts.append(f"seed={format_value(row.get('seed'))}")
        return "\n".join(parts) or "all points"

    if single_axis:
        ax.set_xlabel(varying[0])

    labels = [group_label(k) for k in groups]
    rotate = len(groups) > 6
    ax.set_xticks(
        list(range(len(groups))),
        labels,
        rotation=45 if rotate else 0,
        ha="right" if rotate else "center",
        fontsize="small",
    )
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel("speedup [x]")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax, drawn)
    return fig


def _lane_name(track: Track) -> str:
    return f"{track.group} / {track.lane}" if track.lane else track.group


def gantt(events: Sequence[TraceEvent], *, title: str, max_bars: int = MAX_GANTT_BARS) -> Figure:
    """Timeline of one point: one horizontal lane per track of 'slice' and 'async' events.

    Lanes are ordered by group, then lane, in first-seen order, top to bottom. Slices are solid
    bars; async events (which may overlap on a lane) are thinner, translucent bars so overlaps
    show. Counters are ignored. The ten event names with the most total time get their own
    colour (in the legend), the rest are grey. Time is in us, or in ms when the timeline reaches
    1 ms. At most ``max_bars`` bars are drawn (the earliest by start time); the title says when
    some were left out.
    """
    spans = [e for e in events if e.kind in ("slice", "async")]
    group_order: dict[str, int] = {}
    lane_order: dict[Track, int] = {}
    for ev in spans:
        group_order.setdefault(ev.track.group, len(group_order))
        lane_order.setdefault(ev.track, len(lane_order))
    tracks = sorted(lane_order, key=lambda t: (group_order[t.group], lane_order[t]))
    lane_y = {track: float(i) for i, track in enumerate(tracks)}

    drawn = sorted(spans, key=lambda e: e.start_s)
    truncated = len(drawn) > max_bars
    if truncated:
        drawn = drawn[:max_bars]
    full_title = f"{title} (first {max_bars} of {len(spans)} bars shown)" if truncated else title

    fig = _new_figure(10.0, min(2.0 + 0.35 * max(len(tracks), 1), 30.0))
    ax = fig.add_subplot()
    ax.set_title(full_title)
    if not drawn:
        _no_data(fig, "no slice or async events")
        return fig

    end_s = max(max(e.end_s for e in drawn), max(e.start_s for e in drawn))
    factor, unit = (1e3, "ms") if end_s >= 1e-3 else (1e6, "us")

    busy: dict[str, float] = {}
    for ev in drawn:
        busy[ev.name] = busy.get(ev.name, 0.0) + max(ev.end_s - ev.start_s, 0.0)
    named = sorted(busy, key=lambda name: -busy[name])[:_MAX_GANTT_LEGEND]
    colors = {name: f"C{i}" for i, name in enumerate(named)}

    for kind, height, alpha in (("slice", 0.8, 1.0), ("async", 0.5, 0.35)):
        chosen = [e for e in drawn if e.kind == kind]
        if not chosen:
            continue
        ax.barh(
            [lane_y[e.track] for e in chosen],
            [max(e.end_s - e.start_s, 0.0) * factor for e in chosen],
            left=[e.start_s * factor for e in chosen],
            height=height,
            color=[colors.get(e.name, _OTHER_COLOR) for e in chosen],
            alpha=alpha,
            edgecolor="none",
        )

    ax.set_yticks([lane_y[t] for t in tracks], [_lane_name(t) for t in tracks], fontsize="small")
    ax.set_ylim(len(tracks) - 0.5, -0.5)  # first lane on top
    ax.set_xlabel(f"time [{unit}]")
    ax.grid(True, axis="x", alpha=0.3)
    handles = [Patch(color=colors[n], label=n if len(n) <= 40 else n[:39] + "…") for n in named]
    if len(busy) > len(named):
        handles.append(Patch(color=_OTHER_COLOR, label="other"))
    if len(handles) > 1:
        ax.legend(
            handles=handles,
            fontsize="x-small",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
    return fig


def comparison_bars(
    metrics_a: Mapping[str, float | None],
    metrics_b: Mapping[str, float | None],
    label_a: str,
    label_b: str,
) -> Figure:
    """For ``gpusim compare``: the ratio B / A of every metric both runs report, as horizontal
    bars on a log scale with a line at 1.

    Metrics missing from either side, non-finite, or not positive in both (a ratio on a log
    scale needs both) are left out and named under the plot.
    """
    shared = [m for m in metrics_a if m in metrics_b]
    ratios: list[tuple[str, float]] = []
    skipped: list[str] = []
    for metric in shared:
        a = as_number(metrics_a[metric])
        b = as_number(metrics_b[metric])
        if a is None or b is None or a <= 0 or b <= 0:
            skipped.append(metric)
        else:
            ratios.append((metric, b / a))

    fig = _new_figure(7.0, min(2.0 + 0.35 * max(len(ratios), 1), 30.0))
    ax = fig.add_subplot()
    ax.set_title(f"{label_b} / {label_a} per metric")
    if not ratios:
        _no_data(fig, "no metric is positive in both runs")
    else:
        ys = list(range(len(ratios)))
        values = [r for _, r in ratios]
        bars = ax.barh(ys, values, height=0.6, color="C0")
        ax.bar_label(bars, labels=[f"{r:.3g}x" for r in values], fontsize="x-small", padding=2)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_plain_number))
        ax.xaxis.set_minor_formatter(FuncFormatter(_plain_number))
        lo, hi = min(min(values), 1.0), max(max(values), 1.0)
        ax.set_xlim(lo / 1.6, hi * 1.6)
        ax.axvline(1.0, color="black", linestyle="--", linewidth=1.0)
        ax.set_yticks(ys, [m for m, _ in ratios], fontsize="small")
        ax.set_ylim(len(ratios) - 0.5, -0.5)
        ax.set_xlabel(f"ratio {label_b} / {label_a} (log scale)")
        ax.grid(True, axis="x", alpha=0.3)
    if skipped:
        note = "not compared: " + ", ".join(skipped)
        ax.set_xlabel(f"{ax.get_xlabel()}\n{note}" if ratios else note, fontsize="small")
    return fig
