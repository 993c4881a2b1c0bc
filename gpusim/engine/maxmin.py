"""Max-min fair rate allocation by progressive filling, over flow classes.

Flows with the same route and the same per-flow cap always receive the same max-min rate, so the
solver works on classes (route, cap, count): its cost depends on the number of distinct routes,
not on the number of messages in flight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from gpusim.native import c_module

_REL_TOL = 1e-12
_LAST_ROUND_SHORTCUT = True
"""Give the last round's classes their rates without taking their flows off the resources
(nothing reads those afterwards); a test switches it off to compare."""
_ONE_LEVEL_CLOSED_FORM = True
"""Solve in closed form where the first filling level fixes every class
(:func:`_one_level_of`); a test switches it off to compare."""

_C_MODULE = c_module("gpusim.engine._maxmin_c")
_C_TWIN: (
    Callable[
        [Sequence[Sequence[int]], Sequence[int], Sequence[float], Sequence[float]], list[float]
    ]
    | None
) = None if _C_MODULE is None else _C_MODULE.max_min_fair_rates
"""The solve of ``_maxmin_c.c``, where the compiled engine runs (gpusim/native.py): this
module's solve with both switches above on, the same operations in the same order on C arrays
(tests/test_engine_properties.py compares them bit for bit); ``None`` where the source runs."""


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

    Progressive filling: raise every unfixed flow's rate to the next level (the lowest fair share
    left on a resource, or the lowest cap) and fix the classes that level bottlenecks, until
    every class is fixed.
    """
    if _C_TWIN is not None:
        return _C_TWIN(routes, counts, caps_Bps, capacity_Bps)
    n = len(routes)
    if n == 1 and counts[0] > 0 and len(set(routes[0])) == len(routes[0]):
        # the common uncontended case, in closed form (a resource the route crosses twice
        # carries each flow twice: the general solve counts it so)
        share = min((capacity_Bps[r] / counts[0] for r in routes[0]), default=math.inf)
        return [min(share, caps_Bps[0])]
    loads = _Loads(routes, counts, capacity_Bps)
    if _ONE_LEVEL_CLOSED_FORM and _all_hold_flows(counts):
        level = _one_level_of(loads, caps_Bps)
        if level is not None:
            return [level] * n
    return _fill(loads, counts, caps_Bps)


class _Loads:
    """The resources crossed by classes with flows, numbered by first appearance (class
    order, then route order: the order progressive filling scans them in), with typed
    per-resource lists rather than a dict of lists (mypyc keeps their arithmetic native)."""

    def __init__(
        self,
        routes: Sequence[Sequence[int]],
        counts: Sequence[int],
        capacity_Bps: Sequence[float],
    ) -> None:
        self.left_Bps: list[float] = []
        """Per resource: its capacity less what the fixed classes draw from it."""
        self.flows: list[int] = []
        """Per resource: the flows of classes not yet fixed crossing it (once per crossing)."""
        self.users: list[list[int]] = []
        """Per resource: the classes crossing it, in class order (once per crossing)."""
        self.routes: list[list[int]] = []
        """Per class: its route in resource numbers (empty for a class with no flows)."""
        self.routeless = False
        """Whether some class with flows crosses no resource (only its cap limits it)."""
        number = [-1] * len(capacity_Bps)  # per resource: its number here (-1: none yet)
        left_Bps, flows, users = self.left_Bps, self.flows, self.users
        for c, route in enumerate(routes):
            w = counts[c]
            local: list[int] = []
            self.routes.append(local)
            if w <= 0:
                continue
            if not route:
                self.routeless = True
            for r in route:
                j = number[r]
                if j < 0:
                    j = number[r] = len(left_Bps)
                    left_Bps.append(capacity_Bps[r])
                    flows.append(w)
                    users.append([c])
                else:
                    flows[j] = flows[j] + w  # not `+=`: mypyc makes that a generic add
                    users[j].append(c)
                local.append(j)


def _all_hold_flows(counts: Sequence[int]) -> bool:
    """Whether there are classes and every one holds flows."""
    for w in counts:
        if w <= 0:
            return False
    return len(counts) > 0


