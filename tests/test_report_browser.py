"""Reports are web pages: each demo report, opened in a real headless Chromium, shows every figure
and table, with no console errors.

The demo sweeps are run cut down to their first two values per axis (the same systems, files and
report code as ``gpusim demo``, in seconds rather than a minute). Chromium is Debian's package
(``apt-get install chromium``; CI installs it), driven by Playwright. Outside CI the test is
skipped, saying why, when Chromium or Playwright is missing; in CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gpusim.cli import app
from gpusim.cli.sweeps import DEMO_SWEEPS

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")

# Draw every inline SVG figure into an <img> from its own markup: a figure renders when that
# image loads with a natural width, which a malformed SVG does not.
_FIGURE_WIDTHS_JS = """
async () => {
  const widths = [];
  for (const svg of document.querySelectorAll('figure svg')) {
    const img = new Image();
    const loaded = new Promise((done) => {
      img.onload = () => done(img.naturalWidth);
      img.onerror = () => done(0);
    });
    const markup = new XMLSerializer().serializeToString(svg);
    img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(markup);
    widths.push(await loaded);
  }
  return widths;
}
"""
_PAGE_FACTS_JS = """
() => ({
  figures: document.querySelectorAll('figure').length,
  shownFigures: Array.from(document.querySelectorAll('figure svg'))
    .filter((s) => s.getBoundingClientRect().width > 0 && s.getBoundingClientRect().height > 0)
    .length,
  images: Array.from(document.images).map((i) => i.complete && i.naturalWidth > 0),
  tableRows: document.querySelectorAll('table.summary tbody tr').length,
  tableHeaders: Array.from(document.querySelectorAll('table.summary th')).map((h) => h.textContent),
  tableWidth: document.querySelector('table.summary')?.getBoundingClientRect().width ?? 0,
  caveats: document.body.innerText.includes('Where the model is known to be off'),
})
"""


def _chromium() -> str | None:
    for candidate in CHROMIUM_PATHS:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser test (.ci/run installs chromium)")
    pytest.skip(reason)


def _small_sweep(name: str, folder: Path) -> Path:
    """The shipped demo sweep ``name`` with each axis cut to its first two values."""
    shipped = ROOT / "workloads" / name
    sweep = json.loads(shipped.read_text())
    sweep["base"] = str(shipped.parent / sweep["base"])
    sweep["axes"] = {path: values[:2] for path, values in sweep["axes"].items()}
    path = folder / name
    path.write_text(json.dumps(sweep))
    return path


@pytest.fixture(scope="module")
def demo_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    """Each demo's report page and the number of points in it."""
    root = tmp_path_factory.mktemp("demo")
    runner = CliRunner()
    reports = {}
    for sub, name in DEMO_SWEEPS.items():
        sweep = _small_sweep(name, root)
        out = root / sub
        ran = runner.invoke(app, ["sweep", str(sweep), "-o", str(out), "--workers", "1"])
        assert ran.exit_code == 0, ran.output
        rep = runner.invoke(app, ["report", str(out)])
        assert rep.exit_code == 0, rep.output
        points = len(json.loads((out / "sweep.json").read_text())["points"])
        reports[sub] = (out / "report.html", points)
    return reports


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    if executable is None:
        _skip_or_fail("no chromium on PATH (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.mark.parametrize("demo", list(DEMO_SWEEPS))
def test_demo_report_renders_in_a_browser(
    demo: str, demo_reports: dict[str, tuple[Path, int]], browser: Any
) -> None:
    path, points = demo_reports[demo]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(path.as_uri(), wait_until="load")
    facts = page.evaluate(_PAGE_FACTS_JS)
    widths = page.evaluate(_FIGURE_WIDTHS_JS)
    page.close()

    assert facts["figures"] >= 3, facts  # line plots, speedups and a timeline at least
    assert facts["shownFigures"] == facts["figures"], facts
    assert len(widths) == facts["figures"] and all(w > 0 for w in widths), widths
    assert all(facts["images"]), facts
    assert facts["tableRows"] == points and facts["tableWidth"] > 0, facts
    assert {"point", "status"} <= set(facts["tableHeaders"]), facts
    assert facts["caveats"], "the report does not say where the model is known to be off"
    assert not problems, problems
