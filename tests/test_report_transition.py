"""The CPU-bound / GPU-bound transition marked on a batch sweep's report figures."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpusim.report import standard_figures
from gpusim.report.transition import transition_figure, transitions

AXES = ["workload.model", "workload.batch"]


def _rows() -> list[dict[str, Any]]:
    rows = []
    point = 0
    # A turns GPU-bound at 4 for model m1 and never for m2; B at 4 for m1 (its GPU-bound point
    # at batch 1 does not count: every larger batch must be GPU-bound) and at 2 for m2
    bound = {
        ("A", "m1"): [1, 1, 0, 0],
        ("A", "m2"): [1, 1, 1, 1],
        ("B", "m1"): [0, 1, 0, 0],
        ("B", "m2"): [1, 0, 0, 0],
    }
    for (system, model), flags in bound.items():
        for batch, flag in zip([1, 2, 4, 8], flags, strict=True):
            rows.append(
                {
                    "point": point,
                    "system": system,
                    "workload.model": model,
                    "workload.batch": batch,
                    "seed": 0,
                    "status": "ok",
                    "cpu_bound": float(flag),
                    "tklqt_s": 1e-3 * batch**2,
                }
            )
            point += 1
    rows.append({"point": point, "system": "A", "status": "failed", "workload.batch": 16})
    return rows


def test_transitions_per_line() -> None:
    assert transitions(_rows(), AXES) == {
        ("A", "m1"): 4,
        ("A", "m2"): None,
        ("B", "m1"): 4,
        ("B", "m2"): 2,
    }


def test_the_figure_marks_each_transition_on_its_line() -> None:
    fig = transition_figure(_rows(), "tklqt_s", AXES)
    ax = fig.axes[0]
    stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
    marked = sorted(
        (float(np.asarray(s.get_xdata())[0]), float(np.asarray(s.get_ydata())[0])) for s in stars
    )
    assert marked == [
        (2.0, 4.0),
        (4.0, 16.0),
        (4.0, 16.0),
    ]  # ms on the y axis: 1e-3 x batch^2 s
    assert ax.get_yscale() == "log"
    assert {t.get_text() for t in ax.texts} == {"b=2", "b=4"}


def test_standard_figures_add_the_transition_figures_for_a_batch_sweep() -> None:
    manifest = {"axes": AXES, "metrics": ["tklqt_s", "cpu_bound"]}
    titles = [t for t, _ in standard_figures(manifest, _rows(), {})]
    assert "tklqt_s vs batch, CPU-bound to GPU-bound transition marked" in titles
    assert not any("cpu_bound vs batch, CPU" in t for t in titles)  # only time metrics
    other = {"axes": ["workload.model"], "metrics": ["tklqt_s", "cpu_bound"]}
    assert not any("transition" in t for t, _ in standard_figures(other, _rows(), {}))
