"""Property tests of the max-min solver and FluidNetwork on random topologies.

Topologies are random connected graphs of 3-8 nodes; every undirected edge is two directional
resources with their own capacity, and a route is the networkx shortest path between two nodes
turned into the list of directional resources it crosses. Magnitudes are GPU-like (GB/s links,
bytes to tens of MB, microsecond latencies), so float rounding is exercised where it matters.

On monotonicity. "More bandwidth never makes any transfer later" is false for max-min fairness in
general, for two reasons shown in tests/test_engine_closed_forms.py:

* the allocation itself is not monotone in one capacity
  (``test_max_min_rates_are_not_monotone_in_one_capacity``): raising a link that a long flow A
  shares lets A take more of its other link, from a flow B that never touched the raised link;
* it is not monotone in the set of flows either: a flow leaving can slow another one (in the same
  example, C leaving L1 slows B), so even scaling every capacity by k > 1 can delay a transfer
  once arrivals are staggered: a flow that now finishes earlier hands its share to a competitor
  of someone else (``test_uniform_scaling_with_staggered_arrivals_can_delay_a_transfer``).

What does hold, and is tested here:

(a) uniform scaling, one entry instant: with every capacity (and per-flow cap) multiplied by
    k >= 1 and every transfer entering the network at the same instant t0, every rate at every
    moment is k times larger, so the whole schedule after t0 is compressed by exactly 1/k:
    T_k - t0 = (T_1 - t0) / k <= T_1 - t0;
(b) one shared resource (egalitarian processor sharing) with arbitrary entry times: raising its
    capacity C -> C' >= C never delays a transfer. Coupling argument: if at some moment the faster
    system holds a subset of the slower one's flows, each with no more bytes left, then every
    common flow gets C'/n' >= C/n (n' <= n), so it stays ahead; arrivals are identical in both
    and a flow finishing only shrinks the faster set, so the invariant holds throughout.
"""

from __future__ import annotations

import importlib
import json
import math
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import simpy
from conftest import require_built
from hypothesis import given
from hypothesis import strategies as st

from gpusim.engine import maxmin
from gpusim.engine.fluid import (
    _FINISH_REL_TOL,
    _HEAP_MIN_CLASSES,
    _SLACK_REL,
    _WAKE_WINDOW_REL,
    ClassTable,
    FlowKey,
    FluidNetwork,
    Walk,
    _Flow,
    _FlowClass,
    _Lone,
)
from gpusim.engine.maxmin import max_min_fair_rates
from gpusim.engine.sim import CountingEnvironment

TOL = 1e-9
GB = 1e9


# -- generators --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    capacities_Bps: tuple[float, ...]
    routes: tuple[tuple[int, ...], ...]  # shortest-path routes between distinct node pairs


@dataclass(frozen=True)
class Xfer:
    route: tuple[int, ...]
    size_B: float
    start_s: float = 0.0
    latency_s: float = 0.0
    cap_Bps: float = math.inf


capacities = st.one_of(
    st.sampled_from([25 * GB, 50 * GB, 100 * GB, 450 * GB]),  # ties stress the saturation test
    st.floats(1 * GB, 900 * GB),
)


def _start_at(start: Callable[[int, Xfer], None], i: int, x: Xfer, _ev: object) -> None:
    """An event callback that starts transfer ``i``."""
    start(i, x)


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    n = draw(st.integers(3, 8))
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for v in range(1, n):  # a random spanning tree keeps it connected
        g.add_edge(v, draw(st.integers(0, v - 1)))
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=n))
    g.add_edges_from((u, v) for u, v in extra if u != v)
    index: dict[tuple[int, int], int] = {}
    caps: list[float] = []
    for u, v in sorted(g.edges()):
        for a, b in ((u, v), (v, u)):
            index[(a, b)] = len(caps)
            caps.append(draw(capacities))
    routes = []
    for s in range(n):
        for t in range(n):
            if s != t:
                p = nx.shortest_path(g, s, t)
                routes.append(tuple(index[(p[i], p[i + 1])] for i in range(len(p) - 1)))
    return Topology(tuple(caps), tuple(routes))


sizes = st.one_of(st.floats(1.0, 64e6), st.sampled_from([1.0, 4096.0, 1e6]))
flow_caps = st.one_of(st.just(math.inf), st.just(math.inf), st.floats(0.5 * GB, 500 * GB))


@st.composite
def scenarios(
    draw: st.DrawFn, max_xfers: int = 16, same_entry: bool = False, with_caps: bool = True
) -> tuple[Topology, list[Xfer]]:
    topo = draw(topologies())
    n = draw(st.integers(1, max_xfers))
    common_latency = draw(st.floats(0.0, 5e-6))
    xfers = []
    for _ in range(n):
        route = draw(st.sampled_from(topo.routes))
        if same_entry:
            start, latency = 0.0, common_latency
        else:
            start = draw(st.one_of(st.just(0.0), st.floats(0.0, 2e-3)))
            latency = draw(st.one_of(st.just(0.0), st.floats(0.0, 1e-5)))
        cap = draw(flow_caps) if with_caps else math.inf
        xfers.append(Xfer(route, draw(sizes), start, latency, cap))
    return topo, xfers


# -- running -----------------------------------------------------------------------------------


def run_to_completion(env: simpy.Environment, max_events: int = 200_000) -> None:
    """``env.run()`` with a budget, so a livelock fails instead of hanging."""
    for _ in range(max_events):
        if env.peek() == math.inf:
            return
        env.step()
    raise AssertionError(f"simulation still busy after {max_events} events at t={env.now!r}")


def start_each(
    env: CountingEnvironment, xfers: Sequence[Xfer], start: Callable[[int, Xfer], None]
) -> None:
    """Call ``start(i, x)`` for each transfer at its start time."""
    for i, x in enumerate(xfers):
        if x.start_s > 0:
            env.timeout(x.start_s).callbacks.append(partial(_start_at, start, i, x))
        else:
            start(i, x)


def simulate(
    capacities_Bps: Sequence[float], xfers: Sequence[Xfer]
) -> tuple[list[float], FluidNetwork]:
    env = CountingEnvironment()
    net = FluidNetwork(env)
    for i, cap in enumerate(capacities_Bps):
        net.add_resource(f"r{i}", cap)
    done_s = [math.nan] * len(xfers)

    def start(i: int, x: Xfer) -> None:
        ev = net.transfer(x.route, x.size_B, x.latency_s, x.cap_Bps)
        ev.callbacks.append(lambda _ev: done_s.__setitem__(i, float(env.now)))

    start_each(env, xfers, start)
    run_to_completion(env)
    assert not any(math.isnan(t) for t in done_s), f"transfers never completed: {done_s}"
    assert net.in_flight() == 0
    return done_s, net


def alone_time(x: Xfer, capacities_Bps: Sequence[float]) -> float:
    """Start-to-finish time of ``x`` with the network to itself."""
    rate = min(min(capacities_Bps[r] for r in x.route), x.cap_Bps)
    return x.latency_s + x.size_B / rate


# -- the solver --------------------------------------------------------------------------------


@st.composite
def solver_inputs(
    draw: st.DrawFn,
) -> tuple[list[tuple[int, ...]], list[int], list[float], list[float]]:
    topo = draw(topologies())
    n = draw(st.integers(1, 24))
    routes = [draw(st.sampled_from(topo.routes)) for _ in range(n)]
    counts = [draw(st.integers(1, 50)) for _ in range(n)]
    caps = [draw(flow_caps) for _ in range(n)]
    return routes, counts, caps, list(topo.capacities_Bps)


@given(solver_inputs())
def test_max_min_rates_are_feasible_positive_and_bottlenecked(
    inputs: tuple[list[tuple[int, ...]], list[int], list[float], list[float]],
) -> None:
    routes, counts, caps, capacity = inputs
    rates = max_min_fair_rates(routes, counts, caps, capacity)
    assert len(rates) == len(routes)
    load = [0.0] * len(capacity)
    users: list[list[int]] = [[] for _ in capacity]
    for c, route in enumerate(routes):
        assert 0 < rates[c] < math.inf
        assert rates[c] <= caps[c]
        for r in route:
            load[r] += counts[c] * rates[c]
            users[r].append(c)
    for r, cap in enumerate(capacity):
        assert load[r] <= cap * (1 + TOL), f"resource {r} over capacity"
    for c, route in enumerate(routes):
        if rates[c] >= caps[c] * (1 - TOL):
            continue  # bottlenecked by its own cap
        assert any(
            load[r] >= capacity[r] * (1 - TOL)
            and all(rates[c] >= rates[d] * (1 - TOL) for d in users[r])
            for r in route
        ), f"class {c} (rate {rates[c]}) has no bottleneck"


@given(solver_inputs(), st.lists(st.integers(0, 1), max_size=24))
def test_max_min_last_round_shortcut_gives_the_same_floats(
    inputs: tuple[list[tuple[int, ...]], list[int], list[float], list[float]],
    routeless: list[int],
) -> None:
    """The solver's last round (every class left fixed at once) sets the rates without taking
    the flows off the resources: exactly the rates of the round done in full. Some classes
    lose their route (``routeless``), and equal capacities and counts make ties common."""
    routes, counts, caps, capacity = inputs
    routes = [() if i < len(routeless) and routeless[i] else r for i, r in enumerate(routes)]
    caps = [c if r or c < math.inf else 10 * GB for r, c in zip(routes, caps, strict=True)]
    fast = max_min_fair_rates(routes, counts, caps, capacity)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(maxmin, "_LAST_ROUND_SHORTCUT", False)
        full = max_min_fair_rates(routes, counts, caps, capacity)
    assert fast == full


