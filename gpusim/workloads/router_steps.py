"""Router only: training steps with bias (or aux-loss) updates, then held-out tokens through the
frozen router, reporting MaxVio as the ALF paper measures it (alf_lb.md section 5,
docs/alf_lb.md), without simulating the layer.

Per layer (``layers`` independent routers, each with its own popularity and random stream, run
in turn from the scenario's generator): each training step routes ``tokens_per_step`` tokens,
counts the per-expert loads, sums them per expert-parallel rank (experts placed contiguously:
rank r holds experts r*E/R .. (r+1)*E/R - 1), records MaxVio over experts and over ranks, then
updates the router with that step's loads (so the next step is routed with it). After the last
step the router is frozen (no update, no drift) and routes ``heldout_tokens`` fresh tokens, taken
as consecutive sequences of ``sequence_tokens``.

Metrics (each the mean over layers; series are per-step means over layers):

- ``maxvio_first_step``, ``maxvio_last_step``: MaxVio of the first and last training step;
- ``maxvio_batch``: per-step MaxVio averaged over the last ``maxvio_batch_window_steps`` steps;
- ``maxvio_global``: MaxVio of the loads of every held-out token (the final model on the
  validation set);
- ``maxvio_computation_batch_<n>seq``: MaxVio over each group of n consecutive held-out
  sequences, averaged over the groups (ALF Fig. 5);
- ``maxvio_rank_batch`` and ``straggler_factor`` = 1 + it: MaxVio over EP ranks in the same
  window. The straggler factor is the MoE layer time relative to perfect balance when experts
  are compute-bound (the slowest rank sets the layer time, alf_lb.md section 11).

Nothing is timed: ``makespan_s`` is 0. The DES and the analytic evaluation are the same
computation and give identical results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpusim.errors import SimulationError
from gpusim.hardware.node import Node
from gpusim.result import Outcome
from gpusim.spec.moe import RouterStepsWorkload
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.scenario import Fidelity
from gpusim.spec.topology import Topology
from gpusim.workloads.moe.balance_metrics import (
    expert_loads,
    grouped_computation_batch_maxvio,
    maxvio,
    window_mean,
)
from gpusim.workloads.moe.routing import Router

FIXED_METRICS = frozenset(
    {
        "maxvio_first_step",
        "maxvio_last_step",
        "maxvio_batch",
        "maxvio_global",
        "maxvio_rank_batch",
        "straggler_factor",
    }
)
"""The metric names every run reports (the computation-batch ones depend on the workload)."""


def computation_batch_metric(sequences: int) -> str:
    """The metric name of MaxVio_computation-batch over ``sequences`` sequences."""
    return f"maxvio_computation_batch_{sequences}seq"


def metric_names(
    workload: RouterStepsWorkload, topology: Topology, fidelity: Fidelity, /
) -> frozenset[str]:
    """The metric names a run of ``workload`` reports (both fidelities, any topology)."""
    return FIXED_METRICS | {
        computation_batch_metric(n) for n in workload.computation_batch_sequences
    }


@dataclass(frozen=True)
class LayerRun:
    """One layer's per-step MaxVio series and its held-out metrics."""

    maxvio_batch: list[float]
    maxvio_rank: list[float]
    maxvio_global: float
    maxvio_computation_batch: dict[int, float]


def run_layer(wl: RouterStepsWorkload, rng: np.random.Generator) -> LayerRun:
    """Train one layer's router for ``wl.steps`` steps, then route the held-out tokens frozen."""
    router = Router(wl.routing, wl.experts, wl.top_k, rng)
    per_rank = wl.experts // wl.ep_ranks
    series: list[float] = []
    rank_series: list[float] = []
    for _ in range(wl.steps):
        loads = expert_loads(router.step(wl.tokens_per_step, as_sets=True), wl.experts)
        series.append(maxvio(loads))
        rank_series.append(maxvio(loads.reshape(wl.ep_ranks, per_rank).sum(axis=1)))
        router.update(loads)
    # held-out tokens counted per sequence as they are routed (never all their choices at once)
    heldout = router.frozen_segment_loads(wl.heldout_tokens, wl.sequence_tokens)
    by_size = {
        n: grouped_computation_batch_maxvio(heldout, wl.heldout_tokens, wl.sequence_tokens, n)
        for n in wl.computation_batch_sequences
    }
    return LayerRun(
        maxvio_batch=series,
        maxvio_rank=rank_series,
        maxvio_global=maxvio(heldout.sum(axis=0)),
        maxvio_computation_batch=by_size,
    )


def run_router_steps(wl: RouterStepsWorkload, rng: np.random.Generator) -> Outcome:
    """Run every layer (see the module docstring) and average the metrics over layers."""
    if wl.experts % wl.ep_ranks:
        raise SimulationError(
            f"{wl.experts} experts cannot be spread evenly over {wl.ep_ranks} EP ranks"
        )
    runs = [run_layer(wl, rng) for _ in range(wl.layers)]
    batch = np.mean([r.maxvio_batch for r in runs], axis=0)
    rank = np.mean([r.maxvio_rank for r in runs], axis=0)
    window = wl.maxvio_batch_window_steps
    rank_window = window_mean(list(rank), window)
    metrics = {
        "maxvio_first_step": float(batch[0]),
        "maxvio_last_step": float(batch[-1]),
        "maxvio_batch": window_mean(list(batch), window),
        "maxvio_global": float(np.mean([r.maxvio_global for r in runs])),
        "maxvio_rank_batch": rank_window,
        "straggler_factor": 1.0 + rank_window,
    }
    for n in wl.computation_batch_sequences:
        metrics[computation_batch_metric(n)] = float(
            np.mean([r.maxvio_computation_batch[n] for r in runs])
        )
    return Outcome(
        makespan_s=0.0,
        metrics=metrics,
        series={"maxvio_batch": [float(x) for x in batch], "maxvio_rank": [float(x) for x in rank]},
    )


def des(node: Node, wl: RouterStepsWorkload, *, seed: int) -> Outcome:
    """Run the router steps from a generator seeded with ``seed`` (no events: the node is not
    used). A relative routing ``trace_file`` was made absolute when the scenario loaded."""
    return run_router_steps(wl, np.random.default_rng(seed))


def analytic(
    topology: Topology,
    profile: CalibrationProfile,
    wl: RouterStepsWorkload,
    *,
    seed: int,
) -> Outcome:
    """Run the router steps; identical to :func:`des` at the same seed."""
    return run_router_steps(wl, np.random.default_rng(seed))


__all__ = [
    "FIXED_METRICS",
    "LayerRun",
    "analytic",
    "computation_batch_metric",
    "des",
    "metric_names",
    "run_layer",
    "run_router_steps",
]
