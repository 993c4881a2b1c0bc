"""Max-min fair rate allocation by progressive filling, over flow classes.

Flows with the same route and the same per-flow cap always receive the same max-min rate, so the
solver works on classes (route, cap, count): its cost depends on the number of distinct routes,
not on the number of messages in flight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_REL_TOL = 1e-12


def max_min_fair_rates(
    routes: Sequence[Sequence[int]],
    counts: Sequence[int],
    caps_Bps: Sequence[float],
    capacity_Bps: Sequence[float],
) -> list[float]:
    """Per-flow rate of each class under max-min fairness.

    ``routes[c]`` lists the resources class ``c`` crosses, ``counts[c]`` how many flows it holds,
    ``caps_Bps[c]`` each flow's own rate limit (``math.inf`` for none) and ``capacity_Bps[r]`` the
    capacity of resource ``r``. Every returned rate is bottlenecked: either the flow's cap, or a
    saturated resource on its route where no other flow gets more.
    """
    n = len(routes)
    if n == 1 and counts[0] > 0:  # the common uncontended case, in closed form
        share = min((capacity_Bps[r] / counts[0] for r in routes[0]), default=math.inf)
        return [min(share, caps_Bps[0])]
    rates = [0.0] * n
    weight: dict[int, int] = {}
    for c in range(n):
        w = counts[c]
        for r in routes[c]:
            weight[r] = weight.get(r, 0) + w
    remaining = {r: float(capacity_Bps[r]) for r in weight}
    unfixed = [c for c in range(n) if counts[c] > 0]
    while unfixed:
        level = math.inf
        for r, w in weight.items():
            if w > 0:
                share = remaining[r] / w
                if share < level:
                    level = share
        for c in unfixed:
            if caps_Bps[c] < level:
                level = caps_Bps[c]
        if level == math.inf:  # classes with no resource and no cap: unconstrained
            for c in unfixed:
                rates[c] = math.inf
            break
        bound = level * (1.0 + _REL_TOL)
        saturated = {r for r, w in weight.items() if w > 0 and remaining[r] <= bound * w}
        still: list[int] = []
        for c in unfixed:
            route = routes[c]
            if caps_Bps[c] <= bound or any(r in saturated for r in route):
                rate = min(level, caps_Bps[c])
                rates[c] = rate
                w = counts[c]
                for r in route:
                    remaining[r] -= rate * w
                    weight[r] -= w
            else:
                still.append(c)
        unfixed = still
    return rates