@st.composite
def one_level_inputs(
    draw: st.DrawFn,
) -> tuple[list[tuple[int, ...]], list[int], list[float], list[float]]:
    """Solver inputs where one saturated resource often bottlenecks every class (FlashMoE's
    tiles into one GPU's NVLink port): most classes cross resource 0, and caps sit at, just
    above or just below its fair share (ties within the solver's tolerance); some classes
    have no flows, no route or a resource twice."""
    n_res = draw(st.integers(2, 6))
    capacity = [draw(capacities)]
    wider = st.sampled_from([1.0, 1.0, 8.0, 8.0, 0.25])  # mostly at least resource 0's
    capacity += [capacity[0] * draw(wider) for _ in range(1, n_res)]
    n = draw(st.integers(2, 8))
    routes = [
        draw(st.sampled_from([(0,)] * 9 + [()]))
        + tuple(draw(st.lists(st.integers(1, n_res - 1), max_size=2)))
        for _ in range(n)
    ]
    counts = [draw(st.sampled_from([0] + [1, 2, 7, 16, 31] * 4)) for _ in routes]
    share = capacity[0] / max(sum(w for r, w in zip(routes, counts, strict=True) if 0 in r), 1)
    near = st.sampled_from([1.0, 1.0 + 1e-13, 1.0 + 2e-12, 1.0 - 1e-13, 0.5, 3.0])
    caps = [math.inf if draw(st.booleans()) else share * draw(near) for _ in routes]
    return routes, counts, caps, capacity


@given(st.one_of(one_level_inputs(), solver_inputs()))
def test_max_min_one_level_closed_form_gives_the_same_floats(
    inputs: tuple[list[tuple[int, ...]], list[int], list[float], list[float]],
) -> None:
    """Where the first filling level fixes every class, the closed form gives exactly the rates
    of the progressive filling done in full (closed form and last-round shortcut off)."""
    routes, counts, caps, capacity = inputs
    fast = max_min_fair_rates(routes, counts, caps, capacity)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(maxmin, "_ONE_LEVEL_CLOSED_FORM", False)
        patch.setattr(maxmin, "_LAST_ROUND_SHORTCUT", False)
        full = max_min_fair_rates(routes, counts, caps, capacity)
    assert fast == full


def _c_twin() -> Callable[
    [Sequence[Sequence[int]], Sequence[int], Sequence[float], Sequence[float]], list[float]
]:
    """The solve of gpusim/engine/_maxmin_c.c as the install built it (the tests run maxmin.py's
    own: GPUSIM_PURE_PYTHON is set; :func:`conftest.require_built`)."""
    require_built(("gpusim.engine._maxmin_c",), "the C max-min solve")
    solve: Callable[
        [Sequence[Sequence[int]], Sequence[int], Sequence[float], Sequence[float]], list[float]
    ] = importlib.import_module("gpusim.engine._maxmin_c").max_min_fair_rates
    return solve


@given(
    st.one_of(one_level_inputs(), solver_inputs()),
    st.lists(st.integers(0, 3), max_size=24),
)
def test_max_min_c_twin_gives_the_same_floats(
    inputs: tuple[list[tuple[int, ...]], list[int], list[float], list[float]],
    changes: list[int],
) -> None:
    """The compiled engine's C solve against maxmin.py's, bit for bit: one-level components and
    general ones, some classes without flows (``changes`` 1), without a route (2), or crossing
    their first resource twice (3); then a cap that is not positive, refused alike."""
    routes, counts, caps, capacity = inputs
    for i, change in enumerate(changes[: len(routes)]):
        if change == 1:
            counts[i] = 0
        elif change == 2:
            routes[i] = ()
            caps[i] = caps[i] if caps[i] < math.inf else 10 * GB
        elif change == 3 and routes[i]:
            routes[i] = (*routes[i], routes[i][0])
    twin = _c_twin()
    expected = max_min_fair_rates(routes, counts, caps, capacity)
    rates = twin(routes, counts, caps, capacity)
    assert [r.hex() for r in rates] == [float(r).hex() for r in expected]
    if any(w > 0 for w in counts) and len(routes) > 1:
        c = next(i for i, w in enumerate(counts) if w > 0)
        caps[c] = 0.0
        with pytest.raises(ValueError, match="flow caps must be positive") as python_error:
            max_min_fair_rates(routes, counts, caps, capacity)
        with pytest.raises(ValueError) as c_error:
            twin(routes, counts, caps, capacity)
        assert str(c_error.value) == str(python_error.value)


def test_the_c_solves_use_the_python_tolerances() -> None:
    """``_maxmin_c.c`` writes the solver's saturation tolerance, the fluid network's slack and
    its wake-up window as constants of its own: they must be the Python's, to the bit."""
    _c_twin()
    c_module = importlib.import_module("gpusim.engine._maxmin_c")
    assert c_module.REL_TOL == maxmin._REL_TOL
    assert c_module.SLACK_REL == _SLACK_REL
    assert c_module.WAKE_WINDOW_REL == _WAKE_WINDOW_REL


def test_max_min_c_twin_of_no_classes_of_a_share_on_the_bound_and_of_bad_input() -> None:
    """No classes: no rates. A resource whose fair share is exactly the saturation bound of the
    first level (``level * (1 + 1e-12)``) saturates at that level, in progressive filling (a
    class without flows keeps the one-level closed form out): both classes get the level. A
    resource outside ``capacity_Bps``: an error, not a read past it."""
    twin = _c_twin()
    assert twin([], [], [], [GB]) == max_min_fair_rates([], [], [], [GB]) == []
    on_bound = [GB, GB * (1.0 + 1e-12)]
    args = ([(0,), (1,), (0, 1)], [1, 1, 0], [math.inf] * 3, on_bound)
    assert twin(*args) == max_min_fair_rates(*args) == [GB, GB, 0.0]
    with pytest.raises(IndexError, match="resource 3 is not in capacity_Bps"):
        twin([(0, 3), (0,)], [1, 1], [math.inf, math.inf], [GB])


def _one_level(
    routes: Sequence[Sequence[int]],
    counts: Sequence[int],
    caps: Sequence[float],
    capacity: Sequence[float],
) -> float | None:
    """The solver's one-level closed form on these classes (every one holds flows)."""
    return maxmin._one_level_of(maxmin._Loads(routes, counts, capacity), caps)


def test_max_min_one_level_closed_form_is_taken_where_one_port_bottlenecks_all() -> None:
    """Three GPUs sending into a fourth's NVLink port (resource 0): one level, taken in closed
    form; a class capped below it, or one whose own port is slower, needs a second level."""
    routes = [(1, 0, 5), (2, 0, 5), (3, 0, 5)]
    capacity = [370 * GB, 370 * GB, 370 * GB, 370 * GB, 370 * GB, 3000 * GB]
    caps = [11.4 * GB] * 3
    level = _one_level(routes, [31, 16, 7], caps, capacity)
    assert level == 370 * GB / 54
    assert max_min_fair_rates(routes, [31, 16, 7], caps, capacity) == [level] * 3
    assert _one_level(routes, [31, 16, 7], [11.4 * GB, 11.4 * GB, 1 * GB], capacity) is None
    capacity[3] = 10 * GB
    assert _one_level(routes, [31, 16, 7], caps, capacity) is None


def _reference_rates(
    routes: Sequence[Sequence[int]],
    counts: Sequence[int],
    caps: Sequence[float],
    capacity: Sequence[float],
) -> list[float]:
    """Progressive filling written plainly (per resource, in first-appearance order: capacity
    left, flows not fixed, classes; no closed form, no shortcut), in the solver's scan orders:
    the floats :func:`max_min_fair_rates` must give."""
    left: dict[int, float] = {}
    flows: dict[int, int] = {}
    users: dict[int, list[int]] = {}
    for c, (route, w) in enumerate(zip(routes, counts, strict=True)):
        for r in route if w > 0 else ():
            left.setdefault(r, capacity[r])
            flows[r] = flows.get(r, 0) + w
            users.setdefault(r, []).append(c)
    rates = [0.0] * len(routes)
    fixed = [w <= 0 for w in counts]
    capped = sorted((cap, c) for c, cap in enumerate(caps) if cap < math.inf and not fixed[c])
    while not all(fixed):
        capped = [(cap, c) for cap, c in capped if not fixed[c]]
        shares = [left[r] / flows[r] for r in left]
        level = min([*shares, *(capped[0][:1] if capped else ())], default=math.inf)
        if level == math.inf:
            return [math.inf if not f else r for f, r in zip(fixed, rates, strict=True)]
        bound = level * (1.0 + 1e-12)
        saturated = [r for r in left if left[r] <= bound * flows[r]]
        to_fix = [c for r in saturated for c in users[r]]
        for r in saturated:
            del left[r], flows[r], users[r]
        to_fix += [c for cap, c in capped if cap <= bound]
        for c in to_fix:
            if fixed[c]:
                continue
            fixed[c] = True
            rates[c] = min(level, caps[c])
            for r in routes[c]:
                if r in left:
                    left[r] -= rates[c] * counts[c]
                    flows[r] -= counts[c]
                    if not flows[r]:
                        del left[r], flows[r], users[r]
    return rates


