"""Small multiples of heatmaps: one panel per group, a metric over two swept axes (speculative
decoding's tokens/s against memory budget and draft correctness, one panel per strategy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from gpusim.report.plotting import new_figure

Grid = Mapping[tuple[float, float], float]
"""A metric by (x value, y value)."""


def heatmap_panels(
    panels: Mapping[str, Grid],
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    xlabel: str,
    ylabel: str,
    metric: str,
) -> Figure:
    """One heatmap per panel on a shared colour scale, each cell labelled with its value; a
    missing cell is left blank."""
    n = max(len(panels), 1)
    fig = new_figure(3.2 * n + 1.0, 3.4)
    fig.set_layout_engine("constrained")  # room for the shared colour bar
    values = [v for grid in panels.values() for v in grid.values()]
    vmin, vmax = (min(values), max(values)) if values else (0.0, 1.0)
    image = None
    for i, (name, grid) in enumerate(panels.items()):
        ax = fig.add_subplot(1, n, i + 1)
        cells = np.full((len(ys), len(xs)), np.nan)
        for (x, y), value in grid.items():
            cells[list(ys).index(y), list(xs).index(x)] = value
        image = ax.imshow(cells, origin="lower", aspect="auto", vmin=vmin, vmax=vmax)
        for (x, y), value in grid.items():
            ax.text(
                list(xs).index(x),
                list(ys).index(y),
                f"{value:.3g}",
                ha="center",
                va="center",
                fontsize="x-small",
                color="white" if value < (vmin + vmax) / 2 else "black",
            )
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys] if i == 0 else [])
        ax.set_xlabel(xlabel)
        if i == 0:
            ax.set_ylabel(ylabel)
        ax.set_title(name)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, label=metric, shrink=0.9)
    return fig


__all__ = ["Grid", "heatmap_panels"]
