"""The CPU-bound / GPU-bound transition marked on a batch sweep (SKIP; docs/llm_inference.md).

A sweep whose points report ``cpu_bound`` and vary ``workload.batch`` gets, for each of its
time metrics, the usual line figure with every line's transition batch marked: the smallest batch
from which every larger one is GPU-bound
(:func:`gpusim.workloads.llm.metrics.transition_batch`), computed from the points, not
re-simulated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from matplotlib.figure import Figure

from gpusim.report.figures import metric_vs_axis
from gpusim.report.format import as_number, display_scale, hashable, is_ok
from gpusim.report.plotting import system_colors
from gpusim.workloads.llm.metrics import transition_batch

BATCH_AXIS: Final = "workload.batch"
CLASSIFICATION: Final = "cpu_bound"

Row = Mapping[str, Any]


def marks_transitions(axes: Sequence[str], metrics: Sequence[str]) -> bool:
    """Whether a sweep of these axes and metrics gets transition figures."""
    return BATCH_AXIS in axes and CLASSIFICATION in metrics


def transitions(rows: Sequence[Row], axes: Sequence[str]) -> dict[tuple[Any, ...], int | None]:
    """Per line (the system and every other swept axis's value): its transition batch."""
    others = [a for a in axes if a != BATCH_AXIS]
    groups: dict[tuple[Any, ...], list[tuple[int, float]]] = {}
    for row in rows:
        bound = as_number(row.get(CLASSIFICATION))
        batch = as_number(row.get(BATCH_AXIS))
        if not is_ok(row) or bound is None or batch is None:
            continue
        key = (row.get("system"), *(hashable(row.get(a)) for a in others))
        groups.setdefault(key, []).append((int(batch), bound))
    return {
        key: transition_batch([b for b, _ in pts], [c for _, c in pts])
        for key, pts in groups.items()
    }


def transition_figure(
    rows: Sequence[Row],
    metric: str,
    axes: Sequence[str],
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """``metric`` against the batch, one line per system and other axis value, each line's
    transition batch marked with a star and its value; the y axis is logarithmic (TKLQT's
    plateau and its rise span orders of magnitude) when every value is positive."""
    if colors is None:
        colors = system_colors(list(dict.fromkeys(str(r.get("system")) for r in rows)))
    title = f"{metric} vs batch, CPU-bound to GPU-bound transition marked (*)"
    fig = metric_vs_axis(rows, metric, BATCH_AXIS, title=title, axes=axes, colors=colors)
    ax = fig.axes[0]
    others = [a for a in axes if a != BATCH_AXIS]
    values = [v for row in rows if is_ok(row) and (v := as_number(row.get(metric))) is not None]
    if not values:
        return fig
    factor, _ = display_scale(metric, values)
    if min(values) > 0:
        ax.set_yscale("log")
    for key, batch in transitions(rows, axes).items():
        if batch is None:
            continue
        for row in rows:
            here = (row.get("system"), *(hashable(row.get(a)) for a in others))
            value = as_number(row.get(metric))
            if here == key and row.get(BATCH_AXIS) == batch and value is not None:
                y = value * factor
                color = colors.get(str(key[0]), "black")
                ax.plot([batch], [y], marker="*", markersize=14, color=color, markeredgecolor="k")
                ax.annotate(f"b={batch}", (batch, y), textcoords="offset points", xytext=(6, -12))
                break
    return fig
