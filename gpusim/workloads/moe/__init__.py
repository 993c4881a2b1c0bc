"""MoE layers: routing with ALF-LB, FlashMoE's persistent kernel and host-driven baselines
(Megatron-LM, FasterMoE, COMET, DeepEP). ``des``/``analytic`` run a moe_layer workload."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial

import numpy as np

from gpusim.engine.sim import Simulation
from gpusim.execution.program import RankResult, Step, SyncStep
from gpusim.execution.program_analytic import run_analytic
from gpusim.execution.program_des import run_des
from gpusim.execution.runtime import sm_active
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.kernels.collectives import NcclCosts
from gpusim.result import Outcome
from gpusim.spec.moe import FlashMoEStrategy, MoELayerWorkload
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.scenario import Fidelity
from gpusim.spec.topology import Topology
from gpusim.workloads.moe import comet, deepep, fastermoe, flashmoe, megatron
from gpusim.workloads.moe.hostdriven import PHASES
from gpusim.workloads.moe.layer import MOE_METRICS, LayerGeometry, RoutedBatch, moe_metrics
from gpusim.workloads.moe.routing import route_layer

HOST_DRIVEN_METRICS = MOE_METRICS | {"sm_active"}
"""What a host-driven strategy reports, in both fidelities (:func:`_host_driven_outcome`)."""
FLASHMOE_METRICS = MOE_METRICS | {"processor_busy_s", "sm_held_fraction", "tasks"}
"""What FlashMoE reports in both fidelities (``flashmoe.plan.layer_metrics``)."""
FLASHMOE_DES_METRICS = frozenset({"fluid_transfer_fraction"})
"""FlashMoE's DES-only metric (a diagnostic of the event engine: the registry's
``des_diagnostics``)."""


def metric_names(wl: MoELayerWorkload, topology: Topology, fidelity: Fidelity) -> frozenset[str]:
    """The metric names a layer run reports: the shared MoE metrics, the strategy's own
    (FlashMoE's, or ``sm_active`` for a host-driven one), FlashMoE's DES diagnostic under the
    DES, and with ``overlap_efficiency`` that ratio, plus the 2-GPU latency it divides when the
    layer runs on more than 2 GPUs (:func:`_with_overlap`)."""
    if isinstance(wl.strategy, FlashMoEStrategy):
        names = FLASHMOE_METRICS
        if fidelity == Fidelity.des:
            names |= FLASHMOE_DES_METRICS
    else:
        names = HOST_DRIVEN_METRICS
    if wl.overlap_efficiency:
        names |= {"overlap_efficiency"}
        if len(_gpus(topology, wl)) > 2:
            names |= {"latency_2gpu_s"}
    return names


Builder = Callable[..., tuple[list[list[Step]], float]]
HOST_DRIVEN: dict[str, Builder] = {
    "megatron": megatron.build,
    "fastermoe": fastermoe.build,
    "comet": comet.build,
    "deepep": deepep.build,
}


def _setup(
    topology: Topology, wl: MoELayerWorkload, seed: int
) -> tuple[LayerGeometry, RoutedBatch]:
    gpus = _gpus(topology, wl)
    geometry = LayerGeometry.of(wl, gpus, wl.strategy.dtype)
    batch = route_layer(wl, len(gpus), np.random.default_rng(seed))
    return geometry, batch


def _timed_loop(programs: list[list[Step]], wl: MoELayerWorkload) -> list[list[Step]]:
    """One timed iteration of the harness's loop: with ``sync_each_iteration`` every rank ends
    with torch.cuda.synchronize() (its wait and return latency count in the iteration)."""
    if not wl.harness.sync_each_iteration:
        return programs
    return [[*p, SyncStep(0, "combine", kind="device")] for p in programs]


def _host_driven_outcome(
    g: LayerGeometry,
    batch: RoutedBatch,
    results: list[RankResult],
    moved_B: float,
    busy_sm_s: float,
    total_sms: int,
    sm_active_of: Callable[[float], float] | None = None,
) -> Outcome:
    latency = max(r.end_s for r in results)
    metrics = moe_metrics(
        geometry=g,
        batch=batch,
        latency_s=latency,
        busy_sm_s=busy_sm_s,
        total_sms=total_sms,
        network_payload_B=moved_B,
        kernel_launches=round(sum(r.launches for r in results) / len(results)),
    )
    # SM active as a timeline tool reports it (docs/host_runtime.md): SMs holding work over the
    # whole timed interval, host gaps included; the timed interval is the forward here.
    active = busy_sm_s / (total_sms * latency) if sm_active_of is None else sm_active_of(latency)
    metrics["sm_active"] = active
    per_gpu: dict[str, dict[str, float]] = {}
    for gpu, res in zip(g.gpus, results, strict=True):
        row = {f"{p}_s": res.phase_s[p] for p in PHASES}
        row["idle_s"] = max(0.0, latency - sum(res.phase_s.values()))
        row["finish_s"] = res.end_s
        row["host_s"] = res.host_s
        row["sync_wait_s"] = res.sync_wait_s
        row["collective_s"] = res.exchange_s
        per_gpu[gpu] = row
    return Outcome(makespan_s=latency, metrics=metrics, per_gpu=per_gpu)


def _with_overlap(
    wl: MoELayerWorkload,
    outcome: Outcome,
    run_two: Callable[[MoELayerWorkload], Outcome],
    gpus: Sequence[str],
) -> Outcome:
    if not wl.overlap_efficiency:
        return outcome
    if len(gpus) <= 2:
        return replace(outcome, metrics={**outcome.metrics, "overlap_efficiency": 1.0})
    two = run_two(wl.model_copy(update={"gpus": list(gpus[:2]), "overlap_efficiency": False}))
    metrics = {
        **outcome.metrics,
        "latency_2gpu_s": two.makespan_s,
        "overlap_efficiency": two.makespan_s / outcome.makespan_s,
    }
    return replace(outcome, metrics=metrics)


def _gpus(topology: Topology, wl: MoELayerWorkload) -> list[str]:
    return list(wl.gpus) if wl.gpus is not None else [g.id for g in topology.gpus()]


def des(node: Node, wl: MoELayerWorkload, *, seed: int) -> Outcome:
    """Simulate one MoE layer forward with the discrete-event engine. Tokens are routed from
    ``np.random.default_rng(seed)``: the same draws as :func:`analytic` at the same seed."""
    wl = wl.per_rank(len(_gpus(node.topology, wl)))
    g, batch = _setup(node.topology, wl, seed)
    if isinstance(wl.strategy, FlashMoEStrategy):
        outcome = flashmoe.des(node, wl, g, batch)
    else:
        nccl_sms = NcclCosts.from_profile(node.profile).sms
        programs, moved = HOST_DRIVEN[wl.strategy.name](
            g, batch, wl.strategy, node.platform.rates_of(g.gpus), nccl_sms
        )
        programs = _timed_loop(programs, wl)
        results = run_des(node, g.gpus, programs, PHASES)
        gpus = [node.gpus[x] for x in g.gpus]
        busy = sum(x.busy_sm_s for x in gpus)
        total = sum(x.rates.sm_count for x in gpus)
        outcome = _host_driven_outcome(
            g, batch, results, moved, busy, total, partial(sm_active, gpus)
        )

    def run_two(two: MoELayerWorkload) -> Outcome:
        return des(Node(node.topology, node.profile, Simulation()), two, seed=seed)

    return _with_overlap(wl, outcome, run_two, g.gpus)


def analytic(
    topology: Topology, profile: CalibrationProfile, wl: MoELayerWorkload, *, seed: int
) -> Outcome:
    """Evaluate one MoE layer forward in closed form."""
    wl = wl.per_rank(len(_gpus(topology, wl)))
    g, batch = _setup(topology, wl, seed)
    if isinstance(wl.strategy, FlashMoEStrategy):
        outcome = flashmoe.analytic(topology, profile, wl, g, batch)
    else:
        platform = Platform.of(topology, profile)
        rates = platform.rates_of(g.gpus)
        nccl_sms = NcclCosts.from_profile(profile).sms
        programs, moved = HOST_DRIVEN[wl.strategy.name](g, batch, wl.strategy, rates, nccl_sms)
        programs = _timed_loop(programs, wl)
        results = run_analytic(platform, g.gpus, programs, PHASES)
        busy = sum(r.busy_sm_s for r in results)
        total = sum(r.sm_count for r in rates)
        outcome = _host_driven_outcome(g, batch, results, moved, busy, total)

    def run_two(two: MoELayerWorkload) -> Outcome:
        return analytic(topology, profile, two, seed=seed)

    return _with_overlap(wl, outcome, run_two, g.gpus)


__all__ = [
    "FLASHMOE_DES_METRICS",
    "FLASHMOE_METRICS",
    "HOST_DRIVEN_METRICS",
    "analytic",
    "des",
    "metric_names",
]
