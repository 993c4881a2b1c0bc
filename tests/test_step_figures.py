"""Per-step series figures (gpusim.report.step_figures): the moving mean's closed form and the
lines a figure draws."""

from __future__ import annotations

import numpy as np
import pytest

from gpusim.report.step_figures import moving_mean, series_vs_step


def test_moving_mean_closed_form() -> None:
    # window 2: [1], [1, 3], [3, 5], [5, 7]
    assert moving_mean([1.0, 3.0, 5.0, 7.0], 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert moving_mean([4.0, 2.0], 1).tolist() == [4.0, 2.0]
    assert moving_mean([], 3).size == 0
    with pytest.raises(ValueError, match="at least 1"):
        moving_mean([1.0], 0)


def test_series_vs_step_draws_one_smoothed_line_per_run() -> None:
    series = {"none": [2.0, 2.0, 2.0], "alf": [2.0, 1.0, 0.5], "zero": [0.0, 0.0, 0.0]}
    fig = series_vs_step(series, title="t", ylabel="MaxVio", window_steps=2)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"none", "alf"}  # all-zero runs have nothing on a log axis
    assert np.allclose(lines["alf"].get_ydata(), [2.0, 1.5, 0.75])
    assert ax.get_yscale() == "log"
    assert "mean over 2 steps" in ax.get_ylabel()


def test_series_vs_step_without_values_says_so() -> None:
    fig = series_vs_step({"zero": [0.0]}, title="t", ylabel="MaxVio")
    assert "no values to plot" in fig.axes[0].texts[0].get_text()
    linear = series_vs_step({"zero": [0.0]}, title="t", ylabel="MaxVio", log_y=False)
    assert len(linear.axes[0].get_lines()) == 1
