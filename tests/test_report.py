"""The sweep report: figures draw exactly the series and bars the rows define, failed points are
skipped, and the HTML/PDF outputs are self-contained and written atomically."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from gpusim.engine.trace import TraceEvent, Track
from gpusim.report import standard_figures, write_report
from gpusim.report.figures import comparison_bars, gantt, metric_vs_axis, speedup_bars
from gpusim.report.format import display_scale, format_metric, infer_axes
from gpusim.report.html import render_html

M = "workload.gemm.m"
TOPO = "topology"
SYSTEM_FACTOR = {"base": 1.0, "fast": 0.5, "slow": 1.6}
TOPO_FACTOR = {"hgx_h100_8gpu": 1.0, "gh200_x4": 0.8}
ERROR = "CUDA out of memory: <b>boom</b>"


def _row(point: int, system: str, axes: dict[str, Any], makespan_s: float | None) -> dict[str, Any]:
    ok = makespan_s is not None
    return {
        "point": point,
        "system": system,
        **axes,
        "seed": 0,
        "status": "ok" if ok else "failed",
        "error": "" if ok else ERROR,
        "scenario_hash": f"h{point}",
        "profile_id": "test-profile",
        "fidelity": "des",
        "gpusim_version": "0.1.0",
        "git_rev": "abc123",
        "wall_s": 0.01,
        "makespan_s": makespan_s,
        "bytes_moved": None if makespan_s is None else 1e9 * (point + 1),
    }


def one_axis_rows() -> list[dict[str, Any]]:
    """2 systems x 3 values of m x 1 seed, plus a failed point (slow, m=8192)."""
    rows: list[dict[str, Any]] = []
    for system in ("base", "slow"):
        for m in (1024, 2048, 4096):
            rows.append(_row(len(rows), system, {M: m}, m * 1e-6 * SYSTEM_FACTOR[system]))
    rows.append(_row(len(rows), "slow", {M: 8192}, None))
    return rows


def two_axis_rows() -> list[dict[str, Any]]:
    """3 systems x 3 values of m x 2 topologies x 1 seed."""
    rows: list[dict[str, Any]] = []
    for system in ("base", "fast", "slow"):
        for m in (1024, 2048, 4096):
            for topo in TOPO_FACTOR:
                makespan = m * 1e-6 * SYSTEM_FACTOR[system] * TOPO_FACTOR[topo] + 1e-5 * len(rows)
                rows.append(_row(len(rows), system, {M: m, TOPO: topo}, makespan))
    return rows


def _manifest(rows: list[dict[str, Any]], axes: list[str]) -> dict[str, Any]:
    systems = list(dict.fromkeys(r["system"] for r in rows))
    return {
        "name": "gemm sweep",
        "description": "a synthetic sweep <for tests>",
        "axes": axes,
        "systems": systems,
        "metrics": ["makespan_s", "bytes_moved"],
        "points": len(rows),
    }


def _events() -> list[TraceEvent]:
    gpu0 = Track("gpu0", "stream 0")
    gpu1 = Track("gpu1", "stream 0")
    link = Track("links", "nvlink gpu0->sw")
    return [
        TraceEvent("slice", gpu0, "gemm", 0.0, 10e-6),
        TraceEvent("slice", gpu1, "gemm", 1e-6, 11e-6),
        TraceEvent("async", link, "msg", 2e-6, 8e-6),
        TraceEvent("async", link, "msg", 3e-6, 9e-6),
        TraceEvent("slice", gpu0, "alltoall", 12e-6, 20e-6),
        TraceEvent("counter", link, "utilisation", 2e-6, 2e-6, 0.5),
        TraceEvent("slice", gpu0, "gemm", 21e-6, 30e-6),
        TraceEvent("slice", gpu1, "alltoall", 12e-6, 19e-6),
    ]


def _only_axes(fig: Figure) -> Any:
    assert len(fig.axes) == 1
    return fig.axes[0]


def test_infer_axes_and_units() -> None:
    assert infer_axes(two_axis_rows()) == [M, TOPO]
    assert infer_axes(one_axis_rows()) == [M]
    assert format_metric("makespan_s", 0.0015) == "1.5 ms"
    assert format_metric("alltoall_s", 2.5e-5) == "25 us"
    assert format_metric("moved_B", 3e9) == "3 GB"
    assert format_metric("bw_GBps", 812.5) == "812.5 GB/s"
    assert format_metric("sm_utilisation", 0.5) == "0.5"
    assert format_metric("makespan_s", None) == "—"
    assert display_scale("makespan_s", [2.0, 0.1]) == (1.0, "s")


def test_metric_vs_axis_one_line_per_system_and_skips_failed_points() -> None:
    fig = metric_vs_axis(one_axis_rows(), "makespan_s", M)
    ax = _only_axes(fig)
    lines = ax.get_lines()
    assert sorted(line.get_label() for line in lines) == ["base", "slow"]
    for line in lines:
        assert list(line.get_xdata()) == [1024.0, 2048.0, 4096.0]  # the failed m=8192 is skipped
    slow = next(line for line in lines if line.get_label() == "slow")
    # 1.6 * m us, displayed in ms
    assert list(slow.get_ydata()) == pytest.approx([1.6 * m * 1e-3 for m in (1024, 2048, 4096)])
    assert ax.get_yscale() == "linear" and ax.get_xscale() == "log"  # powers of two over 4x
    assert ax.get_ylabel() == "makespan [ms]"
    assert ax.get_legend() is not None


def test_metric_vs_axis_splits_lines_by_the_other_varying_axis() -> None:
    rows = two_axis_rows()
    ax = _only_axes(metric_vs_axis(rows, "makespan_s", M))
    lines = ax.get_lines()
    assert len(lines) == 3 * 2  # systems x topology values
    labels = {line.get_label() for line in lines}
    assert "fast, topology=gh200_x4" in labels and len(labels) == 6
    assert all(len(line.get_xdata()) == 3 for line in lines)

    ax = _only_axes(metric_vs_axis(rows, "makespan_s", TOPO))  # categorical axis
    lines = ax.get_lines()
    assert len(lines) == 3 * 3  # systems x m values
    assert [t.get_text() for t in ax.get_xticklabels()] == list(TOPO_FACTOR)
    assert all(list(line.get_xdata()) == [0.0, 1.0] for line in lines)


def test_metric_vs_axis_without_systems_has_a_single_unlabelled_series() -> None:
    rows = [r | {"system": ""} for r in one_axis_rows() if r["system"] == "base"]
    ax = _only_axes(metric_vs_axis(rows, "bytes_moved", M))
    assert len(ax.get_lines()) == 1
    assert ax.get_legend() is None


def _bar_heights(ax: Any) -> dict[str | None, list[float]]:
    return {
        c.get_label(): [p.get_height() for p in c.patches]
        for c in ax.containers
        if isinstance(c, BarContainer)
    }


def test_speedup_bars_count_and_ratios() -> None:
    rows = two_axis_rows()
    ax = _only_axes(speedup_bars(rows, "makespan_s", "base"))
    assert len(ax.patches) == (3 - 1) * (3 * 2)
    value = {(r["system"], r[M], r[TOPO]): r["makespan_s"] for r in rows}
    combos = [(m, t) for m in (1024, 2048, 4096) for t in TOPO_FACTOR]
    expected = {
        s: [value[("base", m, t)] / value[(s, m, t)] for m, t in combos] for s in ("fast", "slow")
    }
    heights = _bar_heights(ax)
    assert heights.keys() == expected.keys()
    for system, ratios in expected.items():
        assert heights[system] == pytest.approx(ratios)
    assert any(list(line.get_ydata()) == [1.0, 1.0] for line in ax.get_lines())


def test_report_speedup_direction_for_a_higher_is_better_metric() -> None:
    """A throughput (``_per_s``, a rate and not a time) is higher-is-better: its speedup is
    system / baseline, so the system that does twice the tokens per second gets a bar at 2."""
    rows = [r | {"throughput_tokens_per_s": 1e6 / r["makespan_s"]} for r in two_axis_rows()]
    ax = _only_axes(speedup_bars(rows, "throughput_tokens_per_s", "base"))
    value = {(r["system"], r[M], r[TOPO]): r["throughput_tokens_per_s"] for r in rows}
    combos = [(m, t) for m in (1024, 2048, 4096) for t in TOPO_FACTOR]
    for system in ("fast", "slow"):
        want = [value[(system, m, t)] / value[("base", m, t)] for m, t in combos]
        assert _bar_heights(ax)[system] == pytest.approx(want)
    assert min(_bar_heights(ax)["fast"]) > 1.0 > max(_bar_heights(ax)["slow"])
    assert "system / baseline" in ax.get_title()
    # the same comparison as times reads the same way round: fast is better than base
    times = _bar_heights(_only_axes(speedup_bars(rows, "makespan_s", "base")))
    assert min(times["fast"]) > 1.0 > max(times["slow"])


def test_speedup_needs_a_metric_with_a_better_direction() -> None:
    rows = two_axis_rows()
    with pytest.raises(ValueError, match="no better direction"):
        speedup_bars(rows, "bytes_moved", "base")
    manifest = _manifest(rows, [M, TOPO]) | {"metrics": ["makespan_s", "bytes_moved"]}
    titles = [t for t, _ in standard_figures(manifest, rows, {}, baseline="base")]
    assert [t for t in titles if t.startswith("speedup")] == ["speedup on makespan_s over base"]


def test_a_system_keeps_its_colour_across_charts() -> None:
    rows = two_axis_rows()
    lines = _only_axes(metric_vs_axis(rows, "makespan_s", M)).get_lines()
    line_color = {str(line.get_label()).split(",")[0]: line.get_color() for line in lines}
    bars = _only_axes(speedup_bars(rows, "makespan_s", "base"))
    for container in bars.containers:
        if isinstance(container, BarContainer):
            color = to_hex(container.patches[0].get_facecolor())
            assert color == line_color[str(container.get_label())]
    assert len(set(line_color.values())) == 3


def test_coinciding_lines_both_show() -> None:
    rows = [r | {"system": "twin"} for r in one_axis_rows() if r["system"] == "base"]
    rows += [r for r in one_axis_rows() if r["system"] == "base"]
    lines = _only_axes(metric_vs_axis(rows, "makespan_s", M)).get_lines()
    assert len(lines) == 2
    assert list(lines[0].get_ydata()) == list(lines[1].get_ydata())
    assert all(line.get_linestyle() == "--" for line in lines)  # dashed in turn, not solid
    assert lines[0].get_markersize() > lines[1].get_markersize()  # the later marker inside
    assert lines[0].get_color() != lines[1].get_color()


def test_speedup_bars_skip_failed_points_and_reject_unknown_baseline() -> None:
    rows = one_axis_rows()
    ax = _only_axes(speedup_bars(rows, "makespan_s", "base"))
    assert len(ax.patches) == 1 * 3  # the failed slow m=8192 point has no baseline match
    assert _bar_heights(ax)["slow"] == pytest.approx([1 / 1.6] * 3)
    with pytest.raises(ValueError, match="baseline 'nope' is not a system"):
        speedup_bars(rows, "makespan_s", "nope")


def test_gantt_one_bar_per_slice_on_its_lane() -> None:
    events = _events()
    ax = _only_axes(gantt(events, title="point 0"))
    lanes = [t.get_text() for t in ax.get_yticklabels()]
    assert lanes == ["gpu0 / stream 0", "gpu1 / stream 0", "links / nvlink gpu0->sw"]
    spans = [e for e in events if e.kind != "counter"]
    assert len(ax.patches) == len(spans)
    slices = [p for p in ax.patches if p.get_alpha() in (None, 1.0)]
    per_lane = [round(p.get_y() + p.get_height() / 2) for p in slices]
    assert sorted(per_lane) == [0, 0, 0, 1, 1]
    assert sorted(p.get_x() for p in slices) == pytest.approx([0.0, 1.0, 12.0, 12.0, 21.0])
    async_bars = [p for p in ax.patches if p not in slices]
    assert [round(p.get_y() + p.get_height() / 2) for p in async_bars] == [2, 2]
    assert all(p.get_alpha() is not None and p.get_alpha() < 1 for p in async_bars)
    assert ax.get_xlabel() == "time [us]"
    assert ax.get_title() == "point 0"


def test_gantt_truncates_and_says_so() -> None:
    ax = _only_axes(gantt(_events(), title="t", max_bars=3))
    assert len(ax.patches) == 3
    assert "first 3 of 7" in ax.get_title()
    ax = _only_axes(gantt([], title="empty"))
    assert not ax.patches


def test_comparison_bars_ratios_on_log_scale() -> None:
    a = {"makespan_s": 2.0, "gemm_s": 1.0, "idle_s": 0.0, "only_a": 3.0}
    b = {"makespan_s": 1.0, "gemm_s": 1.5, "idle_s": 0.5, "only_b": 3.0}
    ax = _only_axes(comparison_bars(a, b, "A", "B"))
    assert ax.get_xscale() == "log"
    assert [p.get_width() for p in ax.patches] == pytest.approx([0.5, 1.5])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["makespan_s", "gemm_s"]
    assert any(list(line.get_xdata()) == [1.0, 1.0] for line in ax.get_lines())
    assert "idle_s" in ax.get_xlabel()
    # B is faster on makespan (better: green), slower on gemm (worse: red)
    assert [to_hex(p.get_facecolor()) for p in ax.patches] == ["#2a9d4b", "#c0392b"]
    rates = _only_axes(comparison_bars({"tokens_per_s": 1.0}, {"tokens_per_s": 2.0}, "A", "B"))
    assert to_hex(rates.patches[0].get_facecolor()) == "#2a9d4b"  # twice the rate is better


def _assert_self_contained(html: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered
    assert "<link" not in lowered
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", lowered)
    assert "@import" not in lowered and "url(http" not in lowered


def test_render_html_table_failures_and_inline_svgs() -> None:
    rows = one_axis_rows()
    manifest = _manifest(rows, [M])
    figures = [
        ("makespan vs m", metric_vs_axis(rows, "makespan_s", M)),
        ("speedup", speedup_bars(rows, "makespan_s", "base")),
    ]
    html = render_html(manifest, rows, figures, baseline="base")
    assert html.count("<svg") == len(figures)
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr") == len(rows)
    assert "1.024 ms" in body  # base, m=1024: 1024 us
    assert "8192" in body and "failed" in body
    assert "CUDA out of memory: &lt;b&gt;boom&lt;/b&gt;" in html  # escaped error text
    assert "<b>boom</b>" not in html
    assert "a synthetic sweep &lt;for tests&gt;" in html
    _assert_self_contained(html)


def test_write_report_html(tmp_path: Path) -> None:
    rows = two_axis_rows()
    manifest = _manifest(rows, [M, TOPO])
    out = tmp_path / "report.html"
    titles = write_report(out, manifest, rows, {3: _events()}, baseline="base")
    # 2 metrics x 2 axes, 1 speedup (bytes moved has no better direction), 1 timeline
    assert len(titles) == 2 * 2 + 1 + 1
    assert titles[-1].startswith("timeline of point 3")
    html = out.read_text(encoding="utf-8")
    assert html.count("<svg") == len(titles)
    _assert_self_contained(html)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_write_report_pdf_is_atomic(tmp_path: Path) -> None:
    rows = one_axis_rows()
    out = tmp_path / "sub" / "report.pdf"
    titles = write_report(out, _manifest(rows, [M]), rows, {}, fmt="pdf")
    assert titles == ["makespan_s vs workload.gemm.m", "bytes_moved vs workload.gemm.m"]
    assert out.read_bytes().startswith(b"%PDF")
    assert [p.name for p in out.parent.iterdir()] == ["report.pdf"]


def test_write_report_rejects_bad_arguments(tmp_path: Path) -> None:
    rows = one_axis_rows()
    manifest = _manifest(rows, [M])
    with pytest.raises(ValueError, match="no trace for point 2"):
        write_report(tmp_path / "r.html", manifest, rows, {0: _events()}, gantt_point=2)
    with pytest.raises(ValueError, match="not a system"):
        write_report(tmp_path / "r.pdf", manifest, rows, {}, baseline="nope", fmt="pdf")
    assert list(tmp_path.iterdir()) == []
