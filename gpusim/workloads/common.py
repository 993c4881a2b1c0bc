"""Pieces shared by workload models: flow bookkeeping for the analytic path, link accounting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpusim.engine.maxmin import max_min_fair_rates
from gpusim.hardware.fabric import Fabric, Route
from gpusim.hardware.node import Node


@dataclass(frozen=True)
class StaticFlow:
    """A transfer for the analytic path: route, size and when it is issued."""

    route: Route
    size_B: float
    issue_s: float


def static_completion_s(fabric: Fabric, flows: Sequence[StaticFlow]) -> list[float]:
    """Closed-form completion times: every flow shares links at the max-min rates it would get
    with all flows active at once. Exact with no contention, and for symmetric patterns whose
    flows start and end together; otherwise an approximation that ignores rate changes."""
    routes = [f.route.resources for f in flows]
    rates = max_min_fair_rates(
        routes, [1] * len(flows), [float("inf")] * len(flows), fabric.capacities_Bps
    )
    return [f.issue_s + f.route.latency_s + f.size_B / r for f, r in zip(flows, rates, strict=True)]


def static_link_bytes(fabric: Fabric, flows: Sequence[StaticFlow]) -> dict[str, float]:
    """Bytes each link direction carries for a set of flows."""
    out: dict[str, float] = {}
    for f in flows:
        for r in f.route.resources:
            name = fabric.resources[r].name
            out[name] = out.get(name, 0.0) + f.size_B
    return out


def network_link_bytes(node: Node) -> dict[str, float]:
    """Bytes each link direction carried in a DES run (links only, non-zero only)."""
    n_links = len(node.fabric.resources)
    return {s.name: s.bytes_carried for s in node.network.stats()[:n_links] if s.bytes_carried > 0}
