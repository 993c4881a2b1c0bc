"""Megatron-Core rebuilt from its code: the two token dispatchers' collectives and syncs, the
expert back ends, training vs inference forward, the harness block; analytic equals DES where
nothing contends."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import make_geometry, make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.execution.host_costs import HostCosts
from gpusim.execution.program import ExchangeStep, HostStep, KernelStep, Step, SyncStep
from gpusim.execution.program_analytic import run_analytic
from gpusim.execution.program_des import ProgramDES
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import gpu_rates
from gpusim.result import Outcome
from gpusim.spec.base import Dtype
from gpusim.spec.moe import HarnessSpec, MegatronStrategy, MoELayerWorkload
from gpusim.workloads.moe import analytic, des, megatron
from gpusim.workloads.moe.hostdriven import PHASES
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch

G, T, H, E, K = 4, 512, 256, 8, 2
EL = 2  # bf16


def _geometry(experts: int = E) -> LayerGeometry:
    return make_geometry(G, T, H, experts, K, dtype=Dtype.bf16)


def _programs(strategy: MegatronStrategy, experts: int = E) -> tuple[list[list[Step]], float]:
    per_pair = T * K // experts
    batch = RoutedBatch(counts=np.full((G, experts), per_pair), dropped=0, maxvio_batch=0.0)
    rates = [gpu_rates(make_star_topology(G).gpus()[0].model, make_profile())] * G
    return megatron.build(_geometry(experts), batch, strategy, rates, 16)


def _run(programs: list[list[Step]]) -> tuple[Any, Any, ProgramDES]:
    node = Node(make_star_topology(G), make_profile(), Simulation())
    sim = ProgramDES(node, [f"gpu{i}" for i in range(G)], PHASES)
    res_des = sim.run(programs)
    platform = Platform.of(make_star_topology(G), make_profile())
    res_ana = run_analytic(platform, [f"gpu{i}" for i in range(G)], programs, PHASES)
    return res_des, res_ana, sim


def _exchanges(steps: list[Step]) -> dict[str, Any]:
    return {s.exchange.name: s.exchange for s in steps if isinstance(s, ExchangeStep)}


STRATEGIES = [
    MegatronStrategy(),
    MegatronStrategy(dispatcher="alltoall"),
    MegatronStrategy(backend="te"),
    MegatronStrategy(backend="sequential", forward="inference"),
    MegatronStrategy(dispatcher="alltoall", backend="sequential"),
]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=repr)
def test_analytic_equals_des_when_balanced(strategy: MegatronStrategy) -> None:
    programs, _ = _programs(strategy)
    res_des, res_ana, _ = _run(programs)
    for a, b in zip(res_des, res_ana, strict=True):
        assert a.end_s == pytest.approx(b.end_s, rel=1e-9)
        assert a.host_s == pytest.approx(b.host_s, rel=1e-12)
        assert a.sync_wait_s == pytest.approx(b.sync_wait_s, rel=1e-9)


def test_allgather_moves_n_minus_one_token_shards_into_each_rank() -> None:
    programs, moved = _programs(MegatronStrategy())
    ex = _exchanges(programs[0])
    _, _, sim = _run(programs)
    hidden = sim._collectives[id(ex["allgather_hidden"])]
    for gpu in hidden.ranks:
        assert hidden.bytes_received_B[gpu] == pytest.approx((G - 1) * T * H * EL)
    assert ex["reducescatter_hidden"].collective == "reduce_scatter"
    assert ex["reducescatter_hidden"].shard_B == T * H * EL  # input N*T*H per rank
    shards = T * H * EL * 2 + T * K * 8 + T * K * EL  # hidden twice, indices, probs
    assert moved == pytest.approx(G * (G - 1) * shards)


def test_allgather_scatters_into_a_zero_filled_global_buffer() -> None:
    programs, _ = _programs(MegatronStrategy())
    zeros = [
        s
        for s in programs[0]
        if isinstance(s, KernelStep) and s.cost.name == "moe_scatter_zeros_global"
    ]
    assert len(zeros) == 1
    assert zeros[0].cost.time_s > 0  # writes G*T*H elements


def test_dispatcher_syncs_follow_the_code() -> None:
    def syncs(strategy: MegatronStrategy, experts: int = E) -> list[SyncStep]:
        programs, _ = _programs(strategy, experts)
        return [s for s in programs[0] if isinstance(s, SyncStep)]

    # allgather: masked_select of indices and of probs, nonzero, bincount's min and max
    # (ATen _bincount_cuda_template reads both back), .cpu()
    assert len(syncs(MegatronStrategy())) == 6
    # alltoall, 2 local experts: bincount's min and max, repeat_interleave's size and its
    # non-negative check (ATen repeat_interleave_common)
    a2a = syncs(MegatronStrategy(dispatcher="alltoall"))
    assert [s.kind for s in a2a] == ["to_host"] * 4
    # one local expert: the "before_ep_alltoall" stream synchronize instead
    one = syncs(MegatronStrategy(dispatcher="alltoall"), experts=G)
    assert [s.kind for s in one] == ["to_host", "to_host", "stream"]


def _capacity_programs(strategy: MegatronStrategy, experts: int = E) -> list[list[Step]]:
    """Every (token, slot) routed evenly, capacity factor 1: nothing dropped."""
    g = make_geometry(G, T, H, experts, K, capacity_factor=1.0, dtype=Dtype.bf16)
    per_pair = T * K // experts
    batch = RoutedBatch(counts=np.full((G, experts), per_pair), dropped=0, maxvio_batch=0.0)
    rates = [gpu_rates(make_star_topology(G).gpus()[0].model, make_profile())] * G
    return megatron.build(g, batch, strategy, rates, 16)[0]


def _names(program: list[Step]) -> list[str]:
    return [s.cost.name for s in program if isinstance(s, KernelStep)]


def test_capacity_router_and_permute_follow_megatron_core_r0_8() -> None:
    drop = MegatronStrategy(dispatcher="alltoall", capacity="capacity_factor")
    # one local expert, tokens dropped without padding: the sync moves before permute 1
    # ("before_permutation_1"), after num_out_tokens' sum and copy
    one = _capacity_programs(drop.model_copy(update={"pad_to_capacity": False}), experts=G)[0]
    kinds = [s for s in one if isinstance(s, SyncStep | KernelStep)]
    sync_at = next(i for i, s in enumerate(kinds) if isinstance(s, SyncStep) and s.kind == "stream")
    later = [s.cost.name for s in kinds[sync_at:] if isinstance(s, KernelStep)]
    assert later[:1] == ["permute1_argsort_iota"]
    assert "num_out_tokens_sum" in _names(one)
    # each zeros_like(logits).scatter(...) copies its input before scattering
    names = _names(one)
    assert {"scatter_gates_copy", "scatter_mask_copy", "scatter_capacity_mask_copy"} <= set(names)
    # padding: permute_with_padded_tokens is an index_select without a sort, and
    # unpermute_with_padded_tokens a scatter_add
    padded = _names(_capacity_programs(drop)[0])
    assert not any(n.startswith("permute1_") and n != "permute1_index_select" for n in padded)
    assert "unpermute1_scatter_add" in padded and "unpermute1_index_copy" not in padded


def test_aux_loss_attaches_without_a_kernel() -> None:
    aux, _ = _programs(MegatronStrategy(load_balancing="aux_loss"))
    names = _names(aux[0])
    assert "aux_loss_attach" not in names
    assert {"tracker_div", "tracker_add"} <= set(names)


def test_training_forward_pays_autograd_bookkeeping_per_recorded_op() -> None:
    costs = HostCosts.from_profile(make_profile())
    train, _ = _programs(MegatronStrategy(forward="training"))
    infer, _ = _programs(MegatronStrategy(forward="inference"))
    recorded = sum(
        1
        for s in train[0]
        if (isinstance(s, KernelStep) and s.new_op and s.records_graph)
        or (isinstance(s, HostStep) and s.records_graph)
        or (isinstance(s, ExchangeStep) and s.records_graph)
    )
    recorded_counts = sum(
        s.count - 1 for s in train[0] if isinstance(s, HostStep) and s.records_graph
    )
    assert recorded > 10
    res_train, _, _ = _run(train)
    res_infer, _, _ = _run(infer)
    extra = res_train[0].host_s - res_infer[0].host_s
    assert extra == pytest.approx((recorded + recorded_counts) * costs.autograd_s, rel=1e-9)


def test_sequential_backend_is_a_python_loop_of_expert_modules() -> None:
    grouped, _ = _programs(MegatronStrategy(grouped_gemm="cutlass_sm90"))
    seq, _ = _programs(MegatronStrategy(backend="sequential"))
    fc = [s for s in seq[0] if isinstance(s, KernelStep) and s.cost.name in ("fc1", "fc2")]
    assert len(fc) == 2 * (E // G) and all(s.new_op for s in fc)
    host_seq = sum(s.count for s in seq[0] if isinstance(s, HostStep))
    host_grp = sum(s.count for s in grouped[0] if isinstance(s, HostStep))
    assert host_seq > host_grp


def _workload(**kw: Any) -> MoELayerWorkload:
    kw.setdefault("tokens_per_gpu", T)
    return MoELayerWorkload(hidden=H, intermediate=H, experts=E, top_k=K, **kw)


def test_harness_global_tokens_are_split_over_the_ranks() -> None:
    topo, prof = make_star_topology(G), make_profile()
    per_rank = analytic(topo, prof, _workload(tokens_per_gpu=T // G), seed=1)
    glob = analytic(
        topo, prof, _workload(tokens_per_gpu=T, harness=HarnessSpec(tokens_are="global")), seed=1
    )
    assert glob.makespan_s == per_rank.makespan_s


def test_harness_sync_each_iteration_adds_the_device_sync() -> None:
    topo, prof = make_star_topology(G), make_profile()
    strategy = MegatronStrategy()
    plain = _workload(strategy=strategy)
    synced = _workload(strategy=strategy, harness=HarnessSpec(sync_each_iteration=True))
    ret = HostCosts.from_profile(prof).sync_return_s

    def by_des(w: MoELayerWorkload) -> Outcome:
        return des(Node(topo, prof, Simulation()), w, seed=1)

    def by_analytic(w: MoELayerWorkload) -> Outcome:
        return analytic(topo, prof, w, seed=1)

    for run in (by_analytic, by_des):
        assert run(synced).makespan_s == pytest.approx(run(plain).makespan_s + ret, rel=1e-9)


def test_harness_global_tokens_must_split_evenly() -> None:
    wl = _workload(tokens_per_gpu=T + 1, harness=HarnessSpec(tokens_are="global"))
    problems = list(wl.check(make_star_topology(G)))
    assert any(loc == ("tokens_per_gpu",) for loc, _ in problems)
