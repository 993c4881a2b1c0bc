"""Figures of per-step series across compared runs: MaxVio against training step for several
balancing methods (ALF Fig. 3's view). Built like :mod:`gpusim.report.figures`: fresh figures
through the object API, no pyplot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from gpusim.report.plotting import add_legend, new_figure, no_data, system_colors


def moving_mean(values: Sequence[float], window_steps: int) -> np.ndarray:
    """The mean of each step's last ``window_steps`` values (fewer at the start): entry i is the
    mean of ``values[max(0, i - window_steps + 1) .. i]``."""
    if window_steps < 1:
        raise ValueError(f"window_steps must be at least 1, got {window_steps}")
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x
    cumulative = np.concatenate(([0.0], np.cumsum(x)))
    ends = np.arange(1, x.size + 1)
    starts = np.maximum(0, ends - window_steps)
    out: np.ndarray = (cumulative[ends] - cumulative[starts]) / (ends - starts)
    return out


def series_vs_step(
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    ylabel: str,
    window_steps: int = 1,
    log_y: bool = True,
) -> Figure:
    """One line per run of ``series`` (run name -> one value per step, step 1 first), each the
    :func:`moving_mean` over ``window_steps`` steps (ALF Fig. 3 averages 100). A log y axis
    by default (MaxVio spans decades); non-positive values are left out of a log plot."""
    fig = new_figure(8.0, 4.5)
    ax = fig.add_subplot()
    ax.set_title(title)
    drawn = 0
    colors = system_colors(list(series))
    for name, values in series.items():
        y = moving_mean(values, window_steps)
        steps = np.arange(1, y.size + 1)
        keep = y > 0 if log_y else np.ones(y.size, dtype=bool)
        if not keep.any():
            continue
        ax.plot(steps[keep], y[keep], label=name, color=colors[name], linewidth=1.2)
        drawn += 1
    if not drawn:
        no_data(fig, "no values to plot")
        return fig
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    smoothing = f" (mean over {window_steps} steps)" if window_steps > 1 else ""
    ax.set_ylabel(ylabel + smoothing)
    ax.grid(True, alpha=0.3)
    add_legend(ax, drawn)
    return fig


__all__ = ["moving_mean", "series_vs_step"]