@given(st.one_of(one_level_inputs(), solver_inputs()))
def test_max_min_rates_are_the_plain_progressive_fillings_floats(
    inputs: tuple[list[tuple[int, ...]], list[int], list[float], list[float]],
) -> None:
    """The solver (resources numbered, typed lists, closed forms and shortcuts) gives exactly
    the floats of progressive filling written plainly over a dict of resources."""
    routes, counts, caps, capacity = inputs
    caps = [c if r or c < math.inf else 10 * GB for r, c in zip(routes, caps, strict=True)]
    assert max_min_fair_rates(routes, counts, caps, capacity) == _reference_rates(
        routes, counts, caps, capacity
    )


@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.tuples(st.lists(st.integers(0, 40), min_size=1, max_size=4), flow_caps),
        ),
        max_size=80,
    )
)
def test_a_set_of_flow_classes_iterates_as_the_set_of_their_keys(
    ops: list[tuple[bool, tuple[list[int], float]]],
) -> None:
    """The fluid network keeps sets of classes where it kept sets of keys: the same additions
    and removals lay them out, so iterate them, in the same order (the component's class order
    decides the order of the solver's sums)."""
    by_key: dict[FlowKey, _FlowClass] = {}
    keys: set[FlowKey] = set()
    classes: set[_FlowClass] = set()
    for add, (route, cap) in ops:
        key: FlowKey = (tuple(route), cap)
        if add:
            cls = by_key.setdefault(key, _FlowClass(key, 0))
            keys.add(key)
            classes.add(cls)
        elif key in by_key:
            keys.discard(key)
            classes.discard(by_key.pop(key))
        assert [c.key for c in classes] == list(keys)
        assert [c.key for c in set(classes)] == list(set(keys))


# -- the network -------------------------------------------------------------------------------


@given(scenarios())
def test_network_respects_capacity_conserves_bytes_and_bounds_completion(
    scenario: tuple[Topology, list[Xfer]],
) -> None:
    topo, xfers = scenario
    done_s, net = simulate(topo.capacities_Bps, xfers)
    for r, cap in enumerate(topo.capacities_Bps):
        assert net.peak_load_Bps[r] <= cap * (1 + TOL)
        expected = sum(x.size_B for x in xfers if r in x.route)
        assert net.carried_B[r] == pytest.approx(expected, rel=TOL, abs=1e-6)
    for x, t in zip(xfers, done_s, strict=True):
        lower = x.start_s + alone_time(x, topo.capacities_Bps)
        assert t >= lower * (1 - TOL)


class _CheckedNetwork(FluidNetwork):
    """A network that, after every settle, compares every class's rate and every resource's
    load with a max-min solve of all classes from scratch."""

    def _settle(self) -> None:
        super()._settle()
        classes = list(self._classes.values())
        if not classes:
            return
        whole = max_min_fair_rates(
            [c.route for c in classes],
            [len(c.flows) for c in classes],
            [c.cap_Bps for c in classes],
            self.capacity_Bps,
        )
        for cls, rate in zip(classes, whole, strict=True):
            assert self._state(cls)[0] == pytest.approx(rate, rel=1e-9)
        for r in range(len(self.capacity_Bps)):
            expected = sum(self._state(c)[0] * len(c.flows) for c in classes if r in c.route)
            assert self.load_Bps[r] == pytest.approx(expected, rel=1e-9, abs=1e-3)


@given(scenarios(max_xfers=24))
def test_incremental_settles_equal_a_whole_solve(scenario: tuple[Topology, list[Xfer]]) -> None:
    """The optimistic component (loose resources left out, checked after) and the incremental
    loads give, after every change, the rates and loads of a max-min solve of every flow."""
    topo, xfers = scenario
    env = CountingEnvironment()
    net = _CheckedNetwork(env)
    for i, cap in enumerate(topo.capacities_Bps):
        net.add_resource(f"r{i}", cap)

    def start(x: Xfer, _ev: simpy.Event | None = None) -> None:
        net.transfer(x.route, x.size_B, x.latency_s, x.cap_Bps)

    for x in xfers:
        if x.start_s > 0:
            env.timeout(x.start_s).callbacks.append(partial(start, x))
        else:
            start(x)
    run_to_completion(env)
    assert net.in_flight() == 0


def completion_order(
    capacities_Bps: Sequence[float], xfers: Sequence[Xfer], *, calls: bool
) -> tuple[list[tuple[float, int]], int, list[float]]:
    """(time, transfer) in the order the completions are seen, through :meth:`transfer`'s event
    or (``calls``) :meth:`transfer_then`'s call, with the network's recomputations and peak
    loads; each completion starts a follow-up transfer on the same route with no latency, so
    completions also feed entries at their instant."""
    env = CountingEnvironment()
    net = FluidNetwork(env)
    for i, cap in enumerate(capacities_Bps):
        net.add_resource(f"r{i}", cap)
    seen: list[tuple[float, int]] = []

    def done(i: int) -> None:
        seen.append((float(env.now), i))
        if i < len(xfers):
            x = xfers[i]
            start(i + len(xfers), replace(x, size_B=x.size_B / 2, latency_s=0.0))

    def start(i: int, x: Xfer) -> None:
        if calls:
            net.transfer_then(partial(done, i), x.route, x.size_B, x.latency_s, x.cap_Bps)
        else:
            ev = net.transfer(x.route, x.size_B, x.latency_s, x.cap_Bps)
            ev.callbacks.append(lambda _ev: done(i))

    start_each(env, xfers, start)
    run_to_completion(env)
    assert net.in_flight() == 0
    return seen, net.recomputations, net.peak_load_Bps


@given(scenarios())
def test_a_call_on_completion_runs_where_the_event_would(
    scenario: tuple[Topology, list[Xfer]],
) -> None:
    """``transfer_then`` (a deferred call, mostly without an event) gives the completions of
    ``transfer`` (an event each) at the same times and in the same order."""
    topo, drawn = scenario
    # coarse start times and latencies: many transfers enter, and so finish, at one instant
    xfers = [
        replace(x, start_s=round(x.start_s, 4), latency_s=round(x.latency_s, 6)) for x in drawn
    ]
    with_events = completion_order(topo.capacities_Bps, xfers, calls=False)
    assert completion_order(topo.capacities_Bps, xfers, calls=True) == with_events
    assert len(with_events[0]) == 2 * len(xfers)


@given(scenarios())
def test_network_is_deterministic(scenario: tuple[Topology, list[Xfer]]) -> None:
    topo, xfers = scenario
    first, net1 = simulate(topo.capacities_Bps, xfers)
    second, net2 = simulate(topo.capacities_Bps, xfers)
    assert first == second
    assert net1.carried_B == net2.carried_B
    assert net1.peak_load_Bps == net2.peak_load_Bps
    assert net1.recomputations == net2.recomputations


@given(scenarios(same_entry=True), st.floats(1.0, 16.0))
def test_uniform_scaling_with_one_entry_instant_compresses_time_by_k(
    scenario: tuple[Topology, list[Xfer]], k: float
) -> None:
    topo, xfers = scenario
    t0 = xfers[0].latency_s  # every transfer starts at 0 with this latency
    base, _ = simulate(topo.capacities_Bps, xfers)
    faster, _ = simulate(
        [k * c for c in topo.capacities_Bps], [replace(x, cap_Bps=k * x.cap_Bps) for x in xfers]
    )
    for t1, tk in zip(base, faster, strict=True):
        assert tk - t0 == pytest.approx((t1 - t0) / k, rel=TOL)
        assert tk <= t1 * (1 + 1e-12)


single_link = st.lists(
    st.builds(
        Xfer,
        route=st.just((0,)),
        size_B=sizes,
        start_s=st.one_of(st.just(0.0), st.floats(0.0, 2e-3)),
        latency_s=st.one_of(st.just(0.0), st.floats(0.0, 1e-5)),
    ),
    min_size=1,
    max_size=24,
)


@given(single_link, capacities, st.floats(1.0, 8.0))
def test_more_capacity_on_one_shared_resource_never_delays_a_transfer(
    xfers: list[Xfer], capacity: float, k: float
) -> None:
    base, _ = simulate([capacity], xfers)
    faster, _ = simulate([k * capacity], xfers)
    for t1, tk in zip(base, faster, strict=True):
        assert tk <= t1 * (1 + TOL)


@st.composite
def disjoint_scenarios(draw: st.DrawFn) -> tuple[Topology, list[Xfer]]:
    topo, xfers = draw(scenarios())
    used: set[int] = set()
    kept = []
    for x in xfers:
        if used.isdisjoint(x.route):
            used.update(x.route)
            kept.append(x)
    return topo, kept


@given(disjoint_scenarios())
def test_transfers_on_disjoint_routes_match_the_closed_form(
    scenario: tuple[Topology, list[Xfer]],
) -> None:
    topo, xfers = scenario
    done_s, net = simulate(topo.capacities_Bps, xfers)
    for x, t in zip(xfers, done_s, strict=True):
        assert t == pytest.approx(x.start_s + alone_time(x, topo.capacities_Bps), rel=TOL)
    for x in xfers:
        rate = min(min(topo.capacities_Bps[r] for r in x.route), x.cap_Bps)
        for r in x.route:
            assert net.peak_load_Bps[r] == pytest.approx(rate, rel=TOL)


# -- the wake-up's candidates ------------------------------------------------------------------


