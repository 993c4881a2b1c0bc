"""The self-contained HTML sweep report: a summary table, the failed points and inline SVG figures.

The page is rendered from the package template ``templates/report.html.j2`` with autoescaping on;
only the SVG produced here by matplotlib is inserted unescaped. It loads nothing from the
network: no external CSS, scripts or fonts (figure text is drawn as SVG paths).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup
from matplotlib.figure import Figure

from gpusim.report.caveats import Caveat
from gpusim.report.format import (
    MISSING,
    format_metric,
    format_value,
    infer_axes,
    is_ok,
)
from gpusim.version import __version__

_SVG_START = re.compile(r"<svg[\s>]")
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("gpusim.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def figure_svg(fig: Figure) -> str:
    """``fig`` as an SVG element to embed inline in HTML (no XML header, DOCTYPE or metadata)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    match = _SVG_START.search(text)
    if match is None:
        raise ValueError("matplotlib produced no <svg> element")
    return _SVG_METADATA.sub("", text[match.start() :], count=1).strip()


def _distinct_text(rows: Sequence[Mapping[str, Any]], column: str) -> str:
    values: dict[str, None] = {}
    for row in rows:
        value = row.get(column)
        if value not in (None, ""):
            values.setdefault(str(value))
    return ", ".join(values) or MISSING


def render_svg_page(
    manifest: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    svgs: Sequence[tuple[str, str]],
    *,
    baseline: str | None = None,
    caveats: Sequence[Caveat] | None = None,
) -> str:
    """Render the report page with figures already converted by :func:`figure_svg`.

    ``svgs`` holds ``(title, svg_markup)`` pairs; the markup is trusted and inserted unescaped.
    See :func:`render_html` for the page contents.
    """
    axes = list(manifest.get("axes") or infer_axes(rows))
    metrics = list(manifest.get("metrics") or [])
    has_systems = bool(manifest.get("systems")) or any(row.get("system") for row in rows)
    ordered = sorted(rows, key=lambda r: (r.get("point") is None, r.get("point", 0)))

    table_rows = []
    for row in ordered:
        table_rows.append(
            {
                "point": format_value(row.get("point")),
                "system": str(row.get("system") or ""),
                "axes": [format_value(row.get(a)) for a in axes],
                "seed": format_value(row.get("seed")),
                "status": str(row.get("status") or MISSING),
                "ok": is_ok(row),
                "baseline": baseline is not None and row.get("system") == baseline,
                "metrics": [format_metric(m, row.get(m)) for m in metrics],
            }
        )
    failed = [
        {
            "point": format_value(row.get("point")),
            "where": ", ".join(
                ([str(row["system"])] if row.get("system") else [])
                + [f"{a}={format_value(row.get(a))}" for a in axes]
                + [f"seed={format_value(row.get('seed'))}"]
            ),
            "error": str(row.get("error") or "(no error message)"),
        }
        for row in ordered
        if not is_ok(row)
    ]
    template = _environment().get_template("report.html.j2")
    return template.render(
        name=str(manifest.get("name") or "gpusim sweep"),
        description=str(manifest.get("description") or ""),
        n_points=len(rows),
        n_ok=sum(1 for row in rows if is_ok(row)),
        n_failed=len(failed),
        axes=axes,
        systems=[str(s) for s in manifest.get("systems") or []],
        has_systems=has_systems,
        baseline=baseline,
        caveats=None if caveats is None else [(c.standing, c.sentence) for c in caveats],
        metric_headers=metrics,
        provenance=[
            ("gpusim version", _distinct_text(rows, "gpusim_version")),
            ("git revision", _distinct_text(rows, "git_rev")),
            ("calibration profile", _distinct_text(rows, "profile_id")),
            ("fidelity", _distinct_text(rows, "fidelity")),
        ],
        table_rows=table_rows,
        failed=failed,
        figures=[(title, Markup(svg)) for title, svg in svgs],
        generator=f"gpusim {__version__}",
    )


def render_html(
    manifest: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    figures: Sequence[tuple[str, Figure]],
    *,
    baseline: str | None = None,
    caveats: Sequence[Caveat] | None = None,
) -> str:
    """One self-contained HTML page for a sweep.

    It shows the manifest's name and description, the provenance of the points, a table of all
    points (point, system, the swept axes, seed, status and the manifest's ``metrics`` with
    units), the failed points with their errors, then every ``(title, figure)`` inlined as SVG.
    Rows of the ``baseline`` system are highlighted. Above the table and figures it states
    where the model is known to be off for the compared systems (``caveats``, from
    :func:`gpusim.report.caveats.report_caveats`; None: not checked, empty: no case covers them).
    The figures are not modified or closed.
    """
    svgs = [(title, figure_svg(fig)) for title, fig in figures]
    return render_svg_page(manifest, rows, svgs, baseline=baseline, caveats=caveats)
