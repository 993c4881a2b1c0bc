"""Block resources from a ptxas resource report: FlashMoE's persistent kernel (and the tile GEMM
rates that depend on its blocks per SM) can take registers and shared memory from
``resource_usage.json`` instead of declared numbers, resolved and checked when a scenario loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import make_h100_spec, make_profile
from typer.testing import CliRunner

from gpusim.calibrate.resources import make_report, parse_ptxas, save_resource_report
from gpusim.cli import app
from gpusim.errors import SpecError
from gpusim.execution.persistent import PersistentGrid
from gpusim.hardware.occupancy import occupancy, occupancy_of
from gpusim.hardware.rates import gpu_rates
from gpusim.simulate import simulate
from gpusim.spec.loading import load_scenario, load_workload
from gpusim.spec.moe import FlashMoEStrategy, MoELayerWorkload
from gpusim.spec.resources import KernelResourceRecord, KernelResources
from gpusim.spec.scenario import ResolvedScenario
from gpusim.spec.schema import all_schemas

ROOT = Path(__file__).resolve().parents[1]
FM1 = ROOT / "workloads" / "moe_fm1_flashmoe_2xh100.json"
SAMPLE_LOG = (
    Path(__file__).resolve().parent / "fixtures" / "ptxas_sample" / "nvcc13_ninja_build.log"
)
KERNEL = "_ZN8flashmoe10persistentILi128EEEvPKfPf"
runner = CliRunner()


def _report(path: Path, registers: int = 255, smem_bytes: int = 0) -> Path:
    """A report with one persistent kernel (sm_80 and sm_90a) and the sample log's kernels."""
    records = parse_ptxas(SAMPLE_LOG.read_text())
    for arch in ("sm_80", "sm_90a"):
        records.append(
            KernelResourceRecord(
                mangled_name=KERNEL,
                demangled_name="void flashmoe::persistent<128>(float const*, float*)",
                arch=arch,
                target="persistent_moe",
                registers_per_thread=registers,
                static_shared_mem_bytes=smem_bytes,
            )
        )
    save_resource_report(path, make_report(records, ["80", "90a"]))
    return path


def _scenario(tmp_path: Path, block_resources: Any, **strategy: Any) -> Path:
    doc = json.loads(FM1.read_text())
    doc["topology"] = str(ROOT / "topologies" / "hgx_h100_8gpu.json")
    doc["workload"]["strategy"] = {"name": "flashmoe", **strategy}
    if block_resources is not None:
        doc["workload"]["strategy"]["block_resources"] = block_resources
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(doc))
    return path


def _strategy(scenario: ResolvedScenario) -> FlashMoEStrategy:
    """The FlashMoE strategy of a MoE scenario (fails the test for any other workload)."""
    workload = scenario.workload
    assert isinstance(workload, MoELayerWorkload)
    assert isinstance(workload.strategy, FlashMoEStrategy)
    return workload.strategy


def _ref(**fields: Any) -> dict[str, Any]:
    return {
        "report": "reports/resource_usage.json",
        "kernel": "flashmoe::persistent",
        "arch": "sm_90a",
        "threads_per_block": 128,
        **fields,
    }


def test_declared_resources_are_the_strategys_fields() -> None:
    assert FlashMoEStrategy().kernel_resources() == KernelResources(
        threads_per_block=128, registers_per_thread=255, shared_mem_per_block_bytes=48 * 1024
    )
    gpu = make_h100_spec()
    res = KernelResources(
        threads_per_block=256, registers_per_thread=96, shared_mem_per_block_bytes=70_000
    )
    assert occupancy_of(gpu, res) == occupancy(gpu, 256, 96, 70_000)


def test_a_reference_resolves_to_the_reports_numbers(tmp_path: Path) -> None:
    _report(tmp_path / "reports" / "resource_usage.json", registers=168, smem_bytes=1024)
    path = _scenario(tmp_path, _ref(dynamic_shared_mem_bytes=64 * 1024))
    strategy = _strategy(load_scenario(path))
    assert isinstance(strategy, FlashMoEStrategy)
    assert strategy.kernel_resources() == KernelResources(
        threads_per_block=128,
        registers_per_thread=168,
        shared_mem_per_block_bytes=1024 + 64 * 1024,
        source=f"reports/resource_usage.json: {KERNEL} (sm_90a)",
    )
    # The grid follows: 168 registers x 128 threads leaves 3 blocks by registers, 65 KiB of
    # shared memory 3 as well; the strategy's cap of 2 still wins, at 4 it would be 3.
    rates = gpu_rates(make_h100_spec(), make_profile())
    grid = PersistentGrid.plan(rates, strategy.kernel_resources(), max_blocks_per_sm=4)
    assert grid.blocks_per_sm == 3
    assert grid.occupancy.limiting_factors == ("registers", "shared_memory")


def test_measured_resources_equal_to_the_declared_ones_change_nothing(tmp_path: Path) -> None:
    # The report says what the defaults declare (255 registers, 48 KiB, 128 threads).
    _report(tmp_path / "reports" / "resource_usage.json", registers=255)
    measured = load_scenario(_scenario(tmp_path, _ref(dynamic_shared_mem_bytes=48 * 1024)))
    declared = load_scenario(FM1)
    a, b = simulate(declared), simulate(measured)
    assert a.metrics == b.metrics and a.makespan_s == b.makespan_s
    assert a.per_gpu == b.per_gpu


