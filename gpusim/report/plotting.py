"""Plumbing shared by the report's figures: fresh figures, empty-figure notes, legends, the
system palette and distinct values in first-seen order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from gpusim.report.format import hashable

OTHER_COLOR = "0.6"
"""Grey for whatever has no colour of its own."""


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure with a canvas of its own, so draw() and savefig() need no pyplot."""
    fig = Figure(figsize=(width_in, height_in), layout="tight")
    FigureCanvasAgg(fig)
    return fig


def no_data(fig: Figure, message: str) -> None:
    """Write ``message`` across the figure's (first) axes instead of a plot."""
    ax = fig.axes[0] if fig.axes else fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def add_legend(ax: Any, count: int) -> None:
    """A legend when ``count`` entries are drawn: none for one, outside the axes for many."""
    if count > 8:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    elif count > 1:
        ax.legend(fontsize="small")


def distinct(values: Iterable[Any]) -> list[Any]:
    """The distinct ``values`` in first-seen order (unhashable ones compared by ``repr``)."""
    seen: dict[Any, Any] = {}
    for value in values:
        seen.setdefault(hashable(value), value)
    return list(seen.values())


def system_colors(systems: Sequence[str]) -> dict[str, str]:
    """One colour per system, by position in ``systems``: the report passes the same mapping to
    every chart so a system keeps its colour throughout. Up to 10 systems get the ``tab10``
    colours, up to 20 ``tab20``; beyond that colours repeat."""
    names = [s for s in distinct(systems) if s]
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    size = 10 if len(names) <= 10 else 20
    return {name: to_hex(palette(i % size)) for i, name in enumerate(names)}