def _finishes_now(net: FluidNetwork, cls: _FlowClass, now: float) -> bool:
    """Whether :meth:`FluidNetwork._wake` at ``now`` finishes the first flow of ``cls`` (its
    test, verbatim, on the clock ``net`` keeps for it)."""
    if not cls.flows:
        return False
    rate, virtual_B, ref_s = net._state(cls)[:3]
    virtual = virtual_B if now == ref_s else virtual_B + rate * (now - ref_s)
    first = cls.flows[0][0]
    return (
        rate == math.inf
        or first <= virtual * (1.0 + _FINISH_REL_TOL)
        or (rate > 0 and now + (first - virtual) / rate <= now)
    )


class _ScanComparedNetwork(FluidNetwork):
    """A network that, at every wake-up, checks that the classes it tests (:meth:`_candidates`)
    are in the order of ``_classes`` and hold every class a scan of all of them would finish, so
    the same flows finish in the same order; ``full_scan`` makes it test every class instead."""

    def __init__(self, env: CountingEnvironment, full_scan: bool = False) -> None:
        super().__init__(env)
        self.full_scan = full_scan
        self.heap_wakes = 0
        self.early_finishes = 0  # classes finished before their next_s (the tolerance window)

    def _candidates(self, now: float) -> list[_FlowClass]:
        every = list(self._classes.values())
        if self.full_scan:
            return every
        fast = super()._candidates(now)
        position = {id(c): i for i, c in enumerate(every)}
        places = [position[id(c)] for c in fast]  # KeyError: a class that is gone
        assert places == sorted(set(places)), "candidates out of the classes' order"
        finishing = [id(c) for c in every if _finishes_now(self, c, now)]
        assert [id(c) for c in fast if _finishes_now(self, c, now)] == finishing
        self.heap_wakes += self._heap_mode
        self.early_finishes += sum(
            1 for c in every if _finishes_now(self, c, now) and self._state(c)[3] > now
        )
        return fast


def _run_with_follow_ups(
    net: FluidNetwork, capacities_Bps: Sequence[float], xfers: Sequence[Xfer], *, calls: bool
) -> list[tuple[float, int]]:
    """Give ``net`` the resources, start ``xfers`` at their instants and run to the end; each of
    the first ``len(xfers)`` starts a follow-up of its own size on its route at its completion
    (an entry between a wake-up and its settle's class times), told by a call (``calls``:
    ``transfer_then``) or by its event's callback (``transfer``). Returns the completions
    (time, transfer) in the order they fire."""
    env = net.env
    for i, cap in enumerate(capacities_Bps):
        net.add_resource(f"r{i}", cap)
    seen: list[tuple[float, int]] = []

    def start(i: int, x: Xfer) -> None:
        if calls:
            net.transfer_then(partial(done, i), x.route, x.size_B, x.latency_s, x.cap_Bps)
        else:
            ev = net.transfer(x.route, x.size_B, x.latency_s, x.cap_Bps)
            ev.callbacks.append(lambda _ev: done(i))

    def done(i: int) -> None:
        seen.append((float(env.now), i))
        if i < len(xfers):
            start(i + len(xfers), replace(xfers[i], latency_s=0.0))

    start_each(env, xfers, start)
    run_to_completion(env)
    assert net.in_flight() == 0
    return seen


def _completions(
    capacities_Bps: Sequence[float], xfers: Sequence[Xfer], *, full_scan: bool
) -> tuple[list[tuple[float, int]], _ScanComparedNetwork]:
    """(time, transfer) in the order completions fire; each of the first ``len(xfers)`` starts a
    follow-up of its own size on its route at its instant (an entry between a wake-up and its
    settle's class times)."""
    net = _ScanComparedNetwork(CountingEnvironment(), full_scan)
    return _run_with_follow_ups(net, capacities_Bps, xfers, calls=False), net


# sizes that tie, or nearly (within the finish test's tolerance), so that classes finish together
near_tied_sizes = st.builds(
    lambda base, k: base * (1.0 + k * 1e-13),
    st.sampled_from([1.0, 4096.0, 1e6, 3e6]),
    st.integers(-8, 8),
)


@st.composite
def crowded_scenarios(draw: st.DrawFn) -> tuple[Topology, list[Xfer]]:
    """Many classes (past the wake-up's heap threshold), coarse instants, near-tied sizes."""
    topo = draw(topologies())
    xfers = []
    for _ in range(draw(st.one_of(st.integers(1, 12), st.integers(30, 80)))):
        xfers.append(
            Xfer(
                draw(st.sampled_from(topo.routes)),
                draw(st.one_of(near_tied_sizes, sizes)),
                draw(st.sampled_from([0.0, 0.0, 1e-6, 5e-6, 2e-5])),
                draw(st.sampled_from([0.0, 0.0, 1e-6])),
                draw(st.sampled_from([math.inf, math.inf, 10 * GB, 40 * GB])),
            )
        )
    return topo, xfers


@given(crowded_scenarios())
def test_the_wake_up_finishes_what_a_scan_of_every_class_would(
    scenario: tuple[Topology, list[Xfer]],
) -> None:
    """A wake-up tests only the classes that can finish (taken from a heap of each class's
    earliest possible finish, with many classes), yet finishes exactly the flows, in exactly
    the order, that a scan of every class would: checked at every wake-up, and over the run
    against a network that scans every class."""
    topo, xfers = scenario
    fast, _ = _completions(topo.capacities_Bps, xfers, full_scan=False)
    assert fast == _completions(topo.capacities_Bps, xfers, full_scan=True)[0]


def test_the_wake_up_finishes_classes_inside_the_tolerance_window() -> None:
    """20 classes on their own links, sizes a few 1e-14 apart: the first class's wake-up also
    finishes the other 19 (their completion times a hair later, within the finish test's
    tolerance) though none of them changed since the last settle, in the classes' order."""
    xfers = [Xfer((i,), 1e6 * (1.0 + (20 - i) * 1e-14)) for i in range(20)]
    fast, net = _completions([1 * GB] * 20, xfers, full_scan=False)
    assert net.heap_wakes > 0 and net.early_finishes > 0
    assert [i for _, i in fast[:20]] == list(range(20))
    assert len({t for t, _ in fast[:20]}) == 1
    assert fast == _completions([1 * GB] * 20, xfers, full_scan=True)[0]


class _PathComparedNetwork(FluidNetwork):
    """A network that logs, after every settle, every class's state (flows, rate, clock,
    completion times, load) and every resource's load, and counts the settles its closed form
    took (``alone``) or left to the general path."""

    lone_flows = False  # a lone flow has no settle to log: compared on its own below

    def __init__(self, env: CountingEnvironment, fast_paths: bool) -> None:
        super().__init__(env)
        self.fast_paths = fast_paths
        self.states: list[tuple[float, bool, list[tuple[object, ...]], list[float]]] = []
        self.alone = 0
        self.left_to_general = 0
        self.cuts_reused = 0

    def _solve_without(
        self, classes: list[_FlowClass], loose: Collection[int]
    ) -> list[float] | None:
        """Check every route cut the solve will reuse against a fresh cut (and count them)."""
        for cls in classes:
            if cls.cut_for == frozenset(loose):
                self.cuts_reused += 1
                assert list(cls.kept) == [r for r in cls.route if r not in loose]
                assert cls.crossed == tuple(r for r in cls.route if r in loose)
        return super()._solve_without(classes, loose)

    def _reschedule(self, heap_mode: bool) -> None:
        classes: list[tuple[object, ...]] = [
            (c.key, len(c.flows), *self._state(c)) for c in self._classes.values()
        ]
        many = len(self._classes) > _HEAP_MIN_CLASSES  # the Python heap's mode, table or not
        assert heap_mode == (many and self.c_classes is None)
        self.states.append((float(self.env.now), many, classes, list(self.load_Bps)))
        super()._reschedule(heap_mode)

    def _settle_alone(self) -> bool:
        taken = super()._settle_alone()
        self.alone += taken
        self.left_to_general += not taken
        return taken


@dataclass(frozen=True)
class Twins:
    """The network's C twins to run in place of its Python (none: the Python, as the tests
    run): a ``ClassTable`` (its walk, solves, clocks, completion index, peaks and ledger),
    whose general settle is one call (``fused``) or the Python's steps calling the table's."""

    classes: Callable[[], ClassTable] | None = None
    fused: bool = True

    def install(self, net: FluidNetwork) -> None:
        """Before the network's first class (the table is kept from its first class on)."""
        net.c_classes = None if self.classes is None else self.classes()
        net.fused_settle = self.fused


def _run_paths(
    capacities_Bps: Sequence[float],
    xfers: Sequence[Xfer],
    *,
    fast_paths: bool,
    twins: Twins = Twins(),
) -> tuple[list[tuple[float, int]], _PathComparedNetwork]:
    """Completions (time, transfer) of ``xfers``, each starting one follow-up of its own size
    on its route at its instant, on a :class:`_PathComparedNetwork` running ``twins``; without
    ``fast_paths``, the solver's closed forms are off too (progressive filling in full)."""
    net = _PathComparedNetwork(CountingEnvironment(), fast_paths)
    twins.install(net)
    with pytest.MonkeyPatch.context() as patch:
        if not fast_paths:
            patch.setattr(maxmin, "_ONE_LEVEL_CLOSED_FORM", False)
            patch.setattr(maxmin, "_LAST_ROUND_SHORTCUT", False)
        return _run_with_follow_ups(net, capacities_Bps, xfers, calls=True), net