def test_a_missing_kernel_names_the_scenario_file_and_path(tmp_path: Path) -> None:
    _report(tmp_path / "reports" / "resource_usage.json")
    path = _scenario(tmp_path, _ref(kernel="flashmoe::nonexistent"))
    with pytest.raises(SpecError) as err:
        load_scenario(path)
    assert err.value.file == str(path)
    assert err.value.path == "$.workload.strategy.block_resources.kernel"
    assert "resource_usage.json: no kernel 'flashmoe::nonexistent'" in err.value.reason
    assert "flashmoe::persistent<128>" in err.value.reason  # what the report has
    assert "\n" not in str(err.value)


def test_reference_problems_are_one_line_errors(tmp_path: Path) -> None:
    _report(tmp_path / "reports" / "resource_usage.json")
    cases: list[tuple[Any, dict[str, Any], str, str]] = [
        (_ref(report="reports/missing.json"), {}, ".report", "resources file not found"),
        (_ref(report="no_such_shipped_report"), {}, ".report", "unknown resources"),
        (_ref(arch="sm_75"), {}, ".kernel", "no entry for arch sm_75"),
        (_ref(threads_per_block=0), {}, ".threads_per_block", "greater than 0"),
        (_ref(extra=1), {}, ".extra", "Extra inputs are not permitted"),
        (_ref(), {"registers_per_thread": 128}, "", "replaces registers_per_thread"),
    ]
    for ref, strategy, where, reason in cases:
        path = _scenario(tmp_path, ref, **strategy)
        with pytest.raises(SpecError) as err:
            load_scenario(path)
        expected = (str(path), f"$.workload.strategy.block_resources{where}")
        assert (err.value.file, err.value.path) == expected, str(err.value)
        assert reason in err.value.reason, str(err.value)


def test_a_kernel_differing_between_architectures_needs_one_named(tmp_path: Path) -> None:
    report = json.loads(_report(tmp_path / "r.json").read_text())
    for k in report["kernels"]:
        if k["mangled_name"] == KERNEL and k["arch"] == "sm_80":
            k["registers_per_thread"] = 200
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "resource_usage.json").write_text(json.dumps(report))
    ref = _ref()
    del ref["arch"]
    with pytest.raises(SpecError, match=r"ambiguous.*name the arch"):
        load_scenario(_scenario(tmp_path, ref))
    strategy = _strategy(load_scenario(_scenario(tmp_path, _ref(arch="sm_80"))))
    assert isinstance(strategy, FlashMoEStrategy)
    assert strategy.kernel_resources().registers_per_thread == 200


def test_a_broken_report_is_blamed_on_the_report(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    bad = tmp_path / "reports" / "resource_usage.json"
    bad.write_text('{"schema": "gpusim.resource_usage.v1", "kernels": []}')
    with pytest.raises(SpecError) as err:
        load_scenario(_scenario(tmp_path, _ref()))
    assert err.value.file == str(bad) and err.value.path == "$.generated_utc"


def test_a_reference_in_a_workload_file_is_relative_to_that_file(tmp_path: Path) -> None:
    _report(tmp_path / "wl" / "reports" / "resource_usage.json", registers=64)
    workload = json.loads(FM1.read_text())["workload"]
    workload["strategy"] = {"name": "flashmoe", "block_resources": _ref()}
    (tmp_path / "wl" / "moe.json").write_text(json.dumps(workload))
    loaded = load_workload(tmp_path / "wl" / "moe.json")
    assert isinstance(loaded, MoELayerWorkload)
    assert isinstance(loaded.strategy, FlashMoEStrategy)
    assert loaded.strategy.kernel_resources().registers_per_thread == 64
    doc = json.loads(FM1.read_text())
    doc["topology"] = str(ROOT / "topologies" / "hgx_h100_8gpu.json")
    doc["workload"] = "wl/moe.json"
    (tmp_path / "s.json").write_text(json.dumps(doc))
    strategy = _strategy(load_scenario(tmp_path / "s.json"))
    assert isinstance(strategy, FlashMoEStrategy)
    assert strategy.kernel_resources().registers_per_thread == 64


def test_overrides_reach_the_reference_and_the_cli_reports_one_line(tmp_path: Path) -> None:
    _report(tmp_path / "reports" / "resource_usage.json", registers=96)
    path = _scenario(tmp_path, _ref())
    strategy = _strategy(load_scenario(path, {"workload.strategy.block_resources.arch": "sm_80"}))
    assert strategy.kernel_resources().source is not None
    assert "(sm_80)" in str(strategy.kernel_resources().source)
    result = runner.invoke(
        app,
        [
            "run",
            str(path),
            "--set",
            "workload.strategy.block_resources.kernel=nope",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {path}: $.workload.strategy.block_resources.kernel: ")
    assert not (tmp_path / "out").exists()


def test_workload_schema_accepts_the_reference_form() -> None:
    schema = all_schemas()["workload.schema.json"]
    field = schema["$defs"]["FlashMoEStrategy"]["properties"]["block_resources"]
    refs = {alt.get("$ref") for alt in field["anyOf"]}
    assert {"#/$defs/KernelResources", "#/$defs/KernelResourcesRef"} <= refs
    assert set(schema["$defs"]["KernelResourcesRef"]["required"]) == {
        "report",
        "kernel",
        "threads_per_block",
    }
