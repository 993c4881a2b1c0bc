"""Max-min fair rate allocation by progressive filling, over flow classes.

Flows with the same route and the same per-flow cap always receive the same max-min rate, so the
solver works on classes (route, cap, count): its cost depends on the number of distinct routes,
not on the number of messages in flight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_REL_TOL = 1e-12
_LAST_ROUND_SHORTCUT = True
"""Give the last round's classes their rates without taking their flows off the resources
(nothing reads those afterwards); a test switches it off to compare."""
_ONE_LEVEL_CLOSED_FORM = True
"""Solve in closed form where the first filling level fixes every class (:func:`_one_level`);
a test switches it off to compare."""


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
    n = len(routes)
    if n == 1 and counts[0] > 0 and len(set(routes[0])) == len(routes[0]):
        # the common uncontended case, in closed form (a resource the route crosses twice
        # carries each flow twice: the general solve counts it so)
        share = min((capacity_Bps[r] / counts[0] for r in routes[0]), default=math.inf)
        return [min(share, caps_Bps[0])]
    load, routeless = _resource_loads(routes, counts, capacity_Bps)
    if _ONE_LEVEL_CLOSED_FORM and min(counts, default=0) > 0:
        level = _one_level_of(load, routes, caps_Bps)
        if level is not None:
            return [level] * n
    rates = [0.0] * n
    fixed = [w <= 0 for w in counts]
    unfixed = fixed.count(False)
    capped = sorted([(cap, c) for c, cap in enumerate(caps_Bps) if cap < math.inf and not fixed[c]])
    if capped and capped[0][0] <= 0:
        raise ValueError("flow caps must be positive")
    next_cap = 0
    while unfixed:
        while next_cap < len(capped) and fixed[capped[next_cap][1]]:
            next_cap += 1
        level = _next_level(load, capped, next_cap)
        if level == math.inf:  # classes with no resource and no cap: unconstrained
            _set_unfixed(rates, fixed, math.inf)
            break
        bound = level * (1.0 + _REL_TOL)
        saturated = [r for r, entry in load.items() if entry[0] <= bound * entry[1]]
        if (
            len(saturated) == len(load)
            and not routeless
            and (next_cap >= len(capped) or capped[next_cap][0] > bound)
        ):  # every remaining class crosses a saturated resource: all get this level
            _set_unfixed(rates, fixed, level)
            break
        to_fix = [c for r in saturated for c in load.pop(r)[2]]
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
        unfixed -= _fix(to_fix, level, routes, counts, caps_Bps, load, fixed, rates)
    return rates


def _one_level(
    routes: Sequence[Sequence[int]],
    counts: Sequence[int],
    caps_Bps: Sequence[float],
    capacity_Bps: Sequence[float],
) -> float | None:
    """:func:`_one_level_of` the classes; ``None`` where a class has no flows (the general
    solve gives it 0)."""
    if min(counts, default=0) <= 0:
        return None
    return _one_level_of(_resource_loads(routes, counts, capacity_Bps)[0], routes, caps_Bps)


def _one_level_of(
    load: Mapping[int, Sequence[Any]],
    routes: Iterable[Sequence[int]],
    caps_Bps: Sequence[float],
) -> float | None:
    """The rate :func:`max_min_fair_rates` gives every class when its first filling level fixes
    them all (each class crosses a resource that level saturates, or has a cap within it: one
    saturated port bottlenecking every class, the common contended case); ``None`` otherwise,
    or where the level is unbounded or a cap is not positive (the general solve's own cases).

    ``routes`` and ``caps_Bps`` are those of classes that all hold flows; ``load`` is their
    :func:`_resource_loads`, untouched (per resource: its capacity, and its flows counted once
    per crossing, as the general solve counts them). These are the general solve's floats:
    its first round computes the same level (the lowest of capacity / flows, flows an exact
    integer sum, and of the caps) and the same saturated resources, and its last round gives
    every class ``level if level < cap else cap``, which is ``level`` as no cap is below it."""
    level = min(caps_Bps)
    if not level > 0:
        return None
    for entry in load.values():
        share = entry[0] / entry[1]
        if share < level:
            level = share
    if level == math.inf:
        return None
    bound = level * (1.0 + _REL_TOL)
    for route, cap in zip(routes, caps_Bps, strict=True):
        if cap > bound:
            for r in route:
                entry = load[r]
                if entry[0] <= bound * entry[1]:
                    break  # saturated
            else:
                return None
    return level


def _resource_loads(
    routes: Sequence[Sequence[int]], counts: Sequence[int], capacity_Bps: Sequence[float]
) -> tuple[dict[int, list[Any]], bool]:
    """Per resource crossed by a class with flows: [capacity left, flows not yet fixed, classes
    using it]; and whether some class with flows crosses no resource (only its cap limits it)."""
    load: dict[int, list[Any]] = {}
    get = load.get
    routeless = False
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
    return load, routeless


def _next_level(
    load: dict[int, list[Any]], capped: list[tuple[float, int]], next_cap: int
) -> float:
    """The next filling level: the lowest fair share left on a resource, or the lowest cap of an
    unfixed class (``capped[next_cap]``), whichever is lower; ``inf`` when neither exists."""
    level = math.inf
    for entry in load.values():
        share = entry[0] / entry[1]
        if share < level:
            level = share
    if next_cap < len(capped) and capped[next_cap][0] < level:
        level = capped[next_cap][0]
    return level


def _set_unfixed(rates: list[float], fixed: list[bool], rate: float) -> None:
    """Give every class not yet fixed ``rate`` (the last round)."""
    for c in range(len(rates)):
        if not fixed[c]:
            rates[c] = rate


def _fix(
    to_fix: list[int],
    level: float,
    routes: Sequence[Sequence[int]],
    counts: Sequence[int],
    caps_Bps: Sequence[float],
    load: dict[int, list[Any]],
    fixed: list[bool],
    rates: list[float],
) -> int:
    """Fix the classes of ``to_fix`` at ``level`` (or their cap, if lower) and take their flows
    off the resources they cross; returns how many classes were newly fixed."""
    get = load.get
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
        for r in routes[c]:
            entry = get(r)
            if entry is None:
                continue  # saturated in this round: every user is being fixed
            entry[0] -= rate * w
            entry[1] -= w
            if not entry[1]:
                del load[r]
    return newly
