"""Figures of one run or of a pair of runs: the timeline of a point (:func:`gantt`) and the
per-metric ratio of two runs (:func:`comparison_bars`). Built like :mod:`gpusim.report.figures`:
fresh figures through the object API, no pyplot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from gpusim.engine.trace import TraceEvent, Track
from gpusim.quantities import Better, metric_quantity
from gpusim.report.format import as_number
from gpusim.report.plotting import OTHER_COLOR, new_figure, no_data

MAX_GANTT_BARS = 5000
"""Most bars :func:`gantt` draws in one figure; later events are left out (and the title says)."""

_MAX_GANTT_LEGEND = 10


def _plain_number(value: float, _pos: int | None = None) -> str:
    return f"{value:g}"


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

    fig = new_figure(10.0, min(2.0 + 0.35 * max(len(tracks), 1), 30.0))
    ax = fig.add_subplot()
    ax.set_title(full_title)
    if not drawn:
        no_data(fig, "no slice or async events")
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
            color=[colors.get(e.name, OTHER_COLOR) for e in chosen],
            alpha=alpha,
            edgecolor="none",
        )

    ax.set_yticks([lane_y[t] for t in tracks], [_lane_name(t) for t in tracks], fontsize="small")
    ax.set_ylim(len(tracks) - 0.5, -0.5)  # first lane on top
    ax.set_xlabel(f"time [{unit}]")
    ax.grid(True, axis="x", alpha=0.3)
    handles = [Patch(color=colors[n], label=n if len(n) <= 40 else n[:39] + "…") for n in named]
    if len(busy) > len(named):
        handles.append(Patch(color=OTHER_COLOR, label="other"))
    if len(handles) > 1:
        ax.legend(
            handles=handles,
            fontsize="x-small",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
    return fig


_BETTER_COLOR = "#2a9d4b"
_WORSE_COLOR = "#c0392b"
_RATIO_LEGEND = [
    Patch(color=_BETTER_COLOR, label="B better"),
    Patch(color=_WORSE_COLOR, label="B worse"),
    Patch(color=OTHER_COLOR, label="no better direction, or equal"),
]


def _ratio_color(metric: str, ratio: float) -> str:
    """Green when a B / A ``ratio`` of ``metric`` means B is better, red when worse."""
    better = metric_quantity(metric).better
    if better is Better.NEITHER or ratio == 1.0:
        return OTHER_COLOR
    b_better = (ratio > 1.0) == (better is Better.HIGHER)
    return _BETTER_COLOR if b_better else _WORSE_COLOR


def comparison_bars(
    metrics_a: Mapping[str, float | None],
    metrics_b: Mapping[str, float | None],
    label_a: str,
    label_b: str,
) -> Figure:
    """For ``gpusim compare``: the ratio B / A of every metric both runs report, as horizontal
    bars on a log scale with a line at 1. A bar is green where B is better than A on that metric,
    red where it is worse (the direction from :func:`gpusim.quantities.metric_quantity`; a
    throughput ratio above 1 is better, a time ratio above 1 worse) and grey where the metric has
    no better direction or the two are equal.

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

    fig = new_figure(7.0, min(2.0 + 0.35 * max(len(ratios), 1), 30.0))
    ax = fig.add_subplot()
    ax.set_title(f"{label_b} / {label_a} per metric")
    if not ratios:
        no_data(fig, "no metric is positive in both runs")
    else:
        ys = list(range(len(ratios)))
        values = [r for _, r in ratios]
        colors = [_ratio_color(m, r) for m, r in ratios]
        bars = ax.barh(ys, values, height=0.6, color=colors)
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
        ax.legend(handles=_RATIO_LEGEND, fontsize="x-small", loc="lower right")
    if skipped:
        note = "not compared: " + ", ".join(skipped)
        ax.set_xlabel(f"{ax.get_xlabel()}\n{note}" if ratios else note, fontsize="small")
    return fig
