"""Plotted comparison reports for sweeps: figures, a self-contained HTML page, or a PDF.

:func:`write_report` builds the standard figure set from the sweep's rows and manifest and
writes it atomically; :mod:`gpusim.report.figures` holds the individual figure functions and
:mod:`gpusim.report.html` the page renderer.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from gpusim.engine.trace import TraceEvent
from gpusim.export.files import atomic_path, write_text_atomic
from gpusim.quantities import Better, metric_quantity
from gpusim.report.caveats import Caveat
from gpusim.report.figures import comparison_bars, gantt, metric_vs_axis, speedup_bars
from gpusim.report.format import format_value, infer_axes, infer_metrics, is_ok
from gpusim.report.html import figure_svg, render_html, render_svg_page
from gpusim.report.plotting import distinct, system_colors
from gpusim.report.speedup_grid import grid_groups, has_speedup_grid, speedup_grid_figure
from gpusim.report.transition import marks_transitions, transition_figure

__all__ = [
    "comparison_bars",
    "gantt",
    "metric_vs_axis",
    "render_html",
    "report_colors",
    "speedup_bars",
    "standard_figures",
    "write_report",
]

FigureBuilder = Callable[[], Figure]
_PAGE_CHARS = 100  # characters a line of the PDF's summary page holds at its font size
MAX_SERIES = 48
"""Lines of one figure (or bar groups of a speedup figure) beyond which a generic figure of a
large grid is left out: the summary table and any grid figure hold those points."""


def _combinations(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> int:
    count = 1
    for column in columns:
        count *= max(1, len(distinct(format_value(row.get(column)) for row in rows)))
    return count


def _trace_point(traces: Mapping[int, Sequence[TraceEvent]], gantt_point: int | None) -> int | None:
    if gantt_point is not None:
        if gantt_point not in traces:
            have = ", ".join(str(p) for p in sorted(traces)) or "none"
            raise ValueError(f"no trace for point {gantt_point} (points with traces: {have})")
        return gantt_point
    with_events = sorted(p for p, events in traces.items() if events)
    return with_events[0] if with_events else None


def report_colors(manifest: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The one colour per system used by every chart of a report: the manifest's systems in
    order, then any other system of the rows."""
    systems = [str(s) for s in manifest.get("systems") or []]
    return system_colors(systems + [str(row.get("system") or "") for row in rows])


def _check_baseline(rows: Sequence[Mapping[str, Any]], baseline: str) -> None:
    systems = {str(row.get("system") or "") for row in rows}
    if baseline not in systems:
        known = ", ".join(sorted(s for s in systems if s)) or "none"
        raise ValueError(f"baseline {baseline!r} is not a system of the sweep ({known})")


def _timeline_title(rows: Sequence[Mapping[str, Any]], point: int, axes: Sequence[str]) -> str:
    row = next((r for r in rows if r.get("point") == point), None)
    if row is None:
        return f"timeline of point {point}"
    parts = [str(row["system"])] if row.get("system") else []
    parts += [f"{a}={format_value(row.get(a))}" for a in axes]
    return (
        f"timeline of point {point} ({', '.join(parts)})" if parts else f"timeline of point {point}"
    )


def _line_builder(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    axis: str,
    axes: list[str],
    colors: Mapping[str, str],
) -> FigureBuilder:
    title = f"{metric} vs {axis}"
    return partial(metric_vs_axis, rows, metric, axis, title=title, axes=axes, colors=colors)


def _speedup_builder(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    baseline: str,
    axes: list[str],
    colors: Mapping[str, str],
) -> FigureBuilder:
    return partial(speedup_bars, rows, metric, baseline, axes=axes, colors=colors)


def standard_figures(
    manifest: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    traces: Mapping[int, Sequence[TraceEvent]],
    *,
    baseline: str | None = None,
    gantt_point: int | None = None,
) -> list[tuple[str, FigureBuilder]]:
    """The report's figures as ``(title, build)`` pairs, built lazily so each can be closed
    before the next one is drawn.

    They are: :func:`metric_vs_axis` for every manifest metric and every swept axis;
    :func:`speedup_bars` when ``baseline`` is given, for every metric with a better direction
    (times, rates, bandwidths, utilisations; not sizes, flags or counts, see
    :mod:`gpusim.quantities`); for a kernel sweep over sparsity and n with a baseline, the
    speedup grid (:mod:`gpusim.report.speedup_grid`); a line or bar figure that would hold more
    than :data:`MAX_SERIES` lines or bar groups is left out (a large grid); for a batch sweep
    reporting ``cpu_bound``, every time metric
    again with each line's CPU-bound / GPU-bound transition marked
    (:mod:`gpusim.report.transition`); and a :func:`gantt` of ``gantt_point`` (ValueError when
    it has no trace) or else of the lowest point with a non-empty trace, if any. Every chart draws a
    system in the same colour (:func:`report_colors`).
    """
    axes = list(manifest.get("axes") or infer_axes(rows))
    if manifest.get("combine") == "zip" and axes:
        axes = axes[:1]  # zipped axes vary together: plot against the first, one line per system
    metrics = list(manifest.get("metrics") or infer_metrics(rows, axes))
    colors = report_colors(manifest, rows)
    out = [
        (f"{metric} vs {axis}", _line_builder(rows, metric, axis, axes, colors))
        for metric in metrics
        for axis in axes
        if _combinations(rows, ["system", *(a for a in axes if a != axis)]) <= MAX_SERIES
    ]
    if marks_transitions(axes, metrics):
        out += [
            (
                f"{metric} vs batch, CPU-bound to GPU-bound transition marked",
                partial(transition_figure, rows, metric, axes, colors),
            )
            for metric in metrics
            if metric.endswith("_s")
        ]
    if baseline is not None:
        _check_baseline(rows, baseline)
        compared = [m for m in metrics if metric_quantity(m).better is not Better.NEITHER]
        if _combinations(rows, axes) <= MAX_SERIES:
            out += [
                (
                    f"speedup on {metric} over {baseline}",
                    _speedup_builder(rows, metric, baseline, axes, colors),
                )
                for metric in compared
            ]
        if has_speedup_grid(axes, baseline):
            out += [
                (
                    f"speedup on {metric} over {baseline} by sparsity and n"
                    + (f" ({label})" if label else ""),
                    partial(speedup_grid_figure, group, metric, baseline, axes, colors, label),
                )
                for metric in compared
                for label, group in grid_groups(rows, axes)
            ]
    point = _trace_point(traces, gantt_point)
    if point is not None:
        title = _timeline_title(rows, point, axes)
        out.append((title, partial(gantt, traces[point], title=title)))
    return out


