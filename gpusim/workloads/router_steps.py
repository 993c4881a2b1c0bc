"""Router only: ``steps`` routing steps with bias updates, reporting MaxVio per step.

What load imbalance ALF-LB removes (alf_lb.md sections 5 and 11), without simulating the layer.
Each step routes ``tokens_per_step`` tokens, counts the per-expert loads, sums them per
expert-parallel rank (experts placed contiguously: rank r holds experts r*E/R .. (r+1)*E/R - 1),
records MaxVio over experts and over ranks, then updates the bias with that step's loads (so the
next step is routed with it).

Nothing is timed: ``makespan_s`` is 0. ``straggler_factor_last_10pct`` = 1 + the rank MaxVio
averaged over the last 10 % of steps is the MoE layer time relative to perfect balance when
experts are compute-bound (the slowest rank sets the layer time, alf_lb.md section 11).
The DES and the analytic evaluation are the same computation and give identical results.
"""

from __future__ import annotations

import numpy as np

from gpusim.errors import SimulationError
from gpusim.hardware.node import Node
from gpusim.result import Outcome
from gpusim.spec.moe import RouterStepsWorkload
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology
from gpusim.workloads.moe.routing import Router, expert_loads, maxvio

METRICS = frozenset(
    {
        "maxvio_first_step",
        "maxvio_last_step",
        "maxvio_mean_last_10pct",
        "maxvio_global",
        "maxvio_rank_mean_last_10pct",
        "straggler_factor_last_10pct",
    }
)
"""The metric names both models report (the registry declares them for sweep checks)."""


def last_share_count(steps: int) -> int:
    """Steps in "the last 10 %" of ``steps``: steps // 10, at least 1."""
    return max(1, steps // 10)


def run_router_steps(wl: RouterStepsWorkload, rng: np.random.Generator) -> Outcome:
    """Run the router for ``wl.steps`` steps and summarise MaxVio (see the module docstring)."""
    if wl.experts % wl.ep_ranks:
        raise SimulationError(
            f"{wl.experts} experts cannot be spread evenly over {wl.ep_ranks} EP ranks"
        )
    router = Router(wl.routing, wl.experts, wl.top_k, rng)
    per_rank = wl.experts // wl.ep_ranks
    maxvio_batch: list[float] = []
    maxvio_rank: list[float] = []
    total = np.zeros(wl.experts, dtype=np.int64)
    for _ in range(wl.steps):
        loads = expert_loads(router.step(wl.tokens_per_step), wl.experts)
        maxvio_batch.append(maxvio(loads))
        maxvio_rank.append(maxvio(loads.reshape(wl.ep_ranks, per_rank).sum(axis=1)))
        total += loads
        router.update(loads)
    n_last = last_share_count(wl.steps)
    rank_last = float(np.mean(maxvio_rank[-n_last:]))
    metrics = {
        "maxvio_first_step": maxvio_batch[0],
        "maxvio_last_step": maxvio_batch[-1],
        "maxvio_mean_last_10pct": float(np.mean(maxvio_batch[-n_last:])),
        "maxvio_global": maxvio(total),
        "maxvio_rank_mean_last_10pct": rank_last,
        "straggler_factor_last_10pct": 1.0 + rank_last,
    }
    return Outcome(
        makespan_s=0.0,
        metrics=metrics,
        series={"maxvio_batch": maxvio_batch, "maxvio_rank": maxvio_rank},
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


__all__ = ["METRICS", "analytic", "des", "last_share_count", "run_router_steps"]