def _one_level_of(loads: _Loads, caps_Bps: Sequence[float]) -> float | None:
    """The rate :func:`max_min_fair_rates` gives every class when its first filling level fixes
    them all (each class crosses a resource that level saturates, or has a cap within it: one
    saturated port bottlenecking every class, the common contended case); ``None`` otherwise,
    or where the level is unbounded or a cap is not positive (the general solve's own cases).

    ``loads`` are those of classes that all hold flows, untouched (every resource at its
    capacity, its flows counted once per crossing, as the general solve counts them). These
    are the general solve's floats: its first round computes the same level (the lowest of
    capacity / flows, flows an exact integer sum, and of the caps) and the same saturated
    resources, and its last round gives every class ``level if level < cap else cap``, which
    is ``level`` as no cap is below it."""
    level = math.inf
    for cap in caps_Bps:  # min(caps_Bps), without a generic call
        if cap < level:
            level = cap
    if not level > 0:
        return None
    left_Bps, flows = loads.left_Bps, loads.flows
    for j in range(len(left_Bps)):
        share = left_Bps[j] / flows[j]
        if share < level:
            level = share
    if level == math.inf:
        return None
    bound = level * (1.0 + _REL_TOL)
    for c, cap in enumerate(caps_Bps):
        if cap > bound:
            for j in loads.routes[c]:
                if left_Bps[j] <= bound * flows[j]:
                    break  # saturated
            else:
                return None
    return level


def _fill(loads: _Loads, counts: Sequence[int], caps_Bps: Sequence[float]) -> list[float]:
    """:func:`max_min_fair_rates` by progressive filling, on the classes' ``loads``."""
    n = len(counts)
    rates = [0.0] * n
    fixed = [w <= 0 for w in counts]
    unfixed = fixed.count(False)
    capped = sorted([(cap, c) for c, cap in enumerate(caps_Bps) if cap < math.inf and not fixed[c]])
    if capped and capped[0][0] <= 0:
        raise ValueError("flow caps must be positive")
    left_Bps, flows, users = loads.left_Bps, loads.flows, loads.users
    live = [True] * len(left_Bps)  # not yet saturated, and crossed by an unfixed class
    alive = list(range(len(left_Bps)))  # the live resources, in order
    next_cap = 0
    while unfixed:
        while next_cap < len(capped) and fixed[capped[next_cap][1]]:
            next_cap += 1
        alive = [j for j in alive if live[j]]
        # the next filling level: the lowest fair share left on a resource, or the lowest cap
        # of an unfixed class, whichever is lower; inf when neither exists
        level = math.inf
        for j in alive:
            share = left_Bps[j] / flows[j]
            if share < level:
                level = share
        if next_cap < len(capped) and capped[next_cap][0] < level:
            level = capped[next_cap][0]
        if level == math.inf:  # classes with no resource and no cap: unconstrained
            _set_unfixed(rates, fixed, math.inf)
            break
        bound = level * (1.0 + _REL_TOL)
        saturated = [j for j in alive if left_Bps[j] <= bound * flows[j]]
        if (
            len(saturated) == len(alive)
            and not loads.routeless
            and (next_cap >= len(capped) or capped[next_cap][0] > bound)
        ):  # every remaining class crosses a saturated resource: all get this level
            _set_unfixed(rates, fixed, level)
            break
        to_fix: list[int] = []
        for j in saturated:
            live[j] = False
            to_fix.extend(users[j])
        while next_cap < len(capped) and capped[next_cap][0] <= bound:
            to_fix.append(capped[next_cap][1])
            next_cap += 1
        if (
            _LAST_ROUND_SHORTCUT
            and len(to_fix) >= unfixed
            and len({c for c in to_fix if not fixed[c]}) == unfixed
        ):
            # the last round (often the first: one saturated port): what is left of the
            # resources no longer matters
            for c in to_fix:
                if not fixed[c]:
                    cap = caps_Bps[c]
                    rates[c] = level if level < cap else cap
            break
        unfixed -= _fix(to_fix, level, loads, counts, caps_Bps, live, fixed, rates)
    return rates


def _set_unfixed(rates: list[float], fixed: list[bool], rate: float) -> None:
    """Give every class not yet fixed ``rate`` (the last round)."""
    for c in range(len(rates)):
        if not fixed[c]:
            rates[c] = rate


def _fix(
    to_fix: list[int],
    level: float,
    loads: _Loads,
    counts: Sequence[int],
    caps_Bps: Sequence[float],
    live: list[bool],
    fixed: list[bool],
    rates: list[float],
) -> int:
    """Fix the classes of ``to_fix`` at ``level`` (or their cap, if lower) and take their flows
    off the live resources they cross (a resource left with no flows is no longer live);
    returns how many classes were newly fixed."""
    left_Bps, flows, routes = loads.left_Bps, loads.flows, loads.routes
    newly = 0
    for c in to_fix:
        if fixed[c]:
            continue
        fixed[c] = True
        newly += 1
        cap = caps_Bps[c]
        rate = level if level < cap else cap
        rates[c] = rate
        w = counts[c]
        for j in routes[c]:
            if not live[j]:
                continue  # saturated in this round (every user is being fixed) or emptied
            left_Bps[j] = left_Bps[j] - rate * w
            flows[j] = flows[j] - w
            if not flows[j]:
                live[j] = False
    return newly
