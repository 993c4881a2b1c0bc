"""Plotted comparison reports for sweeps: figures, a self-contained HTML page, or a PDF.

:func:`write_report` builds the standard figure set from the sweep's rows and manifest and
writes it atomically; :mod:`gpusim.report.figures` holds the individual figure functions and
:mod:`gpusim.report.html` the page renderer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from gpusim.engine.trace import TraceEvent
from gpusim.export.files import atomic_path, write_text_atomic
from gpusim.report.figures import comparison_bars, gantt, metric_vs_axis, speedup_bars
from gpusim.report.format import format_value, infer_axes, infer_metrics, is_ok
from gpusim.report.html import figure_svg, render_html, render_svg_page

__all__ = [
    "comparison_bars",
    "gantt",
    "metric_vs_axis",
    "render_html",
    "speedup_bars",
    "standard_figures",
    "write_report",
]

FigureBuilder = Callable[[], Figure]


def _trace_point(traces: Mapping[int, Sequence[TraceEvent]], gantt_point: int | None) -> int | None:
    if gantt_point is not None:
        if gantt_point not in traces:
            have = ", ".join(str(p) for p in sorted(traces)) or "none"
            raise ValueError(f"no trace for point {gantt_point} (points with traces: {have})")
        return gantt_point
    with_events = sorted(p for p, events in traces.items() if events)
    return with_events[0] if with_events else None


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
    :func:`speedup_bars` for every metric when ``baseline`` is given; and a :func:`gantt` of
    ``gantt_point`` (ValueError when it has no trace) or else of the lowest point with a
    non-empty trace, if any.
    """
    axes = list(manifest.get("axes") or infer_axes(rows))
    if manifest.get("combine") == "zip" and axes:
        axes = axes[:1]  # zipped axes vary together: plot against the first, one line per system
    metrics = list(manifest.get("metrics") or infer_metrics(rows, axes))
    out: list[tuple[str, FigureBuilder]] = []

    def vs_axis(metric: str, axis: str, title: str) -> FigureBuilder:
        return lambda: metric_vs_axis(rows, metric, axis, title=title, axes=axes)

    def speedup(metric: str) -> FigureBuilder:
        return lambda: speedup_bars(rows, metric, baseline or "", axes=axes)

    for metric in metrics:
        for axis in axes:
            title = f"{metric} vs {axis}"
            out.append((title, vs_axis(metric, axis, title)))
    if baseline is not None:
        systems = {str(row.get("system") or "") for row in rows}
        if baseline not in systems:
            known = ", ".join(sorted(s for s in systems if s)) or "none"
            raise ValueError(f"baseline {baseline!r} is not a system of the sweep ({known})")
        for metric in metrics:
            out.append((f"speedup on {metric} over {baseline}", speedup(metric)))
    point = _trace_point(traces, gantt_point)
    if point is not None:
        row = next((r for r in rows if r.get("point") == point), None)
        where = ""
        if row is not None:
            parts = [str(row["system"])] if row.get("system") else []
            parts += [f"{a}={format_value(row.get(a))}" for a in axes]
            where = f" ({', '.join(parts)})" if parts else ""
        title = f"timeline of point {point}{where}"
        events = traces[point]
        out.append((title, lambda: gantt(events, title=title)))
    return out


def _built(builders: Sequence[tuple[str, FigureBuilder]]) -> Iterator[tuple[str, Figure]]:
    for title, build in builders:
        fig = build()
        try:
            yield title, fig
        finally:
            fig.clear()  # figures from the object API are not in pyplot's registry: free artists


def _summary_page(manifest: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> Figure:
    fig = Figure(figsize=(8.27, 11.69))  # A4 portrait
    n_ok = sum(1 for row in rows if is_ok(row))
    lines = [
        str(manifest.get("name") or "gpusim sweep"),
        "",
        str(manifest.get("description") or ""),
        "",
        f"points: {len(rows)} ({n_ok} ok, {len(rows) - n_ok} failed)",
        f"swept axes: {', '.join(manifest.get('axes') or []) or 'none'}",
        f"systems: {', '.join(manifest.get('systems') or []) or 'none'}",
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
) -> list[str]:
    titles: list[str] = []
    metadata = {"Title": str(manifest.get("name") or "gpusim sweep"), "Creator": "gpusim"}
    with atomic_path(path) as tmp, PdfPages(tmp, metadata=metadata) as pdf:
        pdf.savefig(_summary_page(manifest, rows))
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
) -> list[str]:
    """Write the sweep report to ``path`` atomically and return the titles of its figures.

    The figures are those of :func:`standard_figures`. ``fmt="html"`` writes the page of
    :func:`gpusim.report.html.render_html`; ``fmt="pdf"`` writes a multi-page PDF whose first
    page summarises the sweep (counts and failed points) followed by one figure per page. Either
    way a reader never sees a partly written file. Raises ValueError for an unknown ``fmt``, a
    ``baseline`` that is not a system of the sweep, or a ``gantt_point`` without a trace.
    """
    if fmt not in ("html", "pdf"):
        raise ValueError(f"unknown report format {fmt!r} (expected 'html' or 'pdf')")
    target = Path(path)
    builders = standard_figures(manifest, rows, traces, baseline=baseline, gantt_point=gantt_point)
    if fmt == "pdf":
        return _write_pdf(target, manifest, rows, builders)
    svgs = [(title, figure_svg(fig)) for title, fig in _built(builders)]
    write_text_atomic(target, render_svg_page(manifest, rows, svgs, baseline=baseline))
    return [title for title, _ in svgs]