def _grown_component_cases() -> list[tuple[list[float], list[Xfer]]]:
    """(capacities, transfers) of each instance in fixtures/fluid_grown_component_cases.json:
    runs whose optimistic solves fill loose resources, so their components grow."""
    cases = json.loads(
        (Path(__file__).parent / "fixtures" / "fluid_grown_component_cases.json").read_text()
    )
    return [
        (
            case["capacities_Bps"],
            [
                Xfer(tuple(route), size_B, start_s, latency_s, math.inf if cap is None else cap)
                for route, size_B, start_s, latency_s, cap in case["xfers"]
            ],
        )
        for case in cases
    ]


def _assert_same_run(fast: _PathComparedNetwork, general: _PathComparedNetwork) -> None:
    fast.stats()  # the ledger into the lists (a class table keeps its own)
    general.stats()
    assert fast.states == general.states
    assert fast.recomputations == general.recomputations
    assert fast.load_Bps == general.load_Bps
    assert fast.peak_load_Bps == general.peak_load_Bps
    assert fast.carried_B == general.carried_B
    assert fast.busy_s == general.busy_s


@given(st.one_of(crowded_scenarios(), scenarios(max_xfers=24)))
def test_settle_fast_paths_equal_the_general_path(scenario: tuple[Topology, list[Xfer]]) -> None:
    """With its closed-form settles (one class changed, alone in its optimistic component) the
    network gives exactly (same floats, same order) the completions, rates, loads, peaks and
    recomputations of the general path (component, solve, check) at every settle."""
    topo, xfers = scenario
    fast, fast_net = _run_paths(topo.capacities_Bps, xfers, fast_paths=True)
    general, general_net = _run_paths(topo.capacities_Bps, xfers, fast_paths=False)
    assert fast == general
    _assert_same_run(fast_net, general_net)
    assert general_net.alone == general_net.left_to_general == 0


def test_settle_fast_paths_equal_the_general_path_where_the_relaxed_solve_fills_more() -> None:
    """Two instances hypothesis found where the optimistic solve without the loose resources
    filled more of them than the solve with them: the component grew through other resources
    (one recomputation more; carried bytes off in the last bits) until such a failed solve was
    redone with them."""
    for capacities, xfers in _grown_component_cases():
        fast, fast_net = _run_paths(capacities, xfers, fast_paths=True)
        general, general_net = _run_paths(capacities, xfers, fast_paths=False)
        assert fast == general
        _assert_same_run(fast_net, general_net)
        assert fast_net.grown > 0
        assert fast_net.cuts_reused > 0  # each checked against a fresh cut


def _c_class_table() -> Callable[[], ClassTable]:
    """``_maxmin_c.ClassTable`` as the install built it (:func:`_c_twin`'s conditions)."""
    _c_twin()
    table: Callable[[], ClassTable] = importlib.import_module("gpusim.engine._maxmin_c").ClassTable
    return table


@given(st.one_of(crowded_scenarios(), scenarios(max_xfers=24)))
def test_the_c_class_table_gives_the_same_run(scenario: tuple[Topology, list[Xfer]]) -> None:
    """The compiled engine's ``ClassTable`` (its walk, its optimistic solve: route cuts,
    solve and fill check in one, its re-time) in place of the Python of ``_component``,
    ``_solve_without`` and ``_retime``, called step by step or as one ``settle``: the same
    completions, rates, clocks, loads, peaks and recomputations at every settle, and the
    components grow alike."""
    topo, xfers = scenario
    python, python_net = _run_paths(topo.capacities_Bps, xfers, fast_paths=True)
    for fused in (True, False):
        twins = Twins(classes=_c_class_table(), fused=fused)
        c, c_net = _run_paths(topo.capacities_Bps, xfers, fast_paths=True, twins=twins)
        assert c == python
        _assert_same_run(c_net, python_net)
        assert c_net.grown == python_net.grown


def _table_of(net: FluidNetwork) -> ClassTable:
    """A ``ClassTable`` holding ``net``'s classes (their slots set to it), in their entry
    order."""
    table = _c_class_table()()
    for cls in sorted(net._classes.values(), key=lambda c: c.order):
        cls.slot = table.add(cls, cls.order, cls.route, cls.cap_Bps, cls.flows, cls.ref_s)
        table.retimed(cls.slot, cls.check_s, cls.next_s, cls.load_Bps)
    return table


def _assert_same_walk(c: Walk, python: Walk) -> None:
    """The same members in the same (entry) order, the order the solve takes them in, and the
    same resources in ascending order; the same changed classes (each once, in any order) and
    the same loose resources (each once, a list from the C walk). Objects compared by identity."""
    (members_c, resources_c, touched_c, loose_c), (members, resources, touched, loose) = c, python
    assert type(members_c) is list and [id(x) for x in members_c] == [id(x) for x in members]
    assert [x.order for x in members] == sorted({x.order for x in members})
    assert type(touched_c) is list and sorted(map(id, touched_c)) == sorted(map(id, touched))
    assert len(set(map(id, touched))) == len(touched)
    assert type(resources_c) is list and resources_c == resources == sorted(set(resources))
    assert type(loose_c) is list and len(set(loose_c)) == len(loose_c) and set(loose_c) == loose


def _both_walks(
    net: FluidNetwork, optimistic: bool, tight: frozenset[int] | set[int]
) -> tuple[Walk, Walk]:
    """``net``'s component taken by the C walk (over a ``ClassTable`` of its classes), then by
    the Python."""
    saved = net.c_classes
    try:
        net.c_classes = _table_of(net)
        c = FluidNetwork._component(net, optimistic, tight)
        net.c_classes = None
        python = FluidNetwork._component(net, optimistic, tight)
    finally:
        net.c_classes = saved
    return c, python


class _ComponentComparedNetwork(_PathComparedNetwork):
    """A network whose every component is taken by the C walk and by the Python, compared
    (:func:`_assert_same_walk`). Runs the Python's."""

    def __init__(self, env: CountingEnvironment) -> None:
        super().__init__(env, fast_paths=True)
        self.walks = 0
        self.tight_walks = 0
        self.loose_walks = 0

    def _component(self, optimistic: bool, tight: frozenset[int] | set[int] = frozenset()) -> Walk:
        c, python = _both_walks(self, optimistic, tight)
        _assert_same_walk(c, python)
        self.walks += 1
        self.tight_walks += bool(tight)
        self.loose_walks += bool(python[3])
        return python


def _run_compared_components(
    capacities_Bps: Sequence[float], xfers: Sequence[Xfer]
) -> _ComponentComparedNetwork:
    _c_class_table()
    net = _ComponentComparedNetwork(CountingEnvironment())
    _run_with_follow_ups(net, capacities_Bps, xfers, calls=True)
    return net


@given(st.one_of(crowded_scenarios(), scenarios(max_xfers=24)))
def test_the_c_component_walk_takes_the_same_component(
    scenario: tuple[Topology, list[Xfer]],
) -> None:
    """The compiled engine's C ``_component`` against the method's Python at every settle of
    random runs: the same classes in the same order, the same resources, changed classes and
    loose resources (:func:`_assert_same_walk`)."""
    topo, xfers = scenario
    _run_compared_components(topo.capacities_Bps, xfers)


@st.composite
def walk_states(draw: st.DrawFn) -> tuple[FluidNetwork, bool, set[int]]:
    """A network's containers as a walk reads them, drawn directly (not from a run): loads and
    demands at exactly the saturation bound (``_room_Bps``), half of it or twice it, so the
    walk's ties are taken; classes on random routes, some changed, some resources freed."""
    n_res = draw(st.integers(1, 8))
    net = FluidNetwork(CountingEnvironment())
    for r in range(n_res):
        net.add_resource(f"r{r}", draw(st.sampled_from([1e9, 3e9, 7.5e9])))
    for r in range(n_res):
        room = net._room_Bps[r]
        net.load_Bps[r] = draw(st.sampled_from([0.0, room / 2, room, 2 * room]))
        net._demand[r] = draw(st.sampled_from([0.0, room / 2, room, 2 * room]))
        net._uncapped[r] = draw(st.integers(0, 2))
    resource = st.integers(0, n_res - 1)
    for order in range(draw(st.integers(1, 10))):
        route = tuple(draw(st.lists(resource, min_size=1, max_size=4)))
        key = (route, draw(st.sampled_from([math.inf, 1e9, 2e9 + order])))
        if key not in net._classes:
            net._new_class(key, order, 0.0)
            if draw(st.booleans()):
                net._dirty_keys.add(key)
    net._dirty_keys.add(((n_res - 1,), 5e8))  # a changed class that has gone meanwhile
    net._dirty_res.update(draw(st.sets(resource, max_size=3)))
    return net, draw(st.booleans()), draw(st.sets(resource, max_size=3))


@given(walk_states())
def test_the_c_component_walk_takes_the_python_component_at_every_tie(
    state: tuple[FluidNetwork, bool, set[int]],
) -> None:
    """The C walk against the Python on drawn states where loads and demands sit exactly at the
    bound that decides whether a resource can saturate or is below it (random runs never land
    there): the same members, resources, changed classes and loose resources
    (:func:`_assert_same_walk`)."""
    net, optimistic, tight = state
    _assert_same_walk(*_both_walks(net, optimistic, tight))


def test_the_c_component_walk_grows_through_filled_resources_alike() -> None:
    """The grown-component instances (optimistic walks redone with resources in ``tight``)."""
    for capacities, xfers in _grown_component_cases():
        net = _run_compared_components(capacities, xfers)
        assert net.tight_walks > 0 and net.loose_walks > 0


