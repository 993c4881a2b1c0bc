"""Host-driven MoE baselines: closed forms where nothing contends, payload efficiency, launch
counts from the mechanism, and bulk-synchronous stragglers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import make_geometry, make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.execution.program import Exchange, ExchangeStep, HostStep, KernelStep
from gpusim.execution.program_analytic import first_fit_s, run_analytic
from gpusim.execution.program_des import run_des
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import gpu_rates
from gpusim.spec.moe import (
    DeepEPStrategy,
    FasterMoEStrategy,
    MegatronStrategy,
    MoELayerWorkload,
)
from gpusim.workloads.moe import HOST_DRIVEN, analytic, des
from gpusim.workloads.moe.hostdriven import PHASES
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch

G, T, H, FFN, E, K = 4, 1024, 512, 512, 8, 2  # GPUs, tokens, hidden, expert FFN, experts, top-k
A2A: dict[str, Any] = {"dispatcher": "alltoall", "capacity": "capacity_factor"}
"""Megatron's alltoall dispatcher with the workload's capacity factor."""


def _geometry(cf: float | None = 1.0, hidden: int = H) -> LayerGeometry:
    return make_geometry(G, T, hidden, E, K, capacity_factor=cf)


def _balanced(per_pair: int) -> RoutedBatch:
    return RoutedBatch(counts=np.full((G, E), per_pair), dropped=0, maxvio_batch=0.0)


def _run(
    strategy: Any, batch: RoutedBatch, cf: float | None = 1.0, hidden: int = H
) -> tuple[float, float, list[Any]]:
    topo, prof = make_star_topology(G), make_profile()
    g = _geometry(cf, hidden)
    rates = [gpu_rates(topo.gpus()[0].model, prof)] * G
    programs, moved = HOST_DRIVEN[strategy.name](g, batch, strategy, rates, 16)
    node = Node(topo, prof, Simulation())
    res_des = run_des(node, g.gpus, programs, PHASES)
    res_ana = run_analytic(Platform.of(topo, prof), g.gpus, programs, PHASES)
    return max(r.end_s for r in res_des), max(r.end_s for r in res_ana), [node, moved, res_des]


def test_megatron_des_equals_closed_form_when_balanced() -> None:
    # symmetric ranks, one stream each: nothing contends, so both fidelities agree exactly
    t_des, t_ana, _ = _run(MegatronStrategy(), _balanced(T * K // E))
    assert t_des == pytest.approx(t_ana, rel=1e-9)


def test_deepep_des_equals_closed_form_when_balanced() -> None:
    t_des, t_ana, _ = _run(DeepEPStrategy(), _balanced(T * K // E))
    assert t_des == pytest.approx(t_ana, rel=1e-9)


def test_padding_halves_payload_efficiency_at_half_capacity() -> None:
    # capacity per (source, expert) = ceil(T/E) * CF * k = 256 tokens; route 128 of them
    g = _geometry()
    assert g.capacity() == 256
    batch = _balanced(128)
    topo, prof = make_star_topology(G), make_profile()
    rates = [gpu_rates(topo.gpus()[0].model, prof)] * G
    pad, exact_s = MegatronStrategy(pad_to_capacity=True, **A2A), MegatronStrategy(**A2A)
    _, padded = HOST_DRIVEN["megatron"](g, batch, pad, rates, 16)
    exact_s = exact_s.model_copy(update={"pad_to_capacity": False})
    _, exact = HOST_DRIVEN["megatron"](g, batch, exact_s, rates, 16)
    useful = g.useful_remote_bytes(batch)
    counts = G * (G - 1) * E * 8  # the all-gather of the per-expert counts (unpadded only)
    assert exact == pytest.approx(useful + counts)
    assert padded == pytest.approx(2 * useful)  # payload efficiency 0.5


def test_alltoall_moves_the_routed_bytes_over_each_link() -> None:
    # uniform: each GPU sends (G-1) * 2 experts * 64 tokens of H fp16 to each... per uplink:
    # dispatch (G-1) peers x 2 local experts x 64 tokens x H x 2 B, plus the same for combine
    strategy = MegatronStrategy(pad_to_capacity=False, **A2A)
    _, _, (node, moved, _) = _run(strategy, _balanced(64))
    per_link = 2 * (G - 1) * 2 * 64 * H * 2
    stats = {s.name: s.bytes_carried for s in node.network.stats()}
    count_bytes = (G - 1) * E * 8  # the ring all-gather of E int64 counts: G-1 shards out
    # Every message is under 16 channels x 16384 B, so NCCL sends it with LL: the wire carries a
    # flag beside every data word (the test profile's nccl.bandwidth_fraction.ll = 0.5).
    wire_per_data = 1 / 0.5
    assert stats["gpu1->sw"] == pytest.approx(wire_per_data * (per_link + count_bytes), rel=1e-9)
    assert moved == pytest.approx(G * per_link + G * count_bytes)


def test_grouped_gemm_implementations_set_the_expert_launches() -> None:
    grouped = MegatronStrategy(grouped_gemm="cutlass_sm90")
    _, _, (_, _, one_kernel) = _run(grouped, _balanced(64))
    _, _, (_, _, loop) = _run(MegatronStrategy(grouped_gemm="cublas_loop"), _balanced(64))
    _, _, (_, _, te) = _run(MegatronStrategy(variant="te"), _balanced(64))
    local = E // G
    # two grouped GEMMs, each one kernel or one kernel per local expert
    assert loop[0].launches - one_kernel[0].launches == 2 * (local - 1)
    assert te[0].launches == loop[0].launches


def test_grouped_gemms_are_one_framework_operator_each() -> None:
    g = _geometry()
    rates = [gpu_rates(make_star_topology(G).gpus()[0].model, make_profile())] * G
    local = E // G
    for strategy in (MegatronStrategy(grouped_gemm="cublas_loop"), MegatronStrategy(variant="te")):
        programs, _ = HOST_DRIVEN["megatron"](g, _balanced(64), strategy, rates, 16)
        gemm0 = [s for s in programs[0] if isinstance(s, KernelStep) and s.cost.name == "gemm0"]
        assert len(gemm0) == local
        assert sum(s.new_op for s in gemm0) == 1


def test_te_spreads_expert_gemms_over_its_compute_streams() -> None:
    g = _geometry()
    rates = [gpu_rates(make_star_topology(G).gpus()[0].model, make_profile())] * G
    programs, _ = HOST_DRIVEN["megatron"](
        g, _balanced(64), MegatronStrategy(variant="te"), rates, 16
    )
    steps = programs[0]
    gemm0 = {
        i: s for i, s in enumerate(steps) if isinstance(s, KernelStep) and s.cost.name == "gemm0"
    }
    first, last = min(gemm0), max(gemm0)
    assert [s.stream for s in gemm0.values()] == [
        1 + j % 4 for j in range(E // G)
    ]  # TE's 4 streams
    # each waits for the last launch on the calling stream (host-only steps launch nothing)
    prior = max(i for i, s in enumerate(steps[:first]) if not isinstance(s, HostStep))
    assert all(s.after == (prior,) for s in gemm0.values())
    activation = steps[last + 1]
    assert isinstance(activation, KernelStep) and activation.cost.name == "activation"
    assert activation.stream == 0 and activation.after == tuple(gemm0)


def test_sm80_grouped_gemm_runs_on_the_mma_sync_path() -> None:
    g = _geometry()
    rates = [gpu_rates(make_star_topology(G).gpus()[0].model, make_profile())] * G

    def gemm_s(strategy: MegatronStrategy) -> float:
        programs, _ = HOST_DRIVEN["megatron"](g, _balanced(64), strategy, rates, 16)
        return sum(
            s.cost.compute_time_s
            for s in programs[0]
            if isinstance(s, KernelStep) and s.cost.name == "gemm0"
        )

    sm80 = gemm_s(MegatronStrategy(grouped_gemm="cutlass_sm80"))
    sm90 = gemm_s(MegatronStrategy(grouped_gemm="cutlass_sm90"))
    assert sm80 > sm90  # mma.sync reaches a smaller share of the tensor peak than wgmma


def test_imbalance_delays_every_rank_of_a_bulk_synchronous_layer() -> None:
    uniform = _balanced(64)
    skew = np.zeros((G, E), dtype=int)
    skew[:, 0] = 64 * E  # every token goes to expert 0 on gpu0
    hot = RoutedBatch(counts=skew, dropped=0, maxvio_batch=float(E - 1))
    for strategy in (
        MegatronStrategy(pad_to_capacity=False),
        FasterMoEStrategy(),
        DeepEPStrategy(),
    ):
        # wide experts, so the GPU work (not the host's launches) sets the layer's time
        t_uniform, _, _ = _run(strategy, uniform, cf=None, hidden=4096)
        t_hot, _, (_, _, ranks) = _run(strategy, hot, cf=None, hidden=4096)
        assert t_hot > t_uniform, strategy
        # gpu1 has no expert work but waits at the combine for gpu0 (the straggler)
        assert ranks[1].end_s > t_uniform


@pytest.mark.parametrize("compute_first", [False, True])
@pytest.mark.parametrize("compute_s", [10e-6, 400e-6])
def test_fused_exchange_overlaps_compute_with_communication(
    compute_first: bool, compute_s: float
) -> None:
    # One COMET-style fused kernel per rank: S bytes to each of the 3 peers over the star
    # (each uplink shared by 3 flows): comm = 1.1 us route latency + 3 S / (450e9 * 0.8).
    # Fused with a GEMM of compute_s in 4 chunks it lasts max(compute, comm + compute / 4).
    size = 20e6
    send = np.full((G, G), size)
    np.fill_diagonal(send, 0.0)
    ex = Exchange(
        "fused",
        send,
        "onesided",
        comm_sms=33,
        compute_s=compute_s,
        chunks=4,
        compute_first=compute_first,
        holds_all_sms=True,
    )
    programs = [[ExchangeStep(ex, "gemm")] for _ in range(G)]
    topo, prof = make_star_topology(G), make_profile()
    gpus = [f"gpu{i}" for i in range(G)]
    comm = 1.1e-6 + 3 * size / (450e9 * 0.8)
    expected = max(compute_s, comm + compute_s / 4)
    issue = 2e-6 + 1e-6  # launch API + doorbell of the fixture profile
    ana = run_analytic(Platform.of(topo, prof), gpus, programs, PHASES)
    sim = run_des(Node(topo, prof, Simulation()), gpus, programs, PHASES)
    assert ana[0].end_s == pytest.approx(issue + expected, rel=1e-9)
    assert sim[0].end_s == pytest.approx(issue + expected, rel=1e-9)
    assert expected < compute_s + comm  # overlap: never the sum


def test_workload_entry_points_report_metrics() -> None:
    topo, prof = make_star_topology(G), make_profile()
    wl = MoELayerWorkload(
        tokens_per_gpu=T,
        hidden=H,
        intermediate=FFN,
        experts=E,
        top_k=K,
        strategy=MegatronStrategy(),
        overlap_efficiency=True,
    )
    out_des = des(Node(topo, prof, Simulation()), wl, seed=3)
    out_ana = analytic(topo, prof, wl, seed=3)
    for out in (out_des, out_ana):
        m = out.metrics
        assert m["forward_latency_s"] > 0 and 0 < m["sm_utilisation"] <= 1
        assert 0 < m["payload_efficiency"] <= 1
        assert m["overlap_efficiency"] > 0
        assert set(out.per_gpu) == {f"gpu{i}" for i in range(G)}
        assert {"gate_s", "dispatch_s", "gemm_s", "combine_s", "idle_s"} <= set(out.per_gpu["gpu0"])


def test_closed_form_serialises_streams_that_each_need_every_sm() -> None:
    # Megatron-TE puts each expert's GEMM on its own compute stream; each GEMM fills every SM,
    # so the DES's SM pool runs them one after another: the closed form must too.
    strategy = MegatronStrategy(variant="te", pad_to_capacity=False)
    t_des, t_ana, _ = _run(strategy, _balanced(64), cf=None, hidden=4096)
    assert t_ana == pytest.approx(t_des, rel=1e-9)


def test_first_fit_places_kernels_beside_what_holds_sms() -> None:
    held = [(0.0, 10.0, 100), (5.0, 20.0, 20)]  # 132 SMs in all
    assert first_fit_s(held, 0.0, 4.0, 12, 132) == 0.0  # fits beside both
    assert first_fit_s(held, 0.0, 4.0, 40, 132) == 10.0  # waits for the first to end
    assert first_fit_s(held, 0.0, 4.0, 132, 132) == 20.0  # needs the whole GPU
    assert first_fit_s(held, 12.0, 1.0, 112, 132) == 12.0  # 20 held until 20: 112 fit
