"""The sweep -> report, compare and validate commands as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gpusim.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_sweep_then_report(tmp_path: Path) -> None:
    sweep = {
        "name": "cli-report",
        "base": str(ROOT / "workloads/gemm_alltoall_hgx.json"),
        "axes": {"workload.gemm.m": [1024, 4096]},
        "systems": {"H100": {}, "A100": {"topology": "a100_sxm4_8gpu"}},
        "metrics": ["makespan_s", "alltoall_s"],
        "baseline": "A100",
    }
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(sweep))
    out = tmp_path / "res"
    ran = runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1"])
    assert ran.exit_code == 0, ran.output
    rep = runner.invoke(app, ["report", str(out)])
    assert rep.exit_code == 0, rep.output
    html = (out / "report.html").read_text()
    # 2 metrics x 1 axis line plots + 2 speedup figures + 1 timeline (the base records a trace)
    assert html.count("<svg") == 5
    assert "cli-report" in html and "A100" in html
    # no ledger case runs a GEMM + all-to-all: the report says its comparisons are unvalidated,
    # before the figures
    assert html.index("No validation case covers these systems") < html.index("<svg")
    pdf = runner.invoke(app, ["report", str(out), "--format", "pdf", "-o", str(tmp_path / "r.pdf")])
    assert pdf.exit_code == 0, pdf.output
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_report_on_a_folder_that_is_not_a_sweep(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a sweep results folder" in result.output


def test_compare_two_scenarios(tmp_path: Path) -> None:
    a = ROOT / "workloads/gemm_alltoall_hgx.json"
    b = ROOT / "workloads/gemm_alltoall_2node_ib.json"
    result = runner.invoke(app, ["compare", str(a), str(b), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "compare.json").read_text())
    rows = {r["metric"]: r for r in doc["metrics"]}
    # the same GEMM on the same GPU model: identical GEMM time; the IB all-to-all is slower
    assert rows["gemm_s"]["ratio"] == 1.0
    assert rows["alltoall_s"]["ratio"] > 1.0
    assert (tmp_path / "compare.svg").read_text().lstrip().startswith("<svg")


def test_validate_shipped_ledger(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["validate", str(ROOT / "validation/calibration_points.json"), "-o", str(tmp_path)]
    )
    assert "FL-1" in result.output and "FM-2" in result.output
    _assert_fits_80_columns(result.output, ["case", "expected", "predicted", "error %", "ok"])
    table = json.loads((tmp_path / "calibration_points.json").read_text())
    all_within = all(case["within"] for case in table["cases"])
    # the exit code says whether every case is inside its tolerance
    assert result.exit_code == (0 if all_within else 1), result.output
    assert (tmp_path / "calibration_points.csv").is_file()


def _assert_fits_80_columns(output: str, headers: list[str]) -> None:
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= 80, output
    header_line = next(line for line in lines if "┃" in line)
    cells = [c.strip() for c in header_line.split("┃") if c.strip()]
    assert all(h in cells for h in headers), cells  # whole headers, none cut short


def test_wide_tables_fit_80_columns(tmp_path: Path) -> None:
    listed = runner.invoke(app, ["list"], env={"COLUMNS": "80"})
    assert listed.exit_code == 0, listed.output
    _assert_fits_80_columns(listed.output, ["name", "description"])
    shown = runner.invoke(app, ["calibrate", "show", "h100_sxm", "--full"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    _assert_fits_80_columns(shown.output, ["parameter", "value", "unit", "source"])
    ran = runner.invoke(
        app,
        ["run", str(ROOT / "workloads/moe_fm2_megatron_2xh100.json"), "-o", str(tmp_path)],
        env={"COLUMNS": "80"},
    )
    assert ran.exit_code == 0, ran.output
    _assert_fits_80_columns(ran.output, ["metric", "value"])
    assert "M tokens/s" in ran.output  # a rate, not seconds