def test_the_c_component_walk_refuses_what_the_python_cannot_read() -> None:
    """A route through a resource the network does not have, per-resource lists that
    disagree, a changed class the table does not hold, and a negative resource are refused with
    an error (not read past their ends)."""
    net = FluidNetwork(CountingEnvironment())
    net.add_resource("r0", 1e9)
    cls = _FlowClass(((0, 5), math.inf), 0)
    net._classes[cls.key] = cls
    table = _table_of(net)
    classes, dirty, load, room = net._classes, {cls.key}, net.load_Bps, net._room_Bps
    uncapped, demand = net._uncapped, net._demand
    with pytest.raises(IndexError, match="resource 5"):
        table.component(classes, dirty, set(), load, room, uncapped, demand, True, set())
    with pytest.raises(ValueError, match="differ in length"):
        table.component(classes, dirty, set(), load, room, [0, 0], demand, True, set())
    not_a_set: Any = [0]
    with pytest.raises(TypeError):
        table.component(classes, dirty, set(), load, room, [0], demand, True, not_a_set)
    with pytest.raises(IndexError, match="resource 3"):  # a changed resource it does not have
        table.component(classes, set(), {3}, load, room, uncapped, demand, True, set())
    table.remove(cls.slot)
    with pytest.raises(KeyError, match="no class in slot"):
        table.component(classes, dirty, set(), load, room, uncapped, demand, True, set())
    with pytest.raises(KeyError, match="no class in slot"):
        table.remove(cls.slot)
    with pytest.raises(IndexError, match="resource -1"):
        table.add(cls, 0, (0, -1), math.inf, cls.flows, 0.0)


@pytest.mark.parametrize("n_classes", [2, 33, 3000])
def test_the_c_walk_sorts_any_component_by_entry_order(n_classes: int) -> None:
    """Classes registered in shuffled entry order on one saturated resource and their own
    ones: the walk gives them all in entry order, and the resources ascending, however many
    (the sort's gaps change with the count)."""
    net = FluidNetwork(CountingEnvironment())
    net.add_resource("shared", 1e9)
    orders = list(range(n_classes))
    random.Random(n_classes).shuffle(orders)
    for order in orders:
        net.add_resource(f"own{order}", 1e9)
        net._new_class(((order + 1, 0), math.inf), order, 0.0)
    net._uncapped = [1] * len(net._uncapped)
    net.load_Bps[0] = 1e9  # saturated: it connects every class
    first = net._classes[((orders[0] + 1, 0), math.inf)]
    net._dirty_keys.add(first.key)
    members, resources, _, _ = FluidNetwork._component(net, True, frozenset())
    python = _both_walks(net, True, frozenset())[1]
    assert [c.order for c in members] == list(range(n_classes))
    assert resources == list(range(n_classes + 1)) == python[1]
    _assert_same_walk(*_both_walks(net, True, frozenset()))


def test_the_class_table_peaks_are_the_pythons() -> None:
    """``peaks`` against ``_retime_end``'s Python: a resource no class crosses (or that the
    table has never seen) has its load zeroed, a crossed one's peak rises to its load and
    never falls; resources outside the lists, and lists that disagree, are refused."""
    net = FluidNetwork(CountingEnvironment())
    for r in range(4):
        net.add_resource(f"r{r}", 1e9)
    net._new_class(((1, 2), math.inf), 0, 0.0)
    table = _table_of(net)
    load = [3e-7, 5e8, 2e8, 1e8]
    peak = [0.0, 4e8, 3e8, 0.0]
    python_net = FluidNetwork(CountingEnvironment())
    python_net.load_Bps, python_net.peak_load_Bps, python_net._users = (
        list(load),
        list(peak),
        net._users,
    )
    python_net.c_classes = None
    FluidNetwork._retime_end(python_net, [0, 1, 2, 3], 0.0)
    table.peaks([0, 1, 2, 3], load, peak)
    assert (load, peak) == (python_net.load_Bps, python_net.peak_load_Bps)
    assert (load, peak) == ([0.0, 5e8, 2e8, 0.0], [0.0, 5e8, 3e8, 0.0])
    with pytest.raises(IndexError, match="resource 4"):
        table.peaks([4], load, peak)
    with pytest.raises(IndexError, match="resource -1"):
        table.peaks([-1], load, peak)
    with pytest.raises(ValueError, match="differ in length"):
        table.peaks([0], load, [0.0])


@given(
    st.lists(
        st.tuples(
            st.integers(0, 39),
            st.sampled_from([-math.inf, 0.0, 1.0, 2.0, 2.0, 3.5, math.inf]),
            st.sampled_from([0.0, 1.0, 2.0, 4.0, math.inf]),
        ),
        max_size=120,
    ),
    st.sampled_from([0.0, 1.0, 2.0, 3.0]),
)
def test_the_class_tables_completion_index_is_a_scan(
    steps: list[tuple[int, float, float]], now: float
) -> None:
    """Classes added, re-timed and removed in any order (a step on a class the table holds
    re-times it, or removes it when its next time is 4; one it does not hold is added): the
    earliest completion is the least next_s, and the classes due at ``now`` are those whose
    check_s has come, and the changed ones, in entry order (as ``_candidates`` scans them)."""
    table = _c_class_table()()
    held: dict[int, _FlowClass] = {}
    classes: dict[FlowKey, _FlowClass] = {}
    for order, check_s, next_s in steps:
        cls = held.get(order)
        if cls is None:
            cls = held[order] = _FlowClass(((order,), math.inf), order)
            classes[cls.key] = cls
            cls.slot = table.add(cls, order, cls.route, cls.cap_Bps, cls.flows, 0.0)
        elif next_s == 4.0:
            table.remove(cls.slot)
            del held[order], classes[cls.key]
        else:
            cls.check_s, cls.next_s = check_s, next_s
            table.retimed(cls.slot, check_s, next_s, 0.0)
    dirty = {key for key in list(classes)[::3]} | {((99,), math.inf)}
    assert table.next_completion() == min((c.next_s for c in held.values()), default=math.inf)
    due = [c for c in sorted(held.values(), key=lambda c: c.order) if c.check_s <= now]
    due = sorted({*due, *(classes[k] for k in dirty if k in classes)}, key=lambda c: c.order)
    assert table.due(now, classes, dirty) == due


@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 1e9, 2.5e9, 2.5e9, 7e10, math.inf]),
            st.sampled_from([0.0, 0.5, 1.0, 1.0, 3.25]),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_class_tables_clocks_are_the_classes(steps: list[tuple[float, float, bool]]) -> None:
    """A class re-rated at drawn times (``rerate``, as ``_settle_alone`` and ``_materialise``
    call it; or through ``retime``, ``_retime``'s loop, with the class touched or not) keeps
    the clock, completion times and contribution its ``_FlowClass`` twin computes with
    ``set_rate`` and ``retime``, bit for bit, and ``clock`` reads its clock at any time."""
    table = _c_class_table()()
    twin = _FlowClass(((0, 1, 0), math.inf), 0, ref_s=0.0)
    held = _FlowClass(twin.key, 0, ref_s=0.0)
    for cls in (twin, held):
        cls.flows.append((3e9, 0, _Flow(3e9, 0, lambda: None, 3e9, 0.0, "x")))
    held.slot = table.add(held, 0, held.route, held.cap_Bps, held.flows, 0.0)
    now = 0.0
    for rate, step_s, through_retime in steps:
        now += step_s
        load = [0.0, 0.0]
        if through_retime:  # _retime's loop: untouched at an unchanged rate, nothing moves
            table.retime([held], [rate], [held] if step_s > 1 else [], now, load)
            if rate != twin.rate_Bps or step_s > 1:
                if rate != twin.rate_Bps:
                    twin.set_rate(rate, now)
                twin.retime(now)
            contribution = rate * 1.0
            if contribution != twin.load_Bps:  # its whole route: resource 0 twice
                assert load == [2 * (contribution - twin.load_Bps), contribution - twin.load_Bps]
                twin.load_Bps = contribution
        else:
            table.rerate(held.slot, rate, rate * 1.0, now)
            if rate != twin.rate_Bps:
                twin.set_rate(rate, now)
            twin.load_Bps = rate * 1.0
            twin.retime(now)
        expected = (twin.rate_Bps, twin.virtual_B, twin.ref_s, twin.next_s, twin.check_s)
        assert table.state(held.slot) == (*expected, twin.load_Bps)
        assert table.load_of(held.slot) == twin.load_Bps
        assert table.clock(held.slot, now + 0.75) == (twin.rate_Bps, twin.virtual_at(now + 0.75))
    assert table.remove(held.slot) == twin.load_Bps


def test_the_class_tables_clock_steps_refuse_what_they_cannot_read() -> None:
    """A stale slot, rates that do not match the members, and a class with a rate but no flow
    are refused with the error the Python would raise, not read past."""
    table = _c_class_table()()
    cls = _FlowClass(((0,), math.inf), 0)
    cls.slot = table.add(cls, 0, cls.route, cls.cap_Bps, cls.flows, 0.0)
    with pytest.raises(ValueError, match="a rate per member"):
        table.retime([cls], [], [], 0.0, [0.0])
    with pytest.raises(IndexError, match="no first flow"):
        table.rerate(cls.slot, 1e9, 1e9, 0.0)
    table.remove(cls.slot)
    for step in (
        partial(table.rerate, cls.slot, 1.0, 1.0, 0.0),
        partial(table.clock, cls.slot, 0.0),
        partial(table.state, cls.slot),
        partial(table.load_of, cls.slot),
    ):
        with pytest.raises(KeyError, match="no class in slot"):
            step()


