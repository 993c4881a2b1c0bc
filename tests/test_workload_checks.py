"""Semantic checks of workload specs against their topology (each spec class's ``check``).

Every bad input below is refused when the scenario loads, as one SpecError naming the JSON path,
and is also refused by the model itself when the loader is bypassed: a check never rejects what
the simulation could run, and what it rejects no longer surfaces as a KeyError or a run-time
error only after ``gpusim check`` said ok.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import make_h100_spec, make_profile, make_scenario, make_star_topology
from pydantic import TypeAdapter
from typer.testing import CliRunner

from gpusim.cli import app
from gpusim.errors import SimulationError, SpecError
from gpusim.simulate import simulate
from gpusim.spec.base import Dtype
from gpusim.spec.loading import scenario_from_dict
from gpusim.spec.scenario import Fidelity
from gpusim.spec.topology import Topology
from gpusim.spec.workload import Workload

MOE: dict[str, Any] = {
    "kind": "moe_layer",
    "gpus": ["gpu0", "gpu1"],
    "tokens_per_gpu": 256,
    "hidden": 256,
    "intermediate": 256,
    "experts": 4,
    "top_k": 2,
}
ROUTER: dict[str, Any] = {"kind": "router_steps", "tokens_per_step": 256, "experts": 8, "steps": 3}
NO_FP8 = make_h100_spec(
    name="no-fp8 GPU",
    tensor_peak_TFLOPS={Dtype.tf32: 400.0, Dtype.fp16: 800.0, Dtype.bf16: 800.0},
)

# (case id, workload, GPUs of the star topology, GPU model or None, JSON path, reason fragment)
BAD: list[tuple[str, dict[str, Any], int, Any, str, str]] = [
    ("moe-unknown-gpu", {**MOE, "gpus": ["gpu0", "gpu7"]}, 2, None, "gpus[1]", "not a GPU"),
    ("moe-empty-gpus", {**MOE, "gpus": []}, 2, None, "gpus", "empty"),
    ("moe-duplicate-gpu", {**MOE, "gpus": ["gpu0", "gpu0"]}, 2, None, "gpus[1]", "twice"),
    ("moe-experts-split", {**MOE, "gpus": None, "experts": 4}, 3, None, "experts", "evenly"),
    (
        "moe-overlap-2-gpus",
        {**MOE, "gpus": None, "experts": 3, "top_k": 1, "overlap_efficiency": True},
        3,
        None,
        "overlap_efficiency",
        "2 GPUs",
    ),
    (
        "moe-fp8-without-peak",
        {**MOE, "strategy": {"name": "megatron", "dtype": "fp8"}},
        2,
        NO_FP8,
        "strategy.dtype",
        "no tensor-core peak for fp8",
    ),
    ("moe-flashmoe-tile-n", {**MOE, "hidden": 200}, 2, None, "hidden", "tile_n"),
    (
        "moe-flashmoe-threads",
        {**MOE, "strategy": {"name": "flashmoe", "threads_per_block": 2048}},
        2,
        None,
        "strategy.threads_per_block",
        "cannot launch: threads_per_block 2048",
    ),
    (
        "moe-flashmoe-register-file",
        {**MOE, "strategy": {"name": "flashmoe", "threads_per_block": 1024}},
        2,
        None,
        "strategy.registers_per_thread",
        "more than the 65536 available per block",
    ),
    (
        "moe-flashmoe-measured-block",
        {
            **MOE,
            "strategy": {
                "name": "flashmoe",
                "block_resources": {
                    "threads_per_block": 128,
                    "registers_per_thread": 100,
                    "shared_mem_per_block_bytes": 10**6,
                },
            },
        },
        2,
        None,
        "strategy.block_resources",
        "per-block maximum",
    ),
    (
        "moe-multiplicative-alf",
        {
            **MOE,
            "routing": {
                "balancing": "alf_lb",
                "alf_update": "multiplicative",
                "alf_update_rate": 2,
            },
        },
        2,
        None,
        "routing.alf_update_rate",
        "< 1",
    ),
    ("router-ranks", {**ROUTER, "experts": 10, "ep_ranks": 4}, 1, None, "experts", "evenly"),
    (
        "router-top-k",
        {**ROUTER, "experts": 2, "top_k": 3, "ep_ranks": 1},
        1,
        None,
        "top_k",
        "top_k",
    ),
    (
        "gemm-alltoall-empty",
        {"kind": "gemm_alltoall", "gpus": [], "gemm": {"m": 64, "n": 64, "k": 64}},
        2,
        None,
        "gpus",
        "empty",
    ),
]
IDS = [case[0] for case in BAD]


def _doc(workload: dict[str, Any], n_gpus: int, model: Any) -> dict[str, Any]:
    topology = make_star_topology(n_gpus, gpu=model)
    return {
        "name": "check-test",
        "topology": topology.model_dump(mode="json"),
        "profile": make_profile().model_dump(mode="json"),
        "workload": {k: v for k, v in workload.items() if v is not None},
    }


@pytest.mark.parametrize(("case", "workload", "n_gpus", "model", "where", "reason"), BAD, ids=IDS)
def test_the_loader_refuses_what_the_model_cannot_run(
    case: str, workload: dict[str, Any], n_gpus: int, model: Any, where: str, reason: str
) -> None:
    doc = _doc(workload, n_gpus, model)
    with pytest.raises(SpecError) as caught:
        scenario_from_dict(doc, "scenario.json")
    err = caught.value
    assert err.file == "scenario.json"
    assert err.path == f"$.workload.{where}"
    assert reason in err.reason
    # bypassing the loader, the model itself fails on the same input
    topology = Topology.model_validate(doc["topology"])
    spec: Workload = TypeAdapter(Workload).validate_python(doc["workload"])
    for fidelity in (Fidelity.des, Fidelity.analytic):
        with pytest.raises((SimulationError, KeyError, ValueError, ZeroDivisionError)):
            simulate(make_scenario(spec, topology=topology, fidelity=fidelity))


def test_valid_moe_and_router_workloads_pass() -> None:
    for workload, n in ((MOE, 2), ({**MOE, "gpus": None, "experts": 8}, 4), (ROUTER, 1)):
        scenario_from_dict(_doc(workload, n, None), "scenario.json")


@pytest.mark.parametrize("command", ["run", "check"])
def test_the_cli_reports_a_moe_problem_in_one_line(tmp_path: Path, command: str) -> None:
    path = tmp_path / "moe.json"
    path.write_text(json.dumps(_doc({**MOE, "gpus": ["gpu0", "gpu7"]}, 2, None)))
    out_dir = tmp_path / "out"
    args = [command, str(path)] + (["-o", str(out_dir)] if command == "run" else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == [
        f"error: {path}: $.workload.gpus[1]: 'gpu7' is not a GPU of topology 'star2'"
    ], result.output


@pytest.mark.parametrize(
    ("kind", "counts", "reason"),
    [
        ("router_steps", [[1, 2, 3]], "expected a list of 8 expert counts, got 3 entries"),
        ("router_steps", [[1] + [0] * 7], "only 1 experts have tokens, fewer than top_k = 2"),
        ("moe_layer", [[1, 1, 1, -1]], "counts must be finite and non-negative"),
        ("moe_layer", "{not json", "routing trace is not valid JSON"),
    ],
)
def test_a_bad_routing_trace_is_refused_when_loaded(
    tmp_path: Path, kind: str, counts: Any, reason: str
) -> None:
    trace = tmp_path / "counts.json"
    trace.write_text(counts if isinstance(counts, str) else json.dumps(counts))
    base = ROUTER if kind == "router_steps" else MOE
    routing = {"distribution": "trace", "trace_file": "counts.json"}
    doc = _doc({**base, "routing": routing}, 2, None)
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(doc))
    result = CliRunner().invoke(app, ["check", str(scenario)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert f"{scenario}: $.workload.routing.trace_file: {trace}" in lines[0]
    assert reason in lines[0]
    # bypassing the loader, the router refuses the same trace
    topology = Topology.model_validate(doc["topology"])
    raw = {**doc["workload"], "routing": {**routing, "trace_file": str(trace)}}
    spec: Workload = TypeAdapter(Workload).validate_python(raw)
    with pytest.raises(SimulationError, match=r"counts\.json"):
        simulate(make_scenario(spec, topology=topology, fidelity=Fidelity.analytic))


def test_a_good_routing_trace_loads(tmp_path: Path) -> None:
    (tmp_path / "counts.json").write_text(json.dumps([[8, 4, 2, 2, 1, 1, 1, 1]] * 3))
    doc = _doc(
        {**ROUTER, "routing": {"distribution": "trace", "trace_file": "counts.json"}}, 1, None
    )
    scenario_from_dict(doc, tmp_path / "scenario.json")
