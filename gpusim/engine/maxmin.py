"""Max-min fair rate allocation by progressive filling, over flow classes.

Flows with the same route and the same per-flow cap always receive the same max-min rate, so the
solver works on classes (route, cap, count): its cost depends on the number of distinct routes,
not on the number of messages in flight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

_REL_TOL = 1e-12


def max_min_fair_rates(
    routes: Sequence[Sequence[int]],
    counts: Sequence[int],
    caps_Bps: Sequence[float],
    capacity_Bps: Sequence[float],
) -> list[float]:
    """Per-flow rate of each class under max-min fairness.

    ``routes[c]`` lists the resources class ``c`` crosses, ``counts[c]`` how many flows it holds,
    ``caps_Bps[c]`` each flow's own rate limit (``math.inf`` for none; must be positive) and
    ``capacity_Bps[r]`` the capacity of resource ``r``. Every returned rate is bottlenecked:
    either the flow's cap, or a saturated resource on its route where no other flow gets more.
    A class with no flows gets 0.
    """
    n = len(routes)
    if n == 1 and counts[0] > 0:  # the common uncontended case, in closed form
        share = min((capacity_Bps[r] / counts[0] for r in routes[0]), default=math.inf)
        return [min(share, caps_Bps[0])]
    rates = [0.0] * n
    fixed = [w <= 0 for w in counts]
    unfixed = fixed.count(False)
    # per resource: [capacity left, flows not yet fixed, classes using it]
    load: dict[int, list[Any]] = {}
    get = load.get
    routeless = False  # a class crossing no resource (only its cap limits it)
    for c, (route, w) in enumerate(zip(routes, counts, strict=True)):
        if w <= 0:
            continue
        if not route:
            routeless = True
        for r in route:
            entry = get(r)
            if entry is None:
                load[r] = [capacity_Bps[r], w, [c]]
            else:
                entry[1] += w
                entry[2].append(c)
    capped = sorted([(cap, c) for c, cap in enumerate(caps_Bps) if cap < math.inf and not fixed[c]])
    if capped and capped[0][0] <= 0:
        raise ValueError("flow caps must be positive")
    next_cap = 0
    while unfixed:
        level = math.inf
        for entry in load.values():
            share = entry[0] / entry[1]
            if share < level:
                level = share
        while next_cap < len(capped) and fixed[capped[next_cap][1]]:
            next_cap += 1
        if next_cap < len(capped) and capped[next_cap][0] < level:
            level = capped[next_cap][0]
        if level == math.inf:  # classes with no resource and no cap: unconstrained
            for c in range(n):
                if not fixed[c]:
                    rates[c] = math.inf
            break
        bound = level * (1.0 + _REL_TOL)
        saturated = [r for r, entry in load.items() if entry[0] <= bound * entry[1]]
        if (
            len(saturated) == len(load)
            and not routeless
            and (next_cap >= len(capped) or capped[next_cap][0] > bound)
        ):  # every remaining class crosses a saturated resource: all get this level
            for c in range(n):
                if not fixed[c]:
                    rates[c] = level
            break
        to_fix = [c for r in saturated for c in load.pop(r)[2]]
        while next_cap < len(capped) and capped[next_cap][0] <= bound:
            to_fix.append(capped[next_cap][1])
            next_cap += 1
        for c in to_fix:
            if fixed[c]:
                continue
            fixed[c] = True
            unfixed -= 1
            cap = caps_Bps[c]
            rate = level if level < cap else cap
            rates[c] = rate
            w = counts[c]
            for r in routes[c]:
                entry = get(r)
                if entry is None:
                    continue  # saturated in this round: every user is being fixed
                entry[0] -= rate * w
                entry[1] -= w
                if not entry[1]:
                    del load[r]
    return rates
