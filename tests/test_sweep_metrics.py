"""Sweeps check the metrics they name against the names workload families declare (issue 11).

The declarations (``metric_names`` in gpusim/workloads/registry.py) are held to what the models
report over every shipped run: every shipped scenario and every shipped sweep's systems at their
first point, at both fidelities. The reported names come from the golden snapshots
(tests/golden/snapshots.json records every one of those runs' metrics; tests/test_golden.py
keeps the file equal to what the models produce), so nothing is simulated here and nothing is
skipped, the long router runs included.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from golden import snapshot as snap
from typer.testing import CliRunner

from gpusim.cli import app
from gpusim.errors import SpecError
from gpusim.spec.loading import load_scenario
from gpusim.spec.scenario import Fidelity, ResolvedScenario
from gpusim.sweep import check_metrics, load_sweep
from gpusim.sweep.expand import RECORD_FIELDS, reported_metrics
from gpusim.workloads.registry import family_of

RECORDED: dict[str, Any] = json.loads(snap.SNAPSHOT_FILE.read_text())["scenarios"]
ROUTER_SWEEP = snap.ROOT / "workloads" / "router_alf_lb_sweep.json"


def _shipped_runs() -> dict[str, ResolvedScenario]:
    """Every shipped run the snapshots record, by snapshot key less the fidelity."""
    runs: dict[str, ResolvedScenario] = {}
    for path in snap.shipped_scenarios():
        runs[f"{path.parent.name}/{path.stem}"] = load_scenario(path)
    for path in snap.shipped_sweeps():
        for system, scenario in snap.sweep_probe_points(path).items():
            runs[f"sweep/{path.stem}/{system}"] = scenario
    return runs


RUNS = _shipped_runs()


def test_every_snapshot_is_a_shipped_run_checked_here() -> None:
    assert {f"{key}:{fid}" for key in RUNS for fid in snap.FIDELITIES} == set(RECORDED)


@pytest.mark.parametrize("fidelity", [Fidelity.analytic, Fidelity.des])
@pytest.mark.parametrize("key", sorted(RUNS))
def test_a_shipped_run_reports_exactly_the_declared_names(key: str, fidelity: Fidelity) -> None:
    scenario = RUNS[key]
    workload = scenario.workload
    declared = family_of(workload).metric_names(workload, scenario.topology, fidelity)
    assert set(RECORDED[f"{key}:{fidelity.value}"]["metrics"]) == declared


@pytest.mark.parametrize("path", snap.shipped_sweeps(), ids=lambda p: p.stem)
def test_every_shipped_sweep_names_only_reported_metrics(path: Path) -> None:
    check_metrics(load_sweep(path), path)


def test_record_fields_count_as_metrics() -> None:
    scenario = next(iter(RUNS.values()))
    assert set(RECORD_FIELDS) <= reported_metrics(scenario)


def _misspelt_router_sweep(tmp_path: Path) -> tuple[Path, int]:
    doc = json.loads(ROUTER_SWEEP.read_text())
    index = len(doc["metrics"])
    doc["metrics"] = [*doc["metrics"], "maxvio_globle"]
    doc["base"] = str(ROUTER_SWEEP.parent / doc["base"])
    path = tmp_path / "router_typo_sweep.json"
    path.write_text(json.dumps(doc))
    return path, index


def test_a_router_sweeps_misspelt_metric_is_a_spec_error(tmp_path: Path) -> None:
    path, index = _misspelt_router_sweep(tmp_path)
    with pytest.raises(SpecError) as caught:
        check_metrics(load_sweep(path), path)
    message = str(caught.value)
    assert f"$.metrics[{index}]" in message
    assert "'maxvio_globle' is not a metric this workload reports" in message
    assert "maxvio_global," in message  # the known names are listed


def test_a_router_sweeps_misspelt_metric_is_refused_before_any_point_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_runs(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a point ran")

    monkeypatch.setattr("gpusim.sweep.runner.simulate", no_runs)
    path, index = _misspelt_router_sweep(tmp_path)
    out = tmp_path / "out"
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1"])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert f"{path}: $.metrics[{index}]: 'maxvio_globle'" in lines[0]
    assert not out.exists()
    assert elapsed < 10.0  # static: no probe run (a router point runs for minutes)
