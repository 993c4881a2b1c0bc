"""Every shipped scenario loads, validates and simulates in both fidelities; `gpusim check`
accepts every shipped file and `gpusim list` names them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpusim import simulate
from gpusim.cli import app
from gpusim.spec.detect import detect_kind
from gpusim.spec.loading import load_scenario

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD_FILES = sorted((ROOT / "workloads").glob("*.json"))
SCENARIOS = [p for p in WORKLOAD_FILES if detect_kind(json.loads(p.read_text())) == "scenario"]
SWEEPS = [p for p in WORKLOAD_FILES if detect_kind(json.loads(p.read_text())) == "sweep"]
SPEC_FILES = (
    sorted(ROOT.glob("topologies/**/*.json"))
    + WORKLOAD_FILES
    + sorted(ROOT.glob("validation/**/*.json"))
    + sorted(ROOT.glob("results/calibration/published/**/*.json"))
    + sorted(ROOT.glob("kernels_ref/resources/*.json"))
)
runner = CliRunner()


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
@pytest.mark.parametrize("fidelity", ["des", "analytic"])
def test_shipped_scenario_simulates(path: Path, fidelity: str) -> None:
    scenario = load_scenario(path, {"options.fidelity": fidelity, "options.trace": False})
    result = simulate(scenario)
    assert result.makespan_s >= 0  # 0 for untimed workloads (router_steps)
    assert result.metrics
    assert result.scenario == path.stem
    assert all(v == v for v in result.metrics.values())  # no NaN


def test_every_workload_file_is_a_scenario_or_a_sweep() -> None:
    assert len(SCENARIOS) + len(SWEEPS) == len(WORKLOAD_FILES)
    assert SCENARIOS and SWEEPS


def test_swapping_the_topology_brings_its_default_profile() -> None:
    scenario = load_scenario(
        ROOT / "workloads/gemm_alltoall_hgx.json", {"topology": "a100_sxm4_8gpu"}
    )
    assert scenario.topology.name == "a100_sxm4_8gpu"
    assert scenario.profile.id == "a100"


def test_check_accepts_every_shipped_file() -> None:
    result = runner.invoke(app, ["check", *map(str, SPEC_FILES)])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok:") == len(SPEC_FILES)


def test_list_names_shipped_files() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("hgx_h100_8gpu", "h100_sxm", "gemm_alltoall_hgx"):
        assert name in result.output


def test_a_profile_field_can_be_overridden_on_the_topology_default_profile() -> None:
    # The scenario names no profile: the override reaches the topology's default one, also
    # after a topology swap, and the launch cost the model uses follows it.
    path = ROOT / "workloads/launch_bound_chain_h100_pcie.json"
    assert "profile" not in json.loads(path.read_text())
    scenario = load_scenario(path, {"profile.launch.launch_api_us.value": 3.0})
    assert scenario.profile.id == "h100_pcie"
    assert scenario.profile.launch.launch_api_us.value == 3.0
    swapped = load_scenario(
        path, {"profile.launch.launch_api_us.value": 4.0, "topology": "gh200_1"}
    )
    assert swapped.profile.id == "gh200"
    assert swapped.profile.launch.launch_api_us.value == 4.0
    base = simulate(load_scenario(path, {"options.fidelity": "analytic"}))
    slower = simulate(
        load_scenario(
            path, {"options.fidelity": "analytic", "profile.launch.launch_api_us.value": 3.0}
        )
    )
    assert slower.metrics["time_per_kernel_s"] > base.metrics["time_per_kernel_s"]
