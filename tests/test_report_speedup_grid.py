"""The speedup grid of kernel sweeps: geometric means over the shapes, one grid per GPU, and the
report building it only where a sweep varies sparsity and n with a baseline."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gpusim.report import standard_figures
from gpusim.report.speedup_grid import grid_groups, grid_speedups, speedup_grid_figure

AXES = ["workload.kernel.m", "workload.kernel.n", "workload.kernel.sparsity", "topology"]


def _rows() -> list[dict[str, Any]]:
    """cuBLAS takes 8 us everywhere; Flash-LLM 4 us on the first shape and 1 us on the second
    (speedups 2 and 8: geometric mean 4) on gpu 'a', twice as long on gpu 'b'."""
    rows = []
    for topo, slow in (("a", 1.0), ("b", 2.0)):
        for m, fast_us in ((256, 4.0), (512, 1.0)):
            for n in (8, 16):
                for s in (0.5, 0.9):
                    for system, t_us in (("cuBLAS", 8.0), ("Flash-LLM", fast_us * slow)):
                        rows.append(
                            {
                                "system": system,
                                "workload.kernel.m": m,
                                "workload.kernel.n": n,
                                "workload.kernel.sparsity": s,
                                "topology": topo,
                                "seed": 0,
                                "status": "ok",
                                "kernel_time_s": t_us * 1e-6,
                            }
                        )
    return rows


def test_grid_is_the_geometric_mean_over_shapes_per_gpu() -> None:
    groups = dict(grid_groups(_rows(), AXES))
    assert sorted(groups) == ["topology=a", "topology=b"]
    grid_a = grid_speedups(groups["topology=a"], "kernel_time_s", "cuBLAS", AXES)
    grid_b = grid_speedups(groups["topology=b"], "kernel_time_s", "cuBLAS", AXES)
    assert set(grid_a) == {("Flash-LLM", n, s) for n in (8, 16) for s in (0.5, 0.9)}
    assert all(v == pytest.approx(4.0) for v in grid_a.values())
    assert all(v == pytest.approx(2.0) for v in grid_b.values())
    assert math.isclose(grid_a[("Flash-LLM", 8, 0.5)], math.sqrt(2.0 * 8.0))


def test_the_figure_has_one_panel_per_n() -> None:
    group = dict(grid_groups(_rows(), AXES))["topology=a"]
    fig = speedup_grid_figure(group, "kernel_time_s", "cuBLAS", AXES, label="topology=a")
    assert len(fig.axes) == 2
    assert "topology=a" in fig.texts[0].get_text()


def test_the_report_adds_grids_only_for_sparsity_and_n_sweeps_with_a_baseline() -> None:
    manifest = {"axes": AXES, "systems": ["cuBLAS", "Flash-LLM"], "metrics": ["kernel_time_s"]}
    titles = [t for t, _ in standard_figures(manifest, _rows(), {}, baseline="cuBLAS")]
    grids = [t for t in titles if "by sparsity and n" in t]
    assert len(grids) == 2 and any("topology=b" in t for t in grids)
    no_baseline = [t for t, _ in standard_figures(manifest, _rows(), {})]
    assert not any("by sparsity and n" in t for t in no_baseline)