def test_the_one_call_settle_refuses_what_it_cannot_read() -> None:
    """``ClassTable.settle`` refuses per-resource lists of different lengths, a changed
    resource outside them, a class crossing a resource they lack, a missing argument and gone
    lists that do not pair up, with the errors of the steps it joins, not reading past."""
    table = _c_class_table()()
    cls = _FlowClass(((0, 1), math.inf), 0)
    cls.flows.append((1.0, 0, _Flow(1.0, 0, lambda: None, 1.0, 0.0, "x")))
    cls.slot = table.add(cls, 0, cls.route, cls.cap_Bps, cls.flows, 0.0)
    classes, dirty = {cls.key: cls}, {cls.key}
    lists = ([1e9, 1e9], [0.0, 0.0], [1e9, 1e9], [1, 1], [0.0, 0.0])

    def settle(*per_resource: list[Any], dirty_res: Iterable[int] = (), **gone: Any) -> Any:
        capacity, load, room, uncapped, demand = per_resource
        routes, loads = gone.get("routes", []), gone.get("loads", [])
        return table.settle(
            classes,
            dirty,
            set(dirty_res),
            capacity,
            load,
            room,
            uncapped,
            demand,
            routes,
            loads,
            0.0,
            [0.0] * len(capacity),
        )

    with pytest.raises(ValueError, match="differ in length"):
        settle([1e9], *lists[1:])
    with pytest.raises(IndexError, match="resource 5 is not in load_Bps"):
        settle(*lists, dirty_res={5})
    with pytest.raises(IndexError, match="resource 1 is not in load_Bps"):
        settle(*([x[0]] for x in lists))  # the class crosses resource 1
    with pytest.raises(IndexError, match="gone_loads_Bps is shorter than gone_routes"):
        settle(*lists, routes=[(0,)], loads=[])
    unchecked: Any = table  # a call the Protocol's types would refuse
    with pytest.raises(TypeError, match="settle"):
        unchecked.settle(classes, dirty)
    assert settle(*lists) == (1, 0)  # one class alone, crossing each resource once: one solve


def test_the_class_table_holds_what_the_networks_users_hold() -> None:
    """Classes added and removed in any order: per resource, the table counts the classes the
    Python's ``_users`` sets hold (a route crossing a resource twice counted once), and slots
    are reused."""
    table = _c_class_table()()
    routes = [(0, 1), (1, 2, 1), (2,), (0, 2, 3), (3, 3)]
    classes = [_FlowClass((route, math.inf), i) for i, route in enumerate(routes)]
    users: dict[int, set[_FlowClass]] = {}
    slots = [table.add(c, c.order, c.route, c.cap_Bps, c.flows, 0.0) for c in classes]
    for c in classes:
        for r in c.route:
            users.setdefault(r, set()).add(c)
    assert sorted(slots) == list(range(len(classes)))
    for gone in (1, 3):
        table.remove(slots[gone])
        for r in classes[gone].route:
            users[r].discard(classes[gone])
        assert all(table.sharers(r) == len(users[r]) for r in range(5) if r in users)
    again = table.add(classes[1], 1, classes[1].route, math.inf, classes[1].flows, 0.0)
    assert again in (slots[1], slots[3])
    assert table.sharers(1) == 2 and table.sharers(99) == 0 and table.sharers(-1) == 0


_ledger_value = st.one_of(st.just(0.0), st.floats(1e-9, 1e12), st.floats(-1e3, 1e3))


