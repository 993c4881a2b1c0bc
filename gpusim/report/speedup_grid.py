"""Speedup small multiples for kernel sweeps (Flash-LLM's figure: speedup over cuBLAS against
sparsity, one panel per N; docs/sparse.md).

A sweep with a baseline system that varies both :data:`GRID_X` and :data:`GRID_PANEL` gets, per
time or rate metric, one panel per panel-axis value: each other system's speedup over the
baseline against the x axis, the geometric mean over every other swept axis (the weight shapes)
and seed at matching points. Nothing is re-simulated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from matplotlib.figure import Figure

from gpusim.quantities import metric_quantity, speedup
from gpusim.report.format import as_number, hashable, is_ok
from gpusim.report.plotting import add_legend, distinct, new_figure, no_data, system_colors

GRID_X: Final = "workload.kernel.sparsity"
GRID_PANEL: Final = "workload.kernel.n"

Row = Mapping[str, Any]


def has_speedup_grid(axes: Sequence[str], baseline: str | None) -> bool:
    """Whether a sweep of these axes (with this baseline) gets speedup grids."""
    return baseline is not None and GRID_X in axes and GRID_PANEL in axes


def grid_groups(rows: Sequence[Row], axes: Sequence[str]) -> list[tuple[str, list[Row]]]:
    """The rows split by every categorical axis besides the grid's (a GPU or topology axis):
    one grid per combination, labelled ``axis=value, ...`` (a single unlabelled group when
    there is none). Numeric axes (shapes, batch) are averaged over inside a grid."""
    categorical = [
        a
        for a in axes
        if a not in (GRID_X, GRID_PANEL, "system")
        and any(as_number(r.get(a)) is None and r.get(a) is not None for r in rows)
    ]
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(hashable(row.get(a)) for a in categorical), []).append(row)
    return [
        (", ".join(f"{a}={v}" for a, v in zip(categorical, key, strict=True)), members)
        for key, members in groups.items()
    ]


def grid_speedups(
    rows: Sequence[Row], metric: str, baseline: str, axes: Sequence[str]
) -> dict[tuple[str, Any, Any], float]:
    """``(system, panel value, x value) -> geometric-mean speedup`` over the baseline at the
    points that match on every swept axis and the seed."""
    key_axes = [a for a in axes if a != "system"]
    values: dict[tuple[str, tuple[Any, ...]], float] = {}
    for row in rows:
        value = as_number(row.get(metric))
        system = str(row.get("system") or "")
        if is_ok(row) and value is not None and system:
            key = (*(hashable(row.get(a)) for a in key_axes), hashable(row.get("seed")))
            values[(system, key)] = value
    panel_i, x_i = key_axes.index(GRID_PANEL), key_axes.index(GRID_X)
    logs: dict[tuple[str, Any, Any], list[float]] = {}
    for (system, key), value in values.items():
        base = values.get((baseline, key))
        if system == baseline or base is None:
            continue
        ratio = speedup(metric, value, base)
        if ratio is not None and ratio > 0:
            logs.setdefault((system, key[panel_i], key[x_i]), []).append(math.log(ratio))
    return {k: math.exp(sum(v) / len(v)) for k, v in logs.items()}


def speedup_grid_figure(
    rows: Sequence[Row],
    metric: str,
    baseline: str,
    axes: Sequence[str],
    colors: Mapping[str, str] | None = None,
    label: str = "",
) -> Figure:
    """One panel per :data:`GRID_PANEL` value: every non-baseline system's geometric-mean
    speedup on ``metric`` against :data:`GRID_X` (see the module docstring); ``label`` names
    the group of rows (:func:`grid_groups`) in the title."""
    grid = grid_speedups(rows, metric, baseline, axes)
    panels = sorted({p for _, p, _ in grid}, key=lambda v: as_number(v) or 0.0)
    fig = new_figure(max(6.0, 3.2 * max(len(panels), 1)), 4.0)
    if not grid:
        no_data(fig, f"no point of another system matches {baseline!r}")
        return fig
    systems = distinct(s for s, _, _ in grid)
    palette = colors or system_colors(systems)
    name = metric_quantity(metric).name
    where = f", {label}" if label else ""
    fig.suptitle(f"speedup on {name} over {baseline}{where} (geometric mean over the other axes)")
    first = None
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, sharey=first)
        first = first or ax
        for system in systems:
            xy = sorted(
                (as_number(x) or 0.0, v)
                for (s, p, x), v in grid.items()
                if s == system and p == panel
            )
            if xy:
                ax.plot(*zip(*xy, strict=True), marker="o", color=palette.get(system), label=system)
        ax.axhline(1.0, color="0.4", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{GRID_PANEL.rsplit('.', 1)[-1]} = {panel}")
        ax.set_xlabel(GRID_X.rsplit(".", 1)[-1])
        ax.grid(True, alpha=0.3)
        if i == 0:
            ax.set_ylabel(f"speedup over {baseline} [x]")
            add_legend(ax, len(systems))
    return fig
