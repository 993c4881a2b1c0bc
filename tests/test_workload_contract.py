"""The contract every registered workload family keeps (gpusim/workloads/registry.py).

Each family has at least one small uncontended fixture below (a new family must add one: a test
checks that every registered kind has one). Over every fixture:

- both fidelities report the same metric names, per-GPU ids and per-GPU row names, and the same
  series names (the family's declared DES diagnostics aside);
- each fidelity reports exactly the metric names its family declares (``metric_names``, what
  sweeps check their ``metrics`` against), and the DES adds to the closed form's only declared
  DES diagnostics;
- the DES equals the closed form: nothing contends, so both compute the same sums and differ by
  float rounding only (the DES adds durations to its clock event by event, the closed form sums
  them in another order: a few ulps per event, under 1e-13 relative for these fixtures' hundreds
  of events; the largest seen is 4e-15). ``REL`` = 1e-12 leaves margin for that and nothing
  else; ``ABS`` = 1e-15 covers values that are differences of near-equal sums (idle times of
  about 0 s, next to makespans of about 1e-5 s);
- a device id the topology lacks is one line through the CLI, exit 2, naming the file and the
  JSON path, for ``gpusim run`` and ``gpusim check`` alike (families that name no device, like
  router_steps, say so in their fixture).

And the Workload union of spec/workload.py and the registry list the same families.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import make_profile, make_star_topology
from typer.testing import CliRunner

from gpusim.cli import app
from gpusim.engine.sim import Simulation
from gpusim.hardware.node import Node
from gpusim.result import Outcome
from gpusim.spec.llm import LlmInferenceWorkload
from gpusim.spec.model_zoo import TransformerModel
from gpusim.spec.moe import (
    CometStrategy,
    DeepEPStrategy,
    FasterMoEStrategy,
    FlashMoEStrategy,
    MegatronStrategy,
    MoELayerWorkload,
    RouterStepsWorkload,
)
from gpusim.spec.scenario import Fidelity
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.spec.workload import (
    GemmAllToAllWorkload,
    GemmOp,
    KernelChainWorkload,
    TransfersWorkload,
    Workload,
)
from gpusim.workloads.registry import (
    FAMILIES,
    WorkloadFamily,
    family_of,
    run_analytic,
    run_des,
    workload_spec_classes,
)

REL = 1e-12
ABS = 1e-15
SEED = 7


@dataclass(frozen=True)
class Fixture:
    """One small uncontended workload of a family, on the star test topology of ``n_gpus``.
    ``device_path``: dotted path (inside the workload) of a device id to corrupt; None when the
    family names no device."""

    name: str
    workload: Workload
    n_gpus: int
    device_path: str | None


FIXTURES = [
    Fixture(
        "gemm_alltoall",
        GemmAllToAllWorkload(gpus=["gpu0", "gpu1"], gemm=GemmOp(m=256, n=256, k=256)),
        2,
        "gpus.1",
    ),
    Fixture(
        "kernel_chain",
        KernelChainWorkload(gpu="gpu0", kernel=GemmOp(m=256, n=256, k=256), count=4),
        1,
        "gpu",
    ),
    Fixture(
        "transfers",
        TransfersWorkload.model_validate(
            {"transfers": [{"src": "gpu0", "dst": "gpu1", "bytes": 1_000_000}]}
        ),
        2,
        "transfers.0.dst",
    ),
    # FlashMoE's closed form is exact when every phase fits one wave: one GPU, one expert, top-1
    # (flashmoe/analytic.py); the host-driven programs are exact when no stream is shared
    Fixture(
        "moe_layer_flashmoe",
        MoELayerWorkload(
            gpus=["gpu0"],
            tokens_per_gpu=512,
            hidden=256,
            intermediate=256,
            experts=1,
            top_k=1,
            capacity_factor=None,
            strategy=FlashMoEStrategy(),
        ),
        1,
        "gpus.0",
    ),
    Fixture(
        "moe_layer_megatron",
        MoELayerWorkload(
            gpus=["gpu0", "gpu1"],
            tokens_per_gpu=512,
            hidden=256,
            intermediate=256,
            experts=4,
            top_k=2,
            strategy=MegatronStrategy(),
        ),
        2,
        "gpus.0",
    ),
    Fixture(
        "router_steps",
        RouterStepsWorkload(tokens_per_step=256, experts=8, ep_ranks=2, steps=10),
        1,
        None,
    ),
]
TINY_LLAMA = TransformerModel(
    name="tiny-llama",
    source="test fixture: a Llama-shaped decoder small enough to run in milliseconds",
    architecture="decoder",
    layers=2,
    hidden=256,
    heads=4,
    kv_heads=2,
    ffn=512,
    vocab=1000,
    max_positions=512,
    activation="silu",
    gated_mlp=True,
    norm="rmsnorm",
    norm_position="pre",
    positional="rope",
    linear_bias=False,
    tied_embeddings=True,
)
# one rank: nothing shares a stream; two ranks: tensor-parallel all-reduces and the logits'
# all-gather, every rank entering each collective at the same time (symmetric programs)
FIXTURES += [
    Fixture(
        "llm_inference",
        LlmInferenceWorkload(
            model=TINY_LLAMA,
            gpus=["gpu0"],
            batch=2,
            prompt_tokens=16,
            generated_tokens=3,
            phase="both",
        ),
        1,
        "gpus.0",
    ),
    Fixture(
        "llm_inference_tp_graph",
        LlmInferenceWorkload(
            model=TINY_LLAMA,
            gpus=["gpu0", "gpu1"],
            tensor_parallel=2,
            batch=2,
            prompt_tokens=16,
            generated_tokens=2,
            phase="both",
            launch="graph",
            kv_cache="static",
        ),
        2,
        "gpus.1",
    ),
]
# speculative decoding with every weight resident: one pass at a time, no weight stream
FIXTURES += [
    Fixture(
        f"speculative_decoding_{strategy}",
        SpeculativeDecodingWorkload(
            strategy=strategy,
            target=TINY_LLAMA,
            draft=TINY_LLAMA,
            gpu="gpu0",
            prompt_tokens=16,
            generated_tokens=12,
        ),
        1,
        "gpu",
    )
    for strategy in ("sp", "llmcad")
]
IDS = [f.name for f in FIXTURES]


def _both(fx: Fixture) -> tuple[Outcome, Outcome, WorkloadFamily[Any]]:
    topology, profile = make_star_topology(fx.n_gpus), make_profile()
    des = run_des(Node(topology, profile, Simulation()), fx.workload, seed=SEED)
    analytic = run_analytic(topology, profile, fx.workload, seed=SEED)
    return des, analytic, family_of(fx.workload)


def test_every_registered_family_has_a_fixture() -> None:
    assert {f.workload.kind for f in FIXTURES} == set(FAMILIES)


def test_the_spec_union_and_the_registry_agree() -> None:
    union = workload_spec_classes()
    assert len(union) == len(FAMILIES)
    assert {f.spec for f in FAMILIES.values()} == set(union)
    for kind, family in FAMILIES.items():
        assert family.kind == kind == family.spec.model_fields["kind"].default
        assert family.check is family.spec.check  # the method the loader runs


def test_a_family_whose_kind_disagrees_with_its_spec_is_refused() -> None:
    good = FAMILIES["transfers"]
    with pytest.raises(TypeError, match="kind defaults to"):
        WorkloadFamily(
            "transfer", good.spec, good.check, good.des, good.analytic, good.metric_names
        )
    with pytest.raises(TypeError, match="check must be"):
        WorkloadFamily(
            "transfers",
            good.spec,
            FAMILIES["kernel_chain"].check,
            good.des,
            good.analytic,
            good.metric_names,
        )


def test_a_spec_outside_the_registry_has_no_family() -> None:
    with pytest.raises(TypeError, match="no workload family for GemmOp"):
        family_of(GemmOp(m=1, n=1, k=1))


@pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
def test_both_fidelities_report_the_same_names(fx: Fixture) -> None:
    des, analytic, family = _both(fx)
    extra = family.des_diagnostics
    assert set(des.metrics) - extra == set(analytic.metrics)
    assert not extra & set(analytic.metrics)
    assert set(des.per_gpu) == set(analytic.per_gpu)
    for gpu, row in analytic.per_gpu.items():
        assert set(des.per_gpu[gpu]) - extra == set(row), gpu
        assert not extra & set(row)
    assert set(des.series) == set(analytic.series)


@pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
def test_each_fidelity_reports_exactly_the_declared_metric_names(fx: Fixture) -> None:
    des, analytic, family = _both(fx)
    topology = make_star_topology(fx.n_gpus)
    declared_des = family.metric_names(fx.workload, topology, Fidelity.des)
    declared_analytic = family.metric_names(fx.workload, topology, Fidelity.analytic)
    assert set(des.metrics) == declared_des
    assert set(analytic.metrics) == declared_analytic
    assert declared_des - declared_analytic <= family.des_diagnostics
    assert declared_analytic <= declared_des


@pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
def test_des_equals_analytic_when_nothing_contends(fx: Fixture) -> None:
    des, analytic, _ = _both(fx)
    assert des.makespan_s == pytest.approx(analytic.makespan_s, rel=REL, abs=ABS)
    for name, value in analytic.metrics.items():
        assert des.metrics[name] == pytest.approx(value, rel=REL, abs=ABS), name
    for gpu, row in analytic.per_gpu.items():
        for name, value in row.items():
            assert des.per_gpu[gpu][name] == pytest.approx(value, rel=REL, abs=ABS), (gpu, name)
    for name, values in analytic.series.items():
        assert des.series[name] == pytest.approx(values, rel=REL, abs=ABS), name


def _scenario_file(tmp_path: Path, fx: Fixture, workload: dict[str, Any]) -> Path:
    doc = {
        "name": f"contract-{fx.name}",
        "topology": make_star_topology(fx.n_gpus).model_dump(mode="json"),
        "profile": make_profile().model_dump(mode="json"),
        "workload": workload,
        "options": {"seed": SEED},
    }
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(doc))
    return path


def _corrupt(workload: dict[str, Any], dotted: str) -> str:
    """Replace the device id at ``dotted`` by one the topology lacks; returns its JSON path."""
    node: Any = workload
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = "gpu99"
    return "$.workload" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


@pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
def test_the_fixture_runs_through_the_cli(tmp_path: Path, fx: Fixture) -> None:
    path = _scenario_file(tmp_path, fx, fx.workload.model_dump(mode="json", exclude_none=True))
    runner = CliRunner()
    assert runner.invoke(app, ["check", str(path)]).exit_code == 0
    ran = runner.invoke(app, ["run", str(path), "-o", str(tmp_path / "out")])
    assert ran.exit_code == 0, ran.output


DEVICE_FIXTURES = [fx for fx in FIXTURES if fx.device_path is not None]
"""The fixtures whose workload names a device (router_steps names none)."""


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("fx", DEVICE_FIXTURES, ids=[fx.name for fx in DEVICE_FIXTURES])
def test_an_unknown_device_is_one_line_naming_file_and_path(
    tmp_path: Path, fx: Fixture, command: str
) -> None:
    assert fx.device_path is not None
    workload = fx.workload.model_dump(mode="json", exclude_none=True)
    where = _corrupt(workload, fx.device_path)
    path = _scenario_file(tmp_path, fx, workload)
    out_dir = tmp_path / "out"
    args = [command, str(path)] + (["-o", str(out_dir)] if command == "run" else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert f"{path}: {where}: " in lines[0]
    assert "gpu99" in lines[0]
    assert not out_dir.exists()


MOE_STRATEGIES = [
    FlashMoEStrategy(),
    MegatronStrategy(),
    FasterMoEStrategy(),
    CometStrategy(),
    DeepEPStrategy(),
]


@pytest.mark.parametrize("n_gpus", [1, 2, 4])
@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("strategy", MOE_STRATEGIES, ids=lambda s: s.name)
def test_moe_declares_what_each_strategy_and_option_reports(
    strategy: Any, overlap: bool, n_gpus: int
) -> None:
    """The MoE names depend on the strategy (FlashMoE's own, a host-driven one's ``sm_active``),
    on the fidelity (FlashMoE's DES diagnostic) and on ``overlap_efficiency`` (with the 2-GPU
    latency only above 2 GPUs, the GPUs defaulting to the topology's)."""
    workload = MoELayerWorkload(
        tokens_per_gpu=64,
        hidden=128,
        intermediate=128,
        experts=4,
        top_k=1,
        overlap_efficiency=overlap,
        strategy=strategy,
    )
    topology, profile = make_star_topology(n_gpus), make_profile()
    assert not list(workload.check(topology))
    family = family_of(workload)
    des = run_des(Node(topology, profile, Simulation()), workload, seed=SEED)
    analytic = run_analytic(topology, profile, workload, seed=SEED)
    assert set(des.metrics) == family.metric_names(workload, topology, Fidelity.des)
    assert set(analytic.metrics) == family.metric_names(workload, topology, Fidelity.analytic)
    assert ("latency_2gpu_s" in analytic.metrics) == (overlap and n_gpus > 2)
