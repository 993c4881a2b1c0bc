"""FastMoE / FasterMoE rebuilt from laekov/fastmoe: per-expert NCCL groups, host syncs that
leave the GPU idle, latency growing with the experts from the mechanism, both fidelities
equal where nothing contends, bad options as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_geometry, make_profile, make_star_topology
from typer.testing import CliRunner

from gpusim.cli import app
from gpusim.engine.sim import Simulation
from gpusim.execution.launch import LaunchTimes
from gpusim.execution.program import ExchangeStep, KernelStep, Step, SyncStep, host_cost_s
from gpusim.execution.program_analytic import ProgramAnalytic, exchange_time_s, run_analytic
from gpusim.execution.program_des import run_des
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import gpu_rates
from gpusim.kernels.memcpy import memcpy_time_s
from gpusim.spec.moe import FasterMoEStrategy
from gpusim.workloads.moe import HOST_DRIVEN
from gpusim.workloads.moe.fastermoe_shadow import global_policy
from gpusim.workloads.moe.hostdriven import PHASES
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch

T, H, K = 1024, 512, 2


def _geometry(n: int, experts: int) -> LayerGeometry:
    return make_geometry(n, T, H, experts, K)


def _balanced(n: int, experts: int) -> RoutedBatch:
    counts = np.full((n, experts), T * K // experts)
    return RoutedBatch(counts=counts, dropped=0, maxvio_batch=0.0)


def _programs(
    n: int, experts: int, strategy: FasterMoEStrategy | None = None
) -> tuple[LayerGeometry, list[list[Step]]]:
    g = _geometry(n, experts)
    rates = [gpu_rates(make_star_topology(n).gpus()[0].model, make_profile())] * n
    strategy = strategy or FasterMoEStrategy()
    programs, _ = HOST_DRIVEN["fastermoe"](g, _balanced(n, experts), strategy, rates, 16)
    return g, programs


def _run(
    n: int, experts: int, strategy: FasterMoEStrategy | None = None, trace: bool = False
) -> tuple[float, float, Node]:
    g, programs = _programs(n, experts, strategy)
    topo, prof = make_star_topology(n), make_profile()
    node = Node(topo, prof, Simulation(trace=trace))
    des = run_des(node, g.gpus, programs, PHASES)
    ana = run_analytic(Platform.of(topo, prof), g.gpus, programs, PHASES)
    return max(r.end_s for r in des), max(r.end_s for r in ana), node


def test_plain_fastmoe_is_the_default() -> None:
    assert FasterMoEStrategy().smart_schedule is False


@pytest.mark.parametrize(("n", "experts"), [(2, 8), (4, 8), (4, 16)])
def test_each_exchange_is_one_nccl_group_per_local_expert_with_every_worker(
    n: int, experts: int
) -> None:
    # global_exchange.h: per local expert one ncclGroupStart/End holding a send and a receive
    # with every worker: E_local NCCL calls and E_local x N point-to-point pairs per exchange.
    g, programs = _programs(n, experts)
    for prefix in ("global_scatter_", "global_gather_"):
        groups = [
            s.exchange
            for s in programs[0]
            if isinstance(s, ExchangeStep) and s.exchange.name.startswith(prefix)
        ]
        assert len(groups) == g.local_experts
        pairs = sum(int(np.count_nonzero(ex.send_B[0])) for ex in groups)
        assert pairs == g.local_experts * n
        for i, ex in enumerate(groups):  # group i carries the rows of each worker's expert i
            assert ex.send_B[0][1] == T * K // experts * g.row_bytes
            assert ex.name == f"{prefix}{i}"


def test_each_expert_pays_its_host_syncs_and_one_cublas_gemm_per_linear() -> None:
    g, programs = _programs(4, 16)
    syncs = [s for s in programs[0] if isinstance(s, SyncStep)]
    gemms = [s for s in programs[0] if isinstance(s, KernelStep) and s.cost.name == "cublas_gemm"]
    # prepare_forward: two .item() and three .cpu(); each FMoELinear: the count's blocking
    # copy, repeat_interleave's two .item(), syncTorch and smgr->sync: 5 per linear, 2 linears
    assert len(syncs) == 5 + 10 * g.local_experts
    assert len(gemms) == 2 * g.local_experts
    assert all(s.stream == 1 for s in gemms)  # the stream manager's stream, not torch's


def test_a_sync_leaves_the_gpu_idle_until_the_host_issues_again() -> None:
    _, _, node = _run(2, 8, trace=True)
    times = LaunchTimes.from_profile(make_profile())
    # after a copy the host waited for, nothing can start before the host has returned from
    # the sync and issued again: return latency + at least one runtime call + doorbell
    least = times.sync_return_s + times.api_s + times.doorbell_s
    events = [e for e in node.sim.recorder.events if e.kind == "slice"]
    gpu = sorted((e for e in events if e.track.group == "gpu0"), key=lambda e: e.start_s)
    host = [e for e in events if e.track.lane == "rank gpu0"]
    waits = [e for e in host if e.name in ("sync", "cudaStreamSynchronize")]
    assert len(waits) == 5 + 10 * 4  # prepare_forward's 5, then 10 per local expert
    copies = [e for e in gpu if e.cat == "gpu_memcpy"]
    assert len(copies) == 5 + 6 * 4  # .item()/.cpu()/.to(): copies the host waits for
    for copy in copies:
        later = [x for x in gpu if x.start_s >= copy.end_s and x is not copy]
        nxt = min(later, key=lambda x: x.start_s)
        running = [x for x in gpu if x.start_s < nxt.start_s and x.end_s > copy.end_s]
        assert not running  # the GPU is idle while the host returns and issues again
        assert nxt.start_s - copy.end_s >= least - 1e-12
    # the host thread blocked in each copy's sync until the copy landed, plus the return
    for sync in (e for e in host if e.name == "sync"):
        landed = max(c.end_s for c in copies if c.end_s <= sync.end_s + 1e-15)
        assert sync.end_s == pytest.approx(landed + times.sync_return_s, abs=1e-12)


@pytest.mark.parametrize("smart", [False, True])
def test_latency_grows_with_the_experts_at_fixed_tokens(smart: bool) -> None:
    strategy = FasterMoEStrategy(smart_schedule=smart)
    latencies = [_run(4, e, strategy)[0] for e in (4, 8, 16, 32)]
    assert latencies == sorted(latencies) and len(set(latencies)) == 4
    # the mechanism: each local expert adds its syncs and two NCCL groups, so the growth per
    # extra local expert is at least its 10 sync returns
    sync_return = LaunchTimes.from_profile(make_profile()).sync_return_s
    steps = np.diff(latencies)
    added_local = np.diff([e // 4 for e in (4, 8, 16, 32)])
    assert all(s >= a * 10 * sync_return for s, a in zip(steps, added_local, strict=True))


@pytest.mark.parametrize(
    "strategy",
    [
        FasterMoEStrategy(),
        FasterMoEStrategy(smart_schedule=True),
        FasterMoEStrategy(smart_schedule=True, pipeline_gran=2),
    ],
)
def test_analytic_equals_des_where_nothing_contends(strategy: FasterMoEStrategy) -> None:
    t_des, t_ana, _ = _run(4, 8, strategy)
    if strategy.pipeline_gran == 1:
        assert t_des == pytest.approx(t_ana, rel=1e-9)
    else:  # pipelined: exchanges overlap expert kernels and share their GPUs' HBM, which only
        # the DES models (docs/memory.md); at these sizes that costs picoseconds
        assert t_ana <= t_des <= t_ana * (1 + 1e-6)


def test_smart_schedule_exchanges_with_one_group_of_workers_per_step() -> None:
    # smart_schedule.h: n_groups = N / pipeline_gran steps; at step s rank r sends to the
    # workers of group (r / gran + s) mod n_groups, one NCCL group per (step, local expert)
    g, programs = _programs(8, 16, FasterMoEStrategy(smart_schedule=True, pipeline_gran=4))
    groups = [
        s.exchange
        for s in programs[0]
        if isinstance(s, ExchangeStep) and s.exchange.name.startswith("smart_scatter_")
    ]
    assert len(groups) == 2 * g.local_experts
    step0, step1 = groups[0], groups[g.local_experts]
    assert np.nonzero(step0.send_B[0])[0].tolist() == [0, 1, 2, 3]
    assert np.nonzero(step1.send_B[0])[0].tolist() == [4, 5, 6, 7]
    assert np.nonzero(step1.send_B[5])[0].tolist() == [0, 1, 2, 3]
    # every routed row crosses exactly once over the steps
    total = sum(ex.send_B for ex in groups)
    assert np.allclose(total, np.full((8, 8), T * K // 16 * 2 * g.row_bytes))


def _moe_doc(strategy: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "fastmoe-bad-option",
        "topology": make_star_topology(2).model_dump(mode="json"),
        "workload": {
            "kind": "moe_layer",
            "tokens_per_gpu": 256,
            "hidden": 256,
            "intermediate": 256,
            "experts": 4,
            "strategy": strategy,
        },
        "profile": make_profile().model_dump(mode="json"),
    }


@pytest.mark.parametrize(
    ("strategy", "where"),
    [
        ({"name": "fastermoe", "pipeline_gran": 0}, "pipeline_gran"),
        ({"name": "fastermoe", "smart_schedule": "maybe"}, "smart_schedule"),
        ({"name": "fastermoe", "chunks": 4}, "chunks"),
        ({"name": "fastermoe", "shadowing": "yes"}, "shadowing"),
        ({"name": "fastermoe", "shadowing": True}, "shadowing needs smart_schedule"),
    ],
)
def test_bad_option_is_one_line_naming_file_and_json_path(
    tmp_path: Path, strategy: dict[str, Any], where: str
) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(_moe_doc(strategy)))
    result = CliRunner().invoke(app, ["run", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert str(path) in lines[0] and "$.workload.strategy" in lines[0] and where in lines[0]


def test_shadowing_is_off_by_default_and_only_with_the_smart_schedule() -> None:
    # fmoe/layers.py imports the policy-calling forward only under FMOE_FASTER_SCHEDULE_ENABLE
    assert FasterMoEStrategy().shadowing is False
    with pytest.raises(ValueError, match="shadowing needs smart_schedule"):
        FasterMoEStrategy(shadowing=True)


def test_policy_shadows_nothing_under_top_k_and_costs_its_overhead_exactly() -> None:
    # shadow_policy.py global_policy: .sum(1) totals each worker's row (T k rows under top-k,
    # all equal), so lat_new = lat_base + send_model_time and the loop breaks at once
    n, experts = 4, 8
    assert not global_policy(_balanced(n, experts).counts, H).any()
    skewed = np.zeros((n, experts))
    skewed[:, 0] = T * K  # every worker routes everything to expert 0: totals still equal
    assert not global_policy(skewed, H).any()
    smart = FasterMoEStrategy(smart_schedule=True)
    shadow = FasterMoEStrategy(smart_schedule=True, shadowing=True)
    base_des, base_ana, _ = _run(n, experts, smart)
    des, ana, _ = _run(n, experts, shadow)
    g, programs = _programs(n, experts, shadow)
    names = [s.exchange.name for s in programs[0] if isinstance(s, ExchangeStep)]
    assert not any(x.startswith("shadow_bcast") for x in names)
    # closed form: the counts' blocking copy to the device, the all-gather (a c10d call) and
    # the .cpu() copy, each from an idle GPU (prepare_forward ends in a sync)
    topo, prof = make_star_topology(n), make_profile()
    platform = Platform.of(topo, prof)
    ana_ = ProgramAnalytic(platform, g.gpus, PHASES)
    route = platform.route(g.gpus[0], platform.host_of[g.gpus[0]])
    times = ana_.times
    i = names.index("shadow_policy_all_gather")
    policy = [s for s in programs[0] if isinstance(s, ExchangeStep)][i]
    k = programs[0].index(policy)
    to_dev, cpu = programs[0][k - 1], programs[0][k + 1]
    assert isinstance(to_dev, SyncStep) and isinstance(cpu, SyncStep)
    ex = exchange_time_s(platform, g.gpus, policy.exchange, ana_.setup_s)
    c1, c2, c3 = (host_cost_s(s, ana_.costs, ana_.nccl_host_call_s) for s in (to_dev, policy, cpu))
    copy1, copy2 = (
        memcpy_time_s(s.d2h_bytes, route.bottleneck_Bps, route.latency_s) for s in (to_dev, cpu)
    )
    # the .cpu() copy queues behind the all-gather on the same stream: its issue hides under it
    expected = (c1 + times.doorbell_s + copy1 + times.sync_return_s) + (
        c2 + times.doorbell_s + max(ex, c3) + copy2 + times.sync_return_s
    )
    assert policy.exchange.collective == "all_gather"
    assert policy.exchange.shard_B == experts * 8
    assert ana - base_ana == pytest.approx(expected, rel=1e-9)
    assert des - base_des == pytest.approx(expected, rel=1e-9)


def test_policy_shadows_the_heaviest_worker_index_when_worker_totals_differ() -> None:
    # dropped rows make the per-worker totals unequal: worker 2 sends far more than the rest.
    # The library shadows res[index] with index the sorted WORKER index: expert 2.
    n, experts = 4, 8
    counts = np.zeros((n, experts))
    counts[:, 2] = counts[:, 5] = 16.0
    counts[2, 5] = 16384.0
    stored = global_policy(counts, H)
    assert stored.tolist() == [i == 2 for i in range(experts)]
    g = _geometry(n, experts)
    rates = [gpu_rates(make_star_topology(n).gpus()[0].model, make_profile())] * n
    batch = RoutedBatch(counts=counts.astype(int), dropped=0, maxvio_batch=0.0)
    strategy = FasterMoEStrategy(smart_schedule=True, shadowing=True)
    programs, moved = HOST_DRIVEN["fastermoe"](g, batch, strategy, rates, 16)
    lx = g.local_experts
    # off-rank rows of expert 5 (dispatch and combine), none of expert 2, and one broadcast
    off = counts[:, 5].sum() - counts[5 // lx, 5]
    assert moved == pytest.approx(
        2 * off * g.row_bytes + (n - 1) * (2 * H * H + 2 * H) * 2
    )  # expert 2 is local expert 0 of rank 1
    for r, prog in enumerate(programs):
        exchanges = [s.exchange for s in prog if isinstance(s, ExchangeStep)]
        bcasts = [ex for ex in exchanges if ex.name.startswith("shadow_bcast_")]
        assert [ex.name for ex in bcasts] == ["shadow_bcast_2"]
        param_B = (2 * H * H + 2 * H) * 2
        assert bcasts[0].collective == "all_gather"
        assert bcasts[0].shard_B * (n - 1) == pytest.approx(param_B)
        for prefix in ("smart_scatter_", "smart_gather_"):  # rows of expert 2 skipped
            groups = [ex for ex in exchanges if ex.name.startswith(prefix)]
            ours = [ex for ex in groups if ex.name.endswith(f"_{2 % lx}")]
            assert ours and all(ex.send_B.sum() == 0 for ex in ours)
            others = [ex for ex in groups if not ex.name.endswith(f"_{2 % lx}")]
            assert sum(ex.send_B.sum() for ex in others) > 0
        owner = [
            s for s in prog if isinstance(s, KernelStep) and s.cost.name == "get_expert_params"
        ]
        assert len(owner) == (1 if r == 2 // lx else 0)
        # each rank computes its own rows of expert 2 after the broadcast
        at = prog.index(
            next(s for s in prog if isinstance(s, ExchangeStep) and s.exchange is bcasts[0])
        )
        waits = [s for s in prog if isinstance(s, KernelStep) and s.after == (at,)]
        assert len(waits) == 1
    t_des = max(
        x.end_s
        for x in run_des(
            Node(make_star_topology(n), make_profile(), Simulation()), g.gpus, programs, PHASES
        )
    )
    t_ana = max(
        x.end_s
        for x in run_analytic(
            Platform.of(make_star_topology(n), make_profile()), g.gpus, programs, PHASES
        )
    )
    assert t_des > 0 and t_ana > 0
