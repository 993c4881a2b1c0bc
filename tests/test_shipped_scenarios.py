"""Every shipped scenario loads, validates and simulates in both fidelities; `gpusim check`
accepts every shipped file and `gpusim list` names them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpusim import simulate
from gpusim.cli import app
from gpusim.spec.loading import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "workloads").glob("*.json"))
SPEC_FILES = sorted(ROOT.glob("topologies/**/*.json")) + SCENARIOS
runner = CliRunner()


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
@pytest.mark.parametrize("fidelity", ["des", "analytic"])
def test_shipped_scenario_simulates(path: Path, fidelity: str) -> None:
    scenario = load_scenario(path, {"options.fidelity": fidelity, "options.trace": False})
    result = simulate(scenario)
    assert result.makespan_s > 0
    assert result.scenario == path.stem
    assert all(v == v for v in result.metrics.values())  # no NaN


def test_check_accepts_every_shipped_file() -> None:
    result = runner.invoke(app, ["check", *map(str, SPEC_FILES)])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok:") == len(SPEC_FILES)


def test_list_names_shipped_files() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("hgx_h100_8gpu", "h100_sxm", "gemm_alltoall_hgx"):
        assert name in result.output
