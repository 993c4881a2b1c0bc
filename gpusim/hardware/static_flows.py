"""Transfers in closed form: every flow at the max-min fair rate it gets with all flows active.

The one static max-min solve of the analytic models (transfers, GEMM + all-to-all, the MoE
programs' exchanges, FlashMoE's dispatch). It reads only resource capacities: a
:class:`~gpusim.hardware.platform.Platform` (links and HBM) or a bare
:class:`~gpusim.hardware.fabric.Fabric` (links only) will do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gpusim.engine.maxmin import max_min_fair_rates
from gpusim.hardware.fabric import Route


class Capacities(Protocol):
    """Anything that numbers resources and knows their capacities (Platform, Fabric)."""

    @property
    def capacities_Bps(self) -> Sequence[float]:
        """Capacity of every resource, by index."""
        ...


@dataclass(frozen=True)
class StaticFlow:
    """A transfer for the analytic path: route, size and when it is issued."""

    route: Route
    size_B: float
    issue_s: float = 0.0


def static_rates_Bps(
    resources: Capacities,
    routes: Sequence[Sequence[int]],
    caps_Bps: Sequence[float] | None = None,
) -> list[float]:
    """Each flow's max-min fair rate with every flow active at once (one flow per route;
    ``caps_Bps``: each flow's own limit, none by default)."""
    caps = [math.inf] * len(routes) if caps_Bps is None else caps_Bps
    return max_min_fair_rates(routes, [1] * len(routes), caps, resources.capacities_Bps)


def static_completion_s(resources: Capacities, flows: Sequence[StaticFlow]) -> list[float]:
    """Closed-form completion times: every flow shares links at the max-min rates it would get
    with all flows active at once. Exact with no contention, and for symmetric patterns whose
    flows start and end together; otherwise an approximation that ignores rate changes."""
    rates = static_rates_Bps(resources, [f.route.resources for f in flows])
    return [f.issue_s + f.route.latency_s + f.size_B / r for f, r in zip(flows, rates, strict=True)]