@given(
    st.lists(
        st.tuples(
            st.one_of(st.sets(st.integers(0, 3)), st.lists(st.integers(0, 3)), st.just(range(4))),
            st.sampled_from([0.0, 1e-9, 0.5, 1e3]),
            st.lists(_ledger_value, min_size=4, max_size=4),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_class_tables_ledger_flushes_as_the_python(
    steps: list[tuple[Iterable[int], float, list[float]]],
) -> None:
    """The table's ``flush`` against ``_flush``'s Python over drawn steps (loads zero,
    positive or a negative residue; time standing or moving on; resources given as a set, a
    list with repeats or a range): the same carried bytes, busy times and clocks after every
    step, bit for bit."""
    table = _c_class_table()()
    python, c = FluidNetwork(CountingEnvironment()), FluidNetwork(CountingEnvironment())
    python.c_classes = None
    c.c_classes = table
    for r in range(4):
        python.add_resource(f"r{r}", 1e9)
        c.add_resource(f"r{r}", 1e9)
    now = 0.0
    for resources, dt, loads in steps:
        now += dt
        for net in (python, c):
            net.load_Bps[:] = loads
            net._flush(resources, now)
        table.ledger(c.carried_B, c._since_s, c.busy_s)
        for got, want in [
            (c._since_s, python._since_s),
            (c.carried_B, python.carried_B),
            (c.busy_s, python.busy_s),
        ]:
            assert [x.hex() for x in got] == [x.hex() for x in want]


def test_the_class_tables_ledger_refuses_what_the_python_would_misread() -> None:
    """A resource outside the loads (negative ones too: Python would count those from the
    end), a time that is not a float and ledger lists that disagree are refused."""
    table = _c_class_table()()
    with pytest.raises(IndexError, match="resource 2"):
        table.flush([2], 1.0, [0.0, 0.0])
    with pytest.raises(IndexError, match="resource -1"):
        table.flush([-1], 1.0, [0.0, 0.0])
    not_a_float: Any = 1
    with pytest.raises(TypeError):
        table.flush([0], not_a_float, [0.0, 0.0])
    with pytest.raises(ValueError, match="differ in length"):
        table.ledger([0.0, 0.0], [0.0], [0.0, 0.0])


@pytest.mark.parametrize(("outside_GBps", "fills"), [(70.0, False), (80.0, True)])
def test_the_c_optimistic_solve_leaves_loose_resources_what_the_others_draw(
    outside_GBps: float, fills: bool
) -> None:
    """Two one-flow classes share resource 1 (24 GB/s: 12 GB/s each) and cross loose resource
    0 (100 GB/s), whose load is what classes outside the component draw, the component's
    standing 20 GB/s and 9 GB/s of a class gone since: the new rates draw 24 GB/s of it, which
    fills what the others leave (100 - outside) only where that is 24 or less."""
    load = [(outside_GBps + 20 + 9) * GB, 24 * GB]
    members = [_FlowClass(((0, 1), math.inf), 0), _FlowClass(((1, 0), math.inf), 1)]
    table = _c_class_table()()
    for cls in members:
        cls.flows.append((1.0, cls.order, _Flow(1.0, cls.order, lambda: None, 1.0, 0.0, "x")))
        cls.load_Bps = 10 * GB
        cls.slot = table.add(cls, cls.order, cls.route, cls.cap_Bps, cls.flows, cls.ref_s)
        table.retimed(cls.slot, 0.0, 1.0, cls.load_Bps)
    capacity = [100 * GB, 24 * GB]
    rates, filled = table.solve_without(members, capacity, load, {0}, [(0,)], [9 * GB], False)
    assert (rates, filled) == table.solve_without(
        members, capacity, load, {0}, [(0,)], [9 * GB], True
    )  # with resource 0 at what is left of it: the same rates, the same fill
    assert (rates, filled) == ((None, [0]) if fills else ([12 * GB, 12 * GB], []))


def test_the_class_table_gives_the_same_run_where_components_grow() -> None:
    """Whole runs with the class table in place of the Python, on the instances where
    optimistic solves would fill loose resources: the same completions, rates, clocks, loads,
    peaks, carried bytes, busy times and recomputations at every settle, and the components
    grow alike (the C optimistic solve reports the same filled resources), with the table's
    steps called one by one or as one ``settle``."""
    for capacities, xfers in _grown_component_cases():
        python, python_net = _run_paths(capacities, xfers, fast_paths=True)
        for fused in (True, False):
            twins = Twins(classes=_c_class_table(), fused=fused)
            c, c_net = _run_paths(capacities, xfers, fast_paths=True, twins=twins)
            assert c == python
            _assert_same_run(c_net, python_net)
            assert c_net.grown == python_net.grown > 0


def test_settle_fast_path_with_a_loose_resource_and_its_fallback() -> None:
    """Resource 0 (20 GB/s) carries an uncapped class bottlenecked at 5 GB/s elsewhere, so it is
    loose to a class capped at 3 GB/s: its first four flows settle in closed form (15 GB/s left
    to them), the fifth would fill what is left, so the general path takes it whole; both give
    the general path's floats."""
    capacities = [20 * GB, 100 * GB, 5 * GB]
    xfers = [Xfer((0, 2), 1e9)] + [
        Xfer((0, 1), 64e6, start_s=i * 1e-6, cap_Bps=3 * GB) for i in range(1, 6)
    ]
    fast, fast_net = _run_paths(capacities, xfers, fast_paths=True)
    general, general_net = _run_paths(capacities, xfers, fast_paths=False)
    assert fast == general
    _assert_same_run(fast_net, general_net)
    assert fast_net.alone >= 4 and fast_net.left_to_general >= 1
    # with five flows, the capped class keeps its cap and the uncapped one its 5 GB/s
    five = [classes for _, _, classes, _ in fast_net.states if classes and classes[-1][1] == 5]
    assert five and all([c[2] for c in classes] == [5 * GB, 3 * GB] for classes in five)


class _LoneComparedNetwork(FluidNetwork):
    """A network that counts what became of its lone flows: entered alone, given a class
    before their settle (``early``) or while in flight (``late``), ended alone."""

    def __init__(self, env: CountingEnvironment, fast_paths: bool) -> None:
        super().__init__(env)
        self.fast_paths = fast_paths
        self.entered = self.early = self.late = self.ended = 0

    def _enter_lone(
        self, key: FlowKey, size_B: float, done: simpy.Event | Callable[[], None], label: str
    ) -> None:
        self.entered += 1
        super()._enter_lone(key, size_B, done, label)

    def _materialise(self, lone: _Lone) -> None:
        if self._settle_pending:
            self.early += 1
        else:
            self.late += 1
        super()._materialise(lone)

    def _end_lone(self, lone: _Lone) -> bool:
        ended = super()._end_lone(lone)
        self.ended += ended
        return ended


def _lone_run(
    capacities_Bps: Sequence[float], xfers: Sequence[Xfer], events: Sequence[bool], *, lone: bool
) -> tuple[list[tuple[object, ...]], tuple[object, ...], _LoneComparedNetwork]:
    """Every completion (time, the id of the event or call that saw it, transfer, and the
    network's loads, peaks, carried bytes, busy times, recomputations and flows in flight then)
    and the end state (event ids taken, events, generation, pending wake-up, stats), each
    completion starting a follow-up of its size on its route at its instant; transfer ``i``
    ends through an event where ``events[i]``, else through a call. ``lone``: the lone-flow
    path on, else every closed form off (``fast_paths``)."""
    env = CountingEnvironment()
    net = _LoneComparedNetwork(env, fast_paths=lone)
    for i, cap in enumerate(capacities_Bps):
        net.add_resource(f"r{i}", cap)
    seen: list[tuple[object, ...]] = []

    def done(i: int) -> None:
        seen.append(
            (
                float(env.now),
                env._cur_eid,
                i,
                list(net.load_Bps),
                list(net.peak_load_Bps),
                list(net.carried_B),
                list(net.busy_s),
                net.recomputations,
                net.in_flight(),
            )
        )
        if i < len(xfers):
            start(i + len(xfers), replace(xfers[i], latency_s=0.0))

    def start(i: int, x: Xfer) -> None:
        if events[i % len(xfers)]:
            ev = net.transfer(x.route, x.size_B, x.latency_s, x.cap_Bps)
            ev.callbacks.append(lambda _ev: done(i))
        else:
            net.transfer_then(partial(done, i), x.route, x.size_B, x.latency_s, x.cap_Bps)

    start_each(env, xfers, start)
    run_to_completion(env)
    assert net.in_flight() == 0
    end = (env._ids, env.events_scheduled, net._generation, net._wake_s, net.stats())
    return seen, end, net


_TICK_S = 2.0**-20  # capacities, sizes and times in powers of two: ends and arrivals coincide


@st.composite
def lone_scenarios(draw: st.DrawFn) -> tuple[list[float], list[Xfer], list[bool]]:
    """Few resources and transfers arriving one by one, often on an empty network (lone
    flows), often at the instant another one enters or ends; routes of 0 to 3 resources, some
    crossing one twice (never lone)."""
    n_res = draw(st.integers(1, 4))
    caps = [
        draw(st.one_of(st.sampled_from([2.0**30, 2.0**31, 2.0**33]), st.floats(1 * GB, 900 * GB)))
        for _ in range(n_res)
    ]
    route_of = st.one_of(
        st.lists(st.integers(0, n_res - 1), max_size=3, unique=True).map(tuple),
        st.integers(0, n_res - 1).map(lambda r: (r, r)),
    )
    xfers = []
    for _ in range(draw(st.integers(1, 10))):
        route = draw(route_of)
        size = draw(st.one_of(st.integers(1, 64).map(lambda k: k * 2.0**10), st.floats(1.0, 64e6)))
        start = draw(st.one_of(st.integers(0, 48).map(lambda j: j * _TICK_S), st.floats(0, 1e-4)))
        latency = draw(st.one_of(st.just(0.0), st.integers(1, 8).map(lambda j: j * _TICK_S / 2)))
        cap = draw(st.one_of(st.just(math.inf), st.just(2.0**29), st.floats(0.5 * GB, 500 * GB)))
        if not route and cap == math.inf and draw(st.booleans()):
            cap = 2.0**28  # a route-less flow: at its cap, or at once (uncapped)
        xfers.append(Xfer(route, size, start, latency, cap))
    events = draw(st.lists(st.booleans(), min_size=len(xfers), max_size=len(xfers)))
    return caps, xfers, events


@given(lone_scenarios())
def test_lone_flows_equal_the_general_path(
    scenario: tuple[list[float], list[Xfer], list[bool]],
) -> None:
    """A flow that enters an empty network and stays alone skips its class and settles, and
    one that something joins gets its class then: every completion has the same time, event
    id and order, and the network the same loads, peaks, carried bytes, busy times and
    recomputations then, as on the general path (every closed form off); so do the event ids
    and events in all, the wake-up generation and the stats at the end."""
    caps, xfers, events = scenario
    lone, lone_end, lone_net = _lone_run(caps, xfers, events, lone=True)
    general, general_end, general_net = _lone_run(caps, xfers, events, lone=False)
    assert lone == general
    assert lone_end == general_end
    assert general_net.entered == 0
    assert lone_net.entered == lone_net.early + lone_net.late + lone_net.ended


def test_lone_flows_joined_before_their_settle_in_flight_and_at_their_end() -> None:
    """Lone flows that end alone, that another flow joins at their entry instant (before their
    settle) or in flight, and at the instant they would end (the arrival's timer is older than
    their wake-up, so it runs first), all as on the general path."""
    caps = [2.0**30, 2.0**30]  # 2**10 bytes a tick
    xfers = [
        Xfer((0,), 2.0**10),  # alone, ends alone at tick 1; its follow-up enters alone
        Xfer((1,), 2.0**10, start_s=2 * _TICK_S),  # joins that follow-up as it would end
        Xfer((0, 1), 2.0**12, start_s=4 * _TICK_S),
        Xfer((0,), 2.0**12, start_s=6 * _TICK_S),  # joins a flow in flight
        Xfer((1,), 2.0**10, start_s=64 * _TICK_S),  # two at one instant: joined early
        Xfer((0,), 2.0**10, start_s=64 * _TICK_S),
    ]
    events = [True, False, False, True, False, True]
    lone, lone_end, lone_net = _lone_run(caps, xfers, events, lone=True)
    general, general_end, _ = _lone_run(caps, xfers, events, lone=False)
    assert lone == general and lone_end == general_end
    assert (lone_net.entered, lone_net.early, lone_net.late, lone_net.ended) == (5, 2, 2, 1)
    assert [(t, i) for t, _, i, *_ in lone[:3]] == [
        (_TICK_S, 0),
        (2 * _TICK_S, 6),
        (3 * _TICK_S, 1),
    ]


def _completions_growing(
    capacities_Bps: Sequence[float], xfers: Sequence[Xfer], *, grow: bool
) -> tuple[dict[int, float], int]:
    """Completion time per transfer (each starting one follow-up, as :func:`_run_paths`) and
    how many settles grew their optimistic component, with ``grow_components`` set so."""
    net = FluidNetwork(CountingEnvironment())
    net.grow_components = grow
    seen = _run_with_follow_ups(net, capacities_Bps, xfers, calls=True)
    return {i: t for t, i in seen}, net.grown


@given(st.one_of(crowded_scenarios(), scenarios(max_xfers=24)))
def test_growing_the_optimistic_component_matches_taking_it_whole(
    scenario: tuple[Topology, list[Xfer]],
) -> None:
    """Where an optimistic solve fills a loose resource, growing the component through it
    (instead of re-solving the whole component) gives every transfer the same completion time
    to within float rounding (the classes are solved in another order)."""
    topo, xfers = scenario
    grown, _ = _completions_growing(topo.capacities_Bps, xfers, grow=True)
    whole, n_whole = _completions_growing(topo.capacities_Bps, xfers, grow=False)
    assert n_whole == 0
    assert grown.keys() == whole.keys() == set(range(2 * len(xfers)))
    for i, t in whole.items():
        assert grown[i] == pytest.approx(t, rel=1e-9, abs=1e-15), i


def test_growing_the_optimistic_component_happens() -> None:
    """Resource 0 is loose to the capped class on (0, 1) while an uncapped class on (0, 2) is
    bottlenecked at 5 GB/s; enough capped flows fill it, so a settle grows the component
    through resource 0 (and both ways give the same completions)."""
    capacities = [20 * GB, 100 * GB, 5 * GB, 100 * GB]
    xfers = [Xfer((0, 2), 1e9), Xfer((3,), 1e9)] + [
        Xfer((0, 1), 64e6, start_s=i * 1e-6, cap_Bps=3 * GB) for i in range(1, 8)
    ]
    grown, n_grown = _completions_growing(capacities, xfers, grow=True)
    whole, _ = _completions_growing(capacities, xfers, grow=False)
    assert n_grown >= 1
    for i, t in whole.items():
        assert grown[i] == pytest.approx(t, rel=1e-9, abs=1e-15), i
