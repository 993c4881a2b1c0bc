"""COMET's mechanism: the fused kernels' pipeline over chunks, their SM split and the bytes they
move, checked against what the mechanism implies (serial at one chunk, never worse than serial,
never better than the slower of compute and transfer), not against recorded outputs."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
from conftest import make_geometry, make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.execution.launch import LaunchTimes
from gpusim.execution.program import Exchange, ExchangeStep, Step
from gpusim.execution.program_analytic import run_analytic
from gpusim.execution.program_des import run_des
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import GPURates, gpu_rates
from gpusim.spec.moe import CometStrategy
from gpusim.workloads.moe import comet
from gpusim.workloads.moe.hostdriven import PHASES
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch

G, T, H, E, K = 4, 2048, 1024, 8, 2  # GPUs, tokens per GPU, hidden = FFN, experts, top-k
NCCL_SMS = 16


def _geometry() -> LayerGeometry:
    return make_geometry(G, T, H, E, K)


def _skewed_batch() -> RoutedBatch:
    """Every source sends a different number of tokens to every expert (T x K in all)."""
    rng = np.random.default_rng(7)
    counts = np.stack([rng.multinomial(T * K, np.full(E, 1.0 / E)) for _ in range(G)])
    return RoutedBatch(counts=counts, dropped=0, maxvio_batch=0.0)


def _rates() -> list[GPURates]:
    topo, prof = make_star_topology(G), make_profile()
    return [gpu_rates(topo.gpus()[0].model, prof)] * G


def _build(strategy: CometStrategy) -> tuple[list[list[Step]], float]:
    return comet.build(_geometry(), _skewed_batch(), strategy, _rates(), NCCL_SMS)


def _fused(programs: list[list[Step]]) -> tuple[Exchange, Exchange]:
    """The all-gather + GEMM0 and GEMM1 + gather-RS exchanges (shared by every rank)."""
    found = [
        s.exchange
        for s in programs[0]
        if isinstance(s, ExchangeStep) and s.exchange.name.startswith("comet_")
    ]
    assert [e.name for e in found] == ["comet_ag_gemm0", "comet_gemm1_gather_rs"]
    for program in programs[1:]:
        ids = [id(s.exchange) for s in program if isinstance(s, ExchangeStep)]
        assert id(found[0]) in ids and id(found[1]) in ids
    return found[0], found[1]


def _alone_s(ex: Exchange, fidelity: str) -> float:
    """How long ``ex`` lasts when every rank runs only it (after the launch of the step)."""
    topo, prof = make_star_topology(G), make_profile()
    gpus = [f"gpu{i}" for i in range(G)]
    programs: list[list[Step]] = [[ExchangeStep(ex, "gemm")] for _ in range(G)]
    if fidelity == "des":
        results = run_des(Node(topo, prof, Simulation()), gpus, programs, PHASES)
    else:
        results = run_analytic(Platform.of(topo, prof), gpus, programs, PHASES)
    launch = LaunchTimes.from_profile(prof)
    return max(r.end_s for r in results) - (launch.api_s + launch.doorbell_s)


@pytest.mark.parametrize("fidelity", ["des", "analytic"])
@pytest.mark.parametrize("which", [0, 1])  # dispatch + GEMM0, GEMM1 + combine
def test_pipeline_lies_between_overlap_and_serial(fidelity: str, which: int) -> None:
    # Measured pieces: the transfer alone (no fused GEMM) and the GEMM alone (nothing to send).
    ex = _fused(_build(CometStrategy())[0])[which]
    transfer_s = _alone_s(replace(ex, compute_s=0.0, chunks=1), fidelity)
    compute_s = _alone_s(replace(ex, send_B=np.zeros_like(ex.send_B)), fidelity)
    assert compute_s == pytest.approx(ex.compute_s, rel=1e-9)
    assert transfer_s > 0
    fused = {c: _alone_s(replace(ex, chunks=c), fidelity) for c in (1, 2, 4, 16, 256)}
    # one chunk: the kernel sends, then computes (or computes, then sends): the serial sum
    assert fused[1] == pytest.approx(compute_s + transfer_s, rel=1e-9)
    for c, t in fused.items():
        # the slower of the two still bounds it, and the pipeline leaves one chunk unoverlapped
        assert t >= max(compute_s, transfer_s) * (1 - 1e-9)
        assert t <= max(compute_s, transfer_s + compute_s / c) * (1 + 1e-9)
    ordered = [fused[c] for c in sorted(fused)]
    assert all(b <= a * (1 + 1e-12) for a, b in pairwise(ordered))
    assert fused[256] < fused[1]  # pipelining pays when both sides are non-trivial


@pytest.mark.parametrize("chunks", [1, 2, 8])
def test_layer_pipeline_saving_is_the_two_fused_kernels_saving(chunks: int) -> None:
    # Everything but the two fused kernels is the same program whatever the chunk count, so the
    # layer gets faster by exactly what each fused kernel saves against one chunk.
    topo, prof = make_star_topology(G), make_profile()
    gpus = [f"gpu{i}" for i in range(G)]

    def layer_s(c: int) -> float:
        programs, _ = _build(CometStrategy(pipeline_chunks=c))
        return max(r.end_s for r in run_analytic(Platform.of(topo, prof), gpus, programs, PHASES))

    dispatch, combine = _fused(_build(CometStrategy(pipeline_chunks=chunks))[0])
    assert dispatch.chunks == combine.chunks == chunks
    saving = sum(
        _alone_s(replace(ex, chunks=1), "analytic") - _alone_s(ex, "analytic")
        for ex in (dispatch, combine)
    )
    assert layer_s(1) - layer_s(chunks) == pytest.approx(saving, rel=1e-6, abs=1e-12)
    if chunks > 1:
        assert saving > 0


def test_default_pipeline_is_four_chunks() -> None:
    assert CometStrategy().pipeline_chunks == 4
    with pytest.raises(ValueError):
        CometStrategy(pipeline_chunks=0)