def _built(builders: Sequence[tuple[str, FigureBuilder]]) -> Iterator[tuple[str, Figure]]:
    for title, build in builders:
        fig = build()
        try:
            yield title, fig
        finally:
            fig.clear()  # figures from the object API are not in pyplot's registry: free artists


def _caveat_lines(caveats: Sequence[Caveat] | None) -> list[str]:
    if caveats is None:
        return ["not checked against the validation ledger: unvalidated model output"]
    if not caveats:
        return ["no validation case covers these systems: unvalidated model output"]
    return [textwrap.fill(c.sentence, _PAGE_CHARS, subsequent_indent="    ") for c in caveats]


def _summary_page(
    manifest: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    caveats: Sequence[Caveat] | None,
) -> Figure:
    fig = Figure(figsize=(8.27, 11.69))  # A4 portrait
    n_ok = sum(1 for row in rows if is_ok(row))
    lines = [
        str(manifest.get("name") or "gpusim sweep"),
        "",
        textwrap.fill(str(manifest.get("description") or ""), _PAGE_CHARS),
        "",
        f"points: {len(rows)} ({n_ok} ok, {len(rows) - n_ok} failed)",
        f"swept axes: {', '.join(manifest.get('axes') or []) or 'none'}",
        f"systems: {', '.join(manifest.get('systems') or []) or 'none'}",
        "",
        "where the model is known to be off:",
        *_caveat_lines(caveats),
    ]
    failed = [row for row in rows if not is_ok(row)]
    if failed:
        lines += ["", "failed points:"]
        for row in failed[:40]:
            error = str(row.get("error") or "").replace("\n", " ")
            lines.append(f"  point {row.get('point')}: {error[:110]}")
        if len(failed) > 40:
            lines.append(f"  ... and {len(failed) - 40} more")
    fig.text(0.06, 0.95, "\n".join(lines), va="top", ha="left", fontsize=9, wrap=True)
    return fig


def _write_pdf(
    path: Path,
    manifest: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    builders: Sequence[tuple[str, FigureBuilder]],
    caveats: Sequence[Caveat] | None,
) -> list[str]:
    titles: list[str] = []
    metadata = {"Title": str(manifest.get("name") or "gpusim sweep"), "Creator": "gpusim"}
    with atomic_path(path) as tmp, PdfPages(tmp, metadata=metadata) as pdf:
        pdf.savefig(_summary_page(manifest, rows, caveats))
        for title, fig in _built(builders):
            pdf.savefig(fig)
            titles.append(title)
    return titles


def write_report(
    path: str | os.PathLike[str],
    manifest: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    traces: Mapping[int, Sequence[TraceEvent]],
    *,
    baseline: str | None = None,
    gantt_point: int | None = None,
    fmt: Literal["html", "pdf"] = "html",
    caveats: Sequence[Caveat] | None = None,
) -> list[str]:
    """Write the sweep report to ``path`` atomically and return the titles of its figures.

    The figures are those of :func:`standard_figures`. ``fmt="html"`` writes the page of
    :func:`gpusim.report.html.render_html`; ``fmt="pdf"`` writes a multi-page PDF whose first
    page summarises the sweep (counts and failed points) followed by one figure per page. Either
    way a reader never sees a partly written file. ``caveats`` (from
    :func:`gpusim.report.caveats.report_caveats`) say, before the figures, where the model is
    known to be off for the compared systems. Raises ValueError for an unknown ``fmt``, a
    ``baseline`` that is not a system of the sweep, or a ``gantt_point`` without a trace.
    """
    if fmt not in ("html", "pdf"):
        raise ValueError(f"unknown report format {fmt!r} (expected 'html' or 'pdf')")
    target = Path(path)
    builders = standard_figures(manifest, rows, traces, baseline=baseline, gantt_point=gantt_point)
    if fmt == "pdf":
        return _write_pdf(target, manifest, rows, builders, caveats)
    svgs = [(title, figure_svg(fig)) for title, fig in _built(builders)]
    page = render_svg_page(manifest, rows, svgs, baseline=baseline, caveats=caveats)
    write_text_atomic(target, page)
    return [title for title, _ in svgs]
