"""A fluid bandwidth-sharing network on SimPy.

Resources are directional capacities (one direction of a link, a GPU's HBM). A transfer follows a
precomputed route, waits the route latency, then shares every resource on its route with all
concurrent transfers by max-min fairness. Rates change only when a transfer enters or leaves, so
the network recomputes them then (once per instant, however many transfers change at it) and
reschedules the next completion.

Each flow class (same route, same per-flow cap) keeps a virtual clock: the bytes one of its flows
has received since the class appeared. A flow entering at virtual time V with size S completes when
the clock reaches V + S, so a completion costs a heap pop, not a pass over every flow.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Protocol

import simpy

from gpusim.engine.heap import heappop, heappush
from gpusim.engine.maxmin import max_min_fair_rates
from gpusim.engine.sim import CountingEnvironment
from gpusim.engine.trace import NULL_RECORDER, TraceRecorder, Track
from gpusim.native import c_module

_FINISH_REL_TOL = 1e-12
_HEAP_MIN_CLASSES = 16  # above this many flow classes, find the next completion with a heap
_WAKE_WINDOW_REL = 1e-9
"""How far before its completion time a class may already pass the finish test of
:meth:`FluidNetwork._wake`, relative to its clock's time scale and to the time: the test's own
tolerance (``_FINISH_REL_TOL``) plus the float rounding of the clock and of ``next_s``, both
far below this (see :meth:`_FlowClass.retime`)."""
_SLACK_REL = 1.0 - 1e-9
"""A resource whose flows' caps sum to at most this fraction of its capacity cannot saturate."""

_NOTHING_LOOSE: frozenset[int] = frozenset()
_LOOSE_KEYS_MAX = 4096  # distinct loose sets kept for identity (753 in 16-GPU bench_moe_scaling)

FlowKey = tuple[tuple[int, ...], float]

_C_MODULE = c_module("gpusim.engine._maxmin_c")


@dataclass(slots=True, init=False)
class _Flow:
    finish_vB: float
    seq: int
    done: simpy.Event | Callable[[], None]
    """The event to trigger on the last byte, or the call to make there
    (:meth:`FluidNetwork.transfer_then`)."""
    size_B: float
    entered_s: float
    label: str

    def __init__(
        self,
        finish_vB: float,
        seq: int,
        done: simpy.Event | Callable[[], None],
        size_B: float,
        entered_s: float,
        label: str,
    ) -> None:
        # written out (init=False): mypyc compiles this one, not the one dataclass generates
        self.finish_vB = finish_vB
        self.seq = seq
        self.done = done
        self.size_B = size_B
        self.entered_s = entered_s
        self.label = label


@dataclass(slots=True, init=False, eq=False)
class _FlowClass:
    """The flows with one route and one per-flow cap. It hashes as its key and compares by
    identity (one class per key at a time), so that a set of classes lays out, and iterates,
    as the set of their keys would, without hashing the key tuple again on each lookup.

    Where the network has a class table (:attr:`FluidNetwork.c_classes`), the table keeps the
    class's clock (``rate_Bps``, ``virtual_B``, ``ref_s``), completion times (``next_s``,
    ``check_s``) and standing contribution (``load_Bps``) in place of these fields, which then
    stay as the class was created (``load_Bps`` is set when it leaves):
    :meth:`FluidNetwork._state` reads them either way."""

    key: FlowKey
    order: int
    """When it entered ``FluidNetwork._classes`` (its place in the dict's iteration order)."""
    route: tuple[int, ...]
    """``key[0]``."""
    cap_Bps: float
    """``key[1]``."""
    rate_Bps: float
    virtual_B: float
    """Bytes one of its flows had received at ``ref_s`` (the clock runs at ``rate_Bps`` since:
    :meth:`virtual_at`)."""
    ref_s: float
    next_s: float
    """Absolute time its first flow completes at the current rate."""
    check_s: float
    """No wake-up before this time can finish its first flow (at the current rate and flows):
    a lower bound of ``next_s`` less the finish test's tolerance (:meth:`retime`)."""
    flows: list[tuple[float, int, _Flow]]
    """Heap of (finish virtual bytes, arrival sequence, flow): tuples compare in C."""
    distinct: bool
    """Whether its route crosses each resource once."""
    load_Bps: float
    """What the class adds to each resource on its route in ``FluidNetwork.load_Bps``: its rate
    times its flows as of the last solve that included it."""
    key_hash: int
    """``hash(key)``: what the class hashes as."""
    cut_for: frozenset[int] | None
    """The loose set that ``kept`` and ``crossed`` were cut for (:meth:`FluidNetwork._cut`;
    the network's one frozenset for it)."""
    kept: Sequence[int]
    """Its route without the resources of ``cut_for``."""
    crossed: tuple[int, ...]
    """The resources of ``cut_for`` on its route, in route order (a repeat kept)."""
    slot: int
    """Where ``FluidNetwork.c_classes`` keeps it (-1: not kept there)."""
    changed: bool
    """Set by :meth:`FluidNetwork._retime` for the classes whose flows changed, while it runs."""

    def __hash__(self) -> int:
        return self.key_hash

    def __init__(self, key: FlowKey, order: int, ref_s: float = 0.0) -> None:
        """A class with no flows yet, its clock at 0 bytes from ``ref_s``. (Written out, with
        the dataclass's ``init=False``: mypyc compiles this one, not the one ``dataclass``
        generates.)"""
        self.key = key
        self.order = order
        self.route = route = key[0]
        self.cap_Bps = key[1]
        self.rate_Bps = 0.0
        self.virtual_B = 0.0
        self.ref_s = ref_s
        self.next_s = math.inf
        self.check_s = math.inf
        self.flows = []
        self.distinct = len(set(route)) == len(route)
        self.load_Bps = 0.0
        self.key_hash = hash(key)
        self.cut_for = None
        self.kept = ()
        self.crossed = ()
        self.slot = -1
        self.changed = False

    def virtual_at(self, now: float) -> float:
        """The class's virtual clock at ``now``: bytes one of its flows has received."""
        if now == self.ref_s:
            return self.virtual_B
        return self.virtual_B + self.rate_Bps * (now - self.ref_s)

    def set_rate(self, rate_Bps: float, now: float) -> None:
        """Run the clock at ``rate_Bps`` from ``now`` on."""
        self.virtual_B = self.virtual_at(now)
        self.ref_s = now
        self.rate_Bps = rate_Bps

    def retime(self, now: float) -> None:
        """Set ``next_s`` (when the first flow completes at the current rate) and ``check_s``
        (the earliest time a wake-up could finish it).

        The wake-up finishes the first flow (finish virtual bytes f) at t when
        f <= V(t) (1 + tol) (V: the clock as computed, within 3u V of its exact value, u the
        unit roundoff), or when t + (f - V(t)) / rate rounds to t (the rest is below
        u t). Either way the exact rest f - V(t) is at most (tol + 5u) f + 1.01 u rate t,
        so t >= T - (tol + 5u) f / rate - 1.01 u t, T the exact completion time; ``next_s``
        is within 5u f / rate + u next_s of T. ``_WAKE_WINDOW_REL`` (1e-9) bounds all of that
        (tol = 1e-12, u = 1.1e-16) many times over. A stopped clock (rate 0) never moves,
        so the test gives the same answer at every wake-up: the class stays a candidate.
        """
        rate = self.rate_Bps
        if rate == math.inf:
            self.next_s = self.check_s = now
        elif rate > 0:
            first = self.flows[0][0]
            # virtual_at(now), without the call where the clock was just set (set_rate)
            virtual = self.virtual_B if now == self.ref_s else self.virtual_at(now)
            self.next_s = now + max(first - virtual, 0.0) / rate
            self.check_s = self.next_s - _WAKE_WINDOW_REL * (first / rate + self.next_s)
        else:
            self.next_s = math.inf
            self.check_s = -math.inf


Walk = tuple[list[_FlowClass], list[int], list[_FlowClass], Collection[int]]
"""What :meth:`FluidNetwork._component` returns: the component's classes (in the order they
entered the network: the order the solve takes them), its resources (ascending), the classes
that changed, and the loose resources (each once: a set from the Python walk, a list from the
class table's, which its solve then reads from the table)."""


def _entry_order(cls: _FlowClass) -> int:
    """When ``cls`` entered the network: the sort key of a component's classes."""
    return cls.order


class ClassTable(Protocol):
    """``_maxmin_c.ClassTable``: the network's classes as its settles read them (per class its
    entry order, route, cap, list of flows, clock, standing contribution and completion times; per
    resource the classes crossing it, what ``FluidNetwork._users`` holds, and its ledger), kept
    in C, with the settle's steps over them (:attr:`FluidNetwork.c_classes`)."""

    def add(
        self,
        cls: _FlowClass,
        order: int,
        route: tuple[int, ...],
        cap_Bps: float,
        flows: list[tuple[float, int, _Flow]],
        ref_s: float,
    ) -> int:
        """Register ``cls`` (its entry order, route, per-flow cap and list of flows, whose
        length the table reads as its flows), its clock at 0 bytes from ``ref_s``; returns its
        slot."""

    def remove(self, slot: int) -> float:
        """Drop the class in ``slot``; returns its standing contribution."""

    def rerate(self, slot: int, rate_Bps: float, load_Bps: float, now: float) -> None:
        """The class in ``slot`` runs at ``rate_Bps`` from ``now`` (:meth:`_FlowClass.set_rate`
        where the rate changes), its standing contribution ``load_Bps``, and is re-timed
        (:meth:`_FlowClass.retime`)."""

    def retime(
        self,
        members: list[_FlowClass],
        rates: list[float],
        touched: list[_FlowClass],
        now: float,
        load_Bps: list[float],
    ) -> None:
        """:meth:`FluidNetwork._retime`'s loop over this table's classes."""

    def clock(self, slot: int, now: float) -> tuple[float, float]:
        """The rate of the class in ``slot`` and its clock at ``now``
        (:meth:`_FlowClass.virtual_at`)."""

    def state(self, slot: int) -> tuple[float, float, float, float, float, float]:
        """The class's ``rate_Bps``, ``virtual_B``, ``ref_s``, ``next_s``, ``check_s`` and
        ``load_Bps`` as the table keeps them."""

    def load_of(self, slot: int) -> float:
        """The standing contribution of the class in ``slot``."""

    def sharers(self, r: int) -> int:
        """How many registered classes cross resource ``r``."""

    def retimed(self, slot: int, check_s: float, next_s: float, load_Bps: float) -> None:
        """Set the completion times and standing contribution of the class in ``slot`` (the
        completion index's own step, which :meth:`rerate` and :meth:`retime` take after
        re-timing a class: the tests drive the index with it)."""

    def next_completion(self) -> float:
        """The earliest ``next_s`` of every class (inf where none)."""

    def due(
        self, now: float, classes: dict[FlowKey, _FlowClass], dirty_keys: set[FlowKey]
    ) -> list[_FlowClass]:
        """:meth:`FluidNetwork._candidates` over this table."""

    def flush(self, resources: Iterable[int], now: float, load_Bps: list[float]) -> None:
        """:meth:`FluidNetwork._flush` on a ledger the table keeps."""

    def ledger(self, carried_B: list[float], since_s: list[float], busy_s: list[float]) -> None:
        """The table's ledger written into the network's lists."""

    def peaks(self, resources: Iterable[int], load_Bps: list[float], peak_Bps: list[float]) -> None:
        """:meth:`FluidNetwork._retime_end`'s peaks over this table's classes per resource."""

    def solve_without(
        self,
        members: list[_FlowClass],
        capacity_Bps: list[float],
        load_Bps: list[float],
        loose: Iterable[int],
        gone_routes: list[tuple[int, ...]],
        gone_loads_Bps: list[float],
        with_loose: bool,
    ) -> tuple[list[float] | None, list[int]]:
        """:meth:`FluidNetwork._solve_without` over this table: the rates (``None`` where a
        loose resource would fill) and the loose resources they would fill; with
        ``with_loose``, the solve of :meth:`FluidNetwork._solve_leaving`'s general path (the
        loose resources in the routes at what the classes outside leave of them)."""

    def settle(
        self,
        classes: dict[FlowKey, _FlowClass],
        dirty_keys: set[FlowKey],
        dirty_res: set[int],
        capacity_Bps: list[float],
        load_Bps: list[float],
        room_Bps: list[float],
        uncapped: list[int],
        demand: list[float],
        gone_routes: list[tuple[int, ...]],
        gone_loads_Bps: list[float],
        now: float,
        peak_Bps: list[float],
    ) -> tuple[int, int]:
        """:meth:`FluidNetwork._settle`'s general path in one call (see
        :attr:`FluidNetwork.fused_settle`): returns the solves it made (recomputations) and the
        times it grew the component."""

    def component(
        self,
        classes: dict[FlowKey, _FlowClass],
        dirty_keys: set[FlowKey],
        dirty_res: set[int],
        load_Bps: list[float],
        room_Bps: list[float],
        uncapped: list[int],
        demand: list[float],
        optimistic: bool,
        tight: frozenset[int] | set[int],
    ) -> Walk:
        """:meth:`FluidNetwork._component` over this table (see its docstring)."""


_C_CLASS_TABLE: Callable[[], ClassTable] | None = (
    None if _C_MODULE is None else _C_MODULE.ClassTable
)
"""``_maxmin_c.ClassTable`` where the compiled engine runs; ``None`` where the source runs."""


@dataclass(slots=True, frozen=True)
class _TableCalls:
    """A class table's methods, bound once: mypyc calls a saved bound method of an object it
    does not compile directly, but looks a method up by name at every call (about 500
    instructions, which the settle would pay several times, and once per re-timed class)."""

    add: Callable[
        [_FlowClass, int, tuple[int, ...], float, list[tuple[float, int, _Flow]], float], int
    ]
    remove: Callable[[int], float]
    rerate: Callable[[int, float, float, float], None]
    retime: Callable[[list[_FlowClass], list[float], list[_FlowClass], float, list[float]], None]
    clock: Callable[[int, float], tuple[float, float]]
    state: Callable[[int], tuple[float, float, float, float, float, float]]
    load_of: Callable[[int], float]
    next_completion: Callable[[], float]
    due: Callable[[float, dict[FlowKey, _FlowClass], set[FlowKey]], list[_FlowClass]]
    peaks: Callable[[Iterable[int], list[float], list[float]], None]
    flush: Callable[[Iterable[int], float, list[float]], None]
    ledger: Callable[[list[float], list[float], list[float]], None]
    solve_without: Callable[
        [
            list[_FlowClass],
            list[float],
            list[float],
            Iterable[int],
            list[tuple[int, ...]],
            list[float],
            bool,
        ],
        tuple[list[float] | None, list[int]],
    ]
    component: Callable[
        [
            dict[FlowKey, _FlowClass],
            set[FlowKey],
            set[int],
            list[float],
            list[float],
            list[int],
            list[float],
            bool,
            frozenset[int] | set[int],
        ],
        Walk,
    ]
    settle: Callable[
        [
            dict[FlowKey, _FlowClass],
            set[FlowKey],
            set[int],
            list[float],
            list[float],
            list[float],
            list[int],
            list[float],
            list[tuple[int, ...]],
            list[float],
            float,
            list[float],
        ],
        tuple[int, int],
    ]

    @staticmethod
    def of(table: ClassTable) -> _TableCalls:
        """``table``'s methods."""
        return _TableCalls(
            table.add,
            table.remove,
            table.rerate,
            table.retime,
            table.clock,
            table.state,
            table.load_of,
            table.next_completion,
            table.due,
            table.peaks,
            table.flush,
            table.ledger,
            table.solve_without,
            table.component,
            table.settle,
        )


@dataclass(slots=True, init=False)
class _Lone:
    """A flow that entered an empty network (no class, nothing pending), kept without a class
    while it stays alone (:meth:`FluidNetwork._enter_lone`): what its class and flow would
    hold, to build them the moment anything else enters (:meth:`FluidNetwork._materialise`)."""

    key: FlowKey
    size_B: float
    done: simpy.Event | Callable[[], None]
    label: str
    entered_s: float
    order: int
    seq: int
    rate_Bps: float
    """Its class's rate once settled (:meth:`FluidNetwork._settle_lone`); 0 before."""

    def __init__(
        self,
        key: FlowKey,
        size_B: float,
        done: simpy.Event | Callable[[], None],
        label: str,
        entered_s: float,
        order: int,
        seq: int,
    ) -> None:
        # written out (init=False): mypyc compiles this one, not the one dataclass generates
        self.key = key
        self.size_B = size_B
        self.done = done
        self.label = label
        self.entered_s = entered_s
        self.order = order
        self.seq = seq
        self.rate_Bps = 0.0


@dataclass(frozen=True)
class ResourceStats:
    """What one resource carried over a run."""

    name: str
    capacity_Bps: float
    bytes_carried: float
    peak_load_Bps: float
    busy_s: float


class FluidNetwork:
    """Directional resources shared max-min fairly by fluid transfers."""

    fast_paths = True
    """Settle in closed form where the general path's answer is known to be (a test switches
    them off to compare)."""
    grow_components = True
    """Where an optimistic solve would fill a loose resource, grow the component through that
    resource (still exact max-min; the classes are solved in another order, so the floats may
    differ in the last bits) rather than re-solve the whole component (a test compares)."""
    fused_settle = True
    """With ``fast_paths`` and ``grow_components``, where the class table runs and nothing is
    traced: a settle's general path (walk, solves, growth, re-time) is one call to the table
    (``ClassTable.settle``), the same steps on the same floats as the calls :meth:`_settle`
    makes to :meth:`_component`, :meth:`_solve_leaving` or :meth:`_solve` and :meth:`_retime`,
    which a test compares (and a network that overrides those steps switches it off)."""
    lone_flows = True
    """With ``fast_paths``: a flow that enters an empty network gets no class, component or
    settle of its own until something else enters (:meth:`_enter_lone`); the same floats,
    events and event ids as the general path (a test compares)."""

    def __init__(self, env: CountingEnvironment, recorder: TraceRecorder = NULL_RECORDER) -> None:
        self.env = env
        self.recorder = recorder
        self.names: list[str] = []
        self.capacity_Bps: list[float] = []
        self.carried_B: list[float] = []
        self.load_Bps: list[float] = []
        self.peak_load_Bps: list[float] = []
        self.busy_s: list[float] = []
        self._since_s: list[float] = []
        """Per resource: when ``carried_B`` and ``busy_s`` were last brought up to date (they
        grow at its load between changes of it: :meth:`_flush`)."""
        self._demand: list[float] = []
        """Per resource: the sum of its capped flows' caps (what they could ever draw)."""
        self._uncapped: list[int] = []
        """Per resource: how many of its flows have no cap."""
        self._drawn_Bps: list[float] = []
        """Per resource: scratch for :meth:`_fills` (what the component draws of it)."""
        self._room_Bps: list[float] = []
        """Per resource: its capacity times ``_SLACK_REL`` (the load it saturates at)."""
        self.recomputations = 0
        self._tracks: list[Track] = []
        self._classes: dict[FlowKey, _FlowClass] = {}
        self._entering: dict[
            float, list[tuple[FlowKey, float, simpy.Event | Callable[[], None], str]]
        ] = {}
        self._users: dict[int, set[_FlowClass]] = {}
        """Per resource: the classes crossing it (a set of classes iterates as the set of
        their keys would: :class:`_FlowClass`)."""
        self._dirty_keys: set[FlowKey] = set()
        self._dirty_res: set[int] = set()
        self._gone: list[_FlowClass] = []
        """Classes whose last flow finished since the last settle: their contributions stay in
        ``load_Bps`` until then, so that a seed resource's load tells whether it was saturated
        before the change."""
        self._last_s = 0.0
        self._settle_pending = False
        self._generation = 0
        self._wake_s = math.inf  # when the pending wake-up fires (inf: none pending)
        self._check: list[tuple[float, int, _FlowClass]] = []
        """With many classes: a heap of (``check_s``, seq, class), from which a wake-up takes
        the classes that could finish and :meth:`_reschedule` finds the next completion. An
        entry is stale once its class has been re-timed or has gone (lazy deletion)."""
        self._check_seq = 0
        """The sequence number of the next ``_check`` entry (:meth:`_check_entry`)."""
        self._order = count()
        self._heap_mode = False
        self._seq = count()
        self._filled: set[int] = set()
        """The loose resources the last optimistic solve would fill (:meth:`_fills`)."""
        self.grown = 0
        """Settles whose optimistic component was grown through a resource it would fill."""
        self._loose_keys: dict[frozenset[int], frozenset[int]] = {}
        """One frozenset per loose set seen (:meth:`_solve_without`), so that a class's
        ``cut_for`` is checked by identity."""
        self._lone: _Lone | None = None
        """The flow alone in the network without a class (:meth:`_enter_lone`), if any."""
        self._table: ClassTable | None = None
        self._calls: _TableCalls | None = None
        self.c_classes = None if _C_CLASS_TABLE is None else _C_CLASS_TABLE()

    @property
    def c_classes(self) -> ClassTable | None:
        """The classes' entry orders, routes, caps, flows, clocks, standing contributions and
        completion times, per resource the classes crossing it, in C (``_maxmin_c.ClassTable``),
        whose walk, solves, re-times, peaks and completion index run in place of the Python of
        :meth:`_component`, :meth:`_solve_without`, :meth:`_solve_leaving`, :meth:`_solve`,
        :meth:`_retime`, :meth:`_retime_end`, :meth:`_reschedule` and :meth:`_candidates` (the
        same members, sets and floats; with :attr:`fused_settle`, a settle's general path in
        one call) where the compiled engine runs; ``None`` runs the Python. Kept by
        :meth:`_new_class`, the re-times and :meth:`_wake`, so set (or unset) only before the
        first class."""
        return self._table

    @c_classes.setter
    def c_classes(self, table: ClassTable | None) -> None:
        self._table = table
        self._calls = None if table is None else _TableCalls.of(table)

    def _state(self, cls: _FlowClass) -> tuple[float, float, float, float, float, float]:
        """``cls``'s ``rate_Bps``, ``virtual_B``, ``ref_s``, ``next_s``, ``check_s`` and
        ``load_Bps``: the class table's where there is one, the class's own fields otherwise."""
        calls = self._calls
        if calls is not None:
            return calls.state(cls.slot)
        return (cls.rate_Bps, cls.virtual_B, cls.ref_s, cls.next_s, cls.check_s, cls.load_Bps)

    def add_resource(self, name: str, capacity_Bps: float, group: str = "links") -> int:
        """Register a directional resource; returns its index for routes."""
        if not capacity_Bps > 0:
            raise ValueError(f"resource '{name}' needs a positive capacity, got {capacity_Bps}")
        self.names.append(name)
        self.capacity_Bps.append(float(capacity_Bps))
        self.carried_B.append(0.0)
        self.load_Bps.append(0.0)
        self.peak_load_Bps.append(0.0)
        self.busy_s.append(0.0)
        self._since_s.append(0.0)
        self._demand.append(0.0)
        self._uncapped.append(0)
        self._room_Bps.append(float(capacity_Bps) * _SLACK_REL)
        self._drawn_Bps.append(0.0)
        self._tracks.append(Track(group, name))
        return len(self.names) - 1

    def transfer(
        self,
        route: Sequence[int],
        size_B: float,
        latency_s: float = 0.0,
        max_rate_Bps: float = math.inf,
        label: str = "transfer",
    ) -> simpy.Event:
        """Move ``size_B`` bytes along ``route``; the returned event fires on the last byte.

        ``max_rate_Bps`` caps this flow alone (e.g. a kernel that cannot issue loads faster).
        """
        done = self.env.event()
        self._submit(route, size_B, latency_s, max_rate_Bps, label, done)
        return done

    def transfer_then(
        self,
        on_done: Callable[[], None],
        route: Sequence[int],
        size_B: float,
        latency_s: float = 0.0,
        max_rate_Bps: float = math.inf,
        label: str = "transfer",
    ) -> None:
        """:meth:`transfer`, calling ``on_done()`` where the event's only callback would run
        (``CountingEnvironment.defer``: the same order, mostly without the event)."""
        self._submit(route, size_B, latency_s, max_rate_Bps, label, on_done)

    def _submit(
        self,
        route: Sequence[int],
        size_B: float,
        latency_s: float,
        max_rate_Bps: float,
        label: str,
        done: simpy.Event | Callable[[], None],
    ) -> None:
        if not (size_B >= 0 and latency_s >= 0):  # also rejects NaN
            raise ValueError("transfer size and latency must be non-negative")
        if not max_rate_Bps > 0:  # 0 would never finish; < 0 hangs max_min_fair_rates
            raise ValueError(f"max_rate_Bps must be positive, got {max_rate_Bps}")
        key: FlowKey = (tuple(route), float(max_rate_Bps))
        if latency_s > 0:
            # One timer per distinct entry instant: an all-to-all's thousands of messages with
            # the same latency enter together.
            enter_s = self.env._now + latency_s
            batch = self._entering.get(enter_s)
            if batch is None:
                batch = self._entering[enter_s] = []
                self.env.timeout(latency_s).callbacks.append(lambda _ev: self._enter_batch(enter_s))
            batch.append((key, float(size_B), done, label))
        else:
            self._enter(key, float(size_B), done, label)

    def stats(self) -> list[ResourceStats]:
        """Per-resource totals so far."""
        self._flush(range(len(self.names)), float(self.env._now))
        calls = self._calls
        if calls is not None:  # the ledger is the table's: bring the lists up to date
            calls.ledger(self.carried_B, self._since_s, self.busy_s)
        return [
            ResourceStats(n, c, b, p, s)
            for n, c, b, p, s in zip(
                self.names,
                self.capacity_Bps,
                self.carried_B,
                self.peak_load_Bps,
                self.busy_s,
                strict=True,
            )
        ]

    def in_flight(self) -> int:
        """Transfers currently sharing the network (past their latency, not finished)."""
        return sum(len(c.flows) for c in self._classes.values()) + (self._lone is not None)

    # -- internals -------------------------------------------------------------------------

    def _enter_batch(self, enter_s: float) -> None:
        for key, size_B, done, label in self._entering.pop(enter_s):
            self._enter(key, size_B, done, label)

    def _enter(
        self, key: FlowKey, size_B: float, done: simpy.Event | Callable[[], None], label: str
    ) -> None:
        if size_B == 0:
            self._finish(done, None)
            return
        if self._lone is not None:  # no longer alone: the general path takes it over
            self._materialise(self._lone)
        elif not self._classes and not self._settle_pending and self.fast_paths:
            route = key[0]
            if (
                self.lone_flows
                and not self.recorder.enabled
                and (len(route) < 2 or len(set(route)) == len(route))
            ):
                self._enter_lone(key, size_B, done, label)
                return
        self._last_s = now = float(self.env._now)
        cls = self._classes.get(key)
        if cls is None:
            cls = self._new_class(key, next(self._order), now)
        self._dirty_keys.add(key)
        self._add_demand(cls, 1)
        calls = self._calls
        virtual = cls.virtual_at(now) if calls is None else calls.clock(cls.slot, now)[1]
        flow = _Flow(virtual + size_B, next(self._seq), done, size_B, now, label)
        heappush(cls.flows, (flow.finish_vB, flow.seq, flow))
        self._request_settle()

    def _new_class(self, key: FlowKey, order: int, now: float) -> _FlowClass:
        """A class for ``key``, its clock starting at ``now``, registered on its resources."""
        cls = _FlowClass(key, order, ref_s=now)
        self._classes[key] = cls
        calls = self._calls
        if calls is not None:
            cls.slot = calls.add(cls, order, cls.route, cls.cap_Bps, cls.flows, now)
        for r in cls.route:
            self._users.setdefault(r, set()).add(cls)
        return cls

    def _enter_lone(
        self, key: FlowKey, size_B: float, done: simpy.Event | Callable[[], None], label: str
    ) -> None:
        """:meth:`_enter` into an empty network (no class, no settle pending; a route that
        crosses each resource once): the flow is kept as a :class:`_Lone`, its class's order
        and its flow's sequence number taken as :meth:`_enter` takes them, and its settle
        (:meth:`_settle_lone`) deferred where :meth:`_request_settle` defers the general one
        (its call takes the same event id)."""
        self._last_s = now = float(self.env._now)
        self._lone = _Lone(key, size_B, done, label, now, next(self._order), next(self._seq))
        self._settle_pending = True
        self.env.defer(self._settle_lone)

    def _settle_lone(self) -> None:
        """:meth:`_settle` (:meth:`_settle_alone`, then :meth:`_reschedule`) for a lone flow:
        the same floats (max-min of one class with one flow: its cap or its route's least
        capacity; its clock from 0 at ``entered_s``), loads, peaks, recomputations, generation
        and wake-up. If another flow entered meanwhile (the lone one has its class), the
        general :meth:`_settle`."""
        lone = self._lone
        if lone is None:
            self._settle()
            return
        self._settle_pending = False
        self._last_s = now = float(self.env._now)
        route, share = lone.key
        capacity = self.capacity_Bps
        for r in route:
            if capacity[r] < share:  # capacity / 1 flow, as _settle_alone divides
                share = capacity[r]
        self.recomputations += 1
        self._check.clear()  # _retime_begin with no class: no heap
        self._heap_mode = False
        # With no class, the last settle left every load at 0.0 (_retime_end zeroes a
        # resource's load when its last class leaves): _flush would only move the clocks of
        # the route's resources to now (the class table's ledger does so itself), and their
        # loads become the share.
        load, peak, since = self.load_Bps, self.peak_load_Bps, self._since_s
        calls = self._calls
        if calls is not None:
            calls.flush(route, now, load)
        for r in route:
            if calls is None:
                since[r] = now
            load[r] = share
            if share > peak[r]:
                peak[r] = share
        lone.rate_Bps = share
        # _FlowClass.retime at the entry (clock 0, first flow at size_B), then _reschedule
        next_s = now if share == math.inf else now + max(lone.size_B - 0.0, 0.0) / share
        self._arm_wake(next_s, max(next_s - now, 0.0), self._wake_lone)

    def _wake_lone(self, generation: int) -> None:
        """The wake-up :meth:`_settle_lone` scheduled: :meth:`_end_lone` unless it was
        superseded, or its flow got a class meanwhile (then :meth:`_wake`, as the general path
        scheduled it) or is not done yet (then it gets its class and :meth:`_wake` runs)."""
        if generation != self._generation:
            return  # superseded by a later recomputation
        lone = self._lone
        if lone is not None:
            if self._end_lone(lone):
                return
            self._materialise(lone)
        self._wake(generation)

    def _end_lone(self, lone: _Lone) -> bool:
        """:meth:`_wake` and its settle for a settled lone flow: whether :meth:`_wake`'s finish
        test passes at now; if so the flow is done (resources brought up to now at its load,
        then emptied; the settle's new generation, no wake-up) and its event or call
        triggered. Changes nothing otherwise."""
        now = float(self.env._now)
        rate, size_B, entered_s = lone.rate_Bps, lone.size_B, lone.entered_s
        virtual = 0.0 if now == entered_s else 0.0 + rate * (now - entered_s)
        if not (
            rate == math.inf
            or size_B <= virtual * (1.0 + _FINISH_REL_TOL)
            or (rate > 0 and now + (size_B - virtual) / rate <= now)
        ):
            return False
        self._wake_s = math.inf
        self._last_s = now
        self._lone = None
        route = lone.key[0]
        self._flush(route, now)
        load = self.load_Bps
        for r in route:
            load[r] = 0.0
        self._generation += 1
        self._finish(lone.done, now)
        return True

    def _materialise(self, lone: _Lone) -> None:
        """Give the lone flow the class and flow the general path would hold by now: as
        :meth:`_enter` left them while its settle is pending, as :meth:`_settle_alone` left them
        after (loads, peaks, generation and wake-up are already the general path's)."""
        self._lone = None
        key, entered_s = lone.key, lone.entered_s
        cls = self._new_class(key, lone.order, entered_s)
        self._add_demand(cls, 1)
        flow = _Flow(0.0 + lone.size_B, lone.seq, lone.done, lone.size_B, entered_s, lone.label)
        heappush(cls.flows, (flow.finish_vB, flow.seq, flow))
        if self._settle_pending:
            self._dirty_keys.add(key)
            return
        rate = lone.rate_Bps
        calls = self._calls
        if calls is not None:
            calls.rerate(cls.slot, rate, rate, entered_s)
            return
        cls.load_Bps = rate
        cls.rate_Bps = rate
        cls.retime(entered_s)

    def _add_demand(self, cls: _FlowClass, sign: int) -> None:
        """A flow of ``cls`` entered (``sign`` 1) or left (-1): update what its resources'
        flows could draw at most."""
        # list items are updated as `x[r] = x[r] + y`, not `x[r] += y`, throughout: mypyc
        # compiles the augmented form to a generic in-place add (the same floats either way)
        if cls.cap_Bps == math.inf:
            uncapped = self._uncapped
            for r in cls.route:
                uncapped[r] = uncapped[r] + sign
        else:
            delta = sign * cls.cap_Bps
            demand = self._demand
            for r in cls.route:
                demand[r] = demand[r] + delta

    def _flush(self, resources: Iterable[int], now: float) -> None:
        """Bring each resource's carried bytes and busy time up to ``now`` at its load (before
        its load changes, and for :meth:`stats`): in the class table's ledger where there is
        one (the lists then hold what :meth:`stats` last wrote into them)."""
        calls = self._calls
        if calls is not None:
            calls.flush(resources, now, self.load_Bps)
            return
        load, since, carried, busy = self.load_Bps, self._since_s, self.carried_B, self.busy_s
        for r in resources:
            dt = now - since[r]
            if dt > 0:
                if load[r] > 0:
                    carried[r] = carried[r] + load[r] * dt
                    busy[r] = busy[r] + dt
                since[r] = now

    def _finish(self, done: simpy.Event | Callable[[], None], value: float | None) -> None:
        """A transfer is done: trigger its event with ``value``, or defer its call."""
        if isinstance(done, simpy.Event):
            done.succeed(value)
        else:
            self.env.defer(done)

    def _request_settle(self) -> None:
        if not self._settle_pending:
            self._settle_pending = True
            self.env.defer(self._settle)

    def _component(self, optimistic: bool, tight: frozenset[int] | set[int] = frozenset()) -> Walk:
        """Classes and resources whose rates may have changed: everything connected (through
        shared resources) to a class that gained or lost flows (also returned, as the third
        item). Max-min fairness decomposes over connected components, so the rest keeps its
        rates.

        A resource that cannot saturate (every flow on it capped, the caps together below its
        capacity) limits no rate, so it connects nothing.
        With ``optimistic``, neither does a resource below capacity at the standing rates. Those
        are returned as the fourth item ("loose"): the solve gives the component what the classes
        outside it leave of them, and checks that the new rates leave every loose resource below
        that (:meth:`_solve_leaving`); if one fills, the settle is redone with it in ``tight``
        (resources that connect however loose) or without optimism.
        Exact either way: the classes outside the component share only loose resources with it,
        none of which bottlenecks them before or after, so their rates stand; and a max-min
        solution that satisfies a constraint it ignored is the solution with that constraint.
        A changed class's own slack resource still connects when it was saturated before the
        change (a flow that left may free its sharers).

        The classes come in the order they entered the network (``order``), the resources in
        ascending order: what the walk finds does not depend on the order it goes in, and the
        solve's floats depend on the classes' order, so a canonical one lets any walk (the C
        twin's marks, or a network held elsewhere) give the same floats."""
        calls = self._calls
        if calls is not None:
            return calls.component(
                self._classes,
                self._dirty_keys,
                self._dirty_res,
                self.load_Bps,
                self._room_Bps,
                self._uncapped,
                self._demand,
                optimistic,
                tight,
            )
        classes = self._classes
        touched: set[_FlowClass] = set()
        for k in self._dirty_keys:
            changed = classes.get(k)
            if changed is not None:
                touched.add(changed)
        members = set(touched)  # "taken yet?"
        found = list(touched)
        seeds = set(self._dirty_res)
        for cls in members:
            seeds.update(cls.route)
        load, room_Bps = self.load_Bps, self._room_Bps
        uncapped, demand, users = self._uncapped, self._demand, self._users
        stack = list(seeds)
        resources: set[int] = set()
        loose: set[int] = set()
        # methods called directly, not through saved bound methods: mypyc compiles the direct
        # calls natively, a saved one as a generic call
        while stack:
            r = stack.pop()
            if r in resources:
                continue
            resources.add(r)
            room = room_Bps[r]
            below = load[r] < room
            if not uncapped[r] and demand[r] <= room and (below or r not in seeds):
                continue  # cannot saturate: its capacity is never in question
            sharers = users.get(r)
            if sharers is None:
                continue  # no class crosses it
            if optimistic and below and len(sharers) > 1 and r not in tight:
                loose.add(r)
                continue
            for cls in sharers:
                if cls not in members:
                    members.add(cls)
                    found.append(cls)
                    stack.extend(cls.route)
        found.sort(key=_entry_order)
        return found, sorted(resources), list(touched), loose

    def _settle(self) -> None:
        """Re-solve the rates after transfers entered or left at this instant: advance the
        clocks, solve max-min over the component that changed (:meth:`_solve`), re-time its
        classes and move their loads (:meth:`_retime`), and (re)schedule the wake-up at the next
        completion (:meth:`_reschedule`). This runs twice per transfer and every call shows in
        the run time, so the component is first taken optimistically (:meth:`_component`)
        and grown through a loose resource that would fill (or, without ``grow_components``,
        taken whole). It runs where an event triggered
        at the first change of the instant would (``CountingEnvironment.defer``), so every
        change of the instant that comes before that event is in it."""
        self._settle_pending = False
        self._last_s = float(self.env._now)
        if (
            self.fast_paths
            and len(self._dirty_keys) == 1
            and not self._dirty_res
            and self._settle_alone()
        ):
            return
        calls = self._calls
        if (
            calls is not None
            and self.fused_settle
            and self.fast_paths
            and self.grow_components
            and not self.recorder.enabled
        ):
            gone = self._gone
            solves, grown = calls.settle(
                self._classes,
                self._dirty_keys,
                self._dirty_res,
                self.capacity_Bps,
                self.load_Bps,
                self._room_Bps,
                self._uncapped,
                self._demand,
                [c.route for c in gone],
                [c.load_Bps for c in gone],
                self._last_s,
                self.peak_load_Bps,
            )
            self.recomputations += solves
            self.grown += grown
            gone.clear()
            self._dirty_keys.clear()
            self._dirty_res.clear()
            self._reschedule(False)
            return
        classes, resources, touched, loose = self._component(optimistic=True)
        self._filled.clear()
        rates = self._solve_leaving(classes, loose) if loose else self._solve(classes)
        tight: set[int] = set()
        while rates is None:  # a loose resource would fill
            if not self.grow_components:  # take the component whole
                classes, resources, touched, _ = self._component(optimistic=False)
                rates = self._solve(classes)
                break
            # grow it through the resources that would fill, the others still loose: at 16
            # GPUs the whole component is ~140 classes, the grown one a few tens
            self.grown += 1
            tight |= self._filled
            self._filled.clear()
            classes, resources, touched, loose = self._component(True, tight)
            rates = self._solve_leaving(classes, loose) if loose else self._solve(classes)
        self._dirty_keys.clear()
        self._dirty_res.clear()
        self._reschedule(self._retime(classes, rates, resources, touched))

    def _settle_alone(self) -> bool:
        """:meth:`_settle` when one class changed, nothing left, and its optimistic component is
        that class alone (the common case: a capped class whose resources are loose or its own):
        the same floats as :meth:`_component`, :meth:`_solve_leaving` and :meth:`_solve` would
        compute, without their sets and dicts. Returns ``False``, having changed nothing, when
        the component is larger or a loose resource would fill (the general path decides)."""
        (key,) = self._dirty_keys
        cls = self._classes.get(key)
        if cls is None or not cls.distinct:
            return False
        capacity, load, uncapped, demand, users = (
            self.capacity_Bps,
            self.load_Bps,
            self._uncapped,
            self._demand,
            self._users,
        )
        n_flows = float(len(cls.flows))  # a float: mypyc divides natively (the same floats)
        calls = self._calls
        own_Bps = cls.load_Bps if calls is None else calls.load_of(cls.slot)
        share = cls.cap_Bps
        left: list[float] = []  # per loose resource: what the classes outside leave of it
        saturates_Bps = self._room_Bps
        for r in cls.route:
            room = saturates_Bps[r]
            if load[r] < room:
                if (uncapped[r] or demand[r] > room) and len(users[r]) > 1:  # loose
                    room_Bps = capacity[r] - (load[r] - own_Bps)
                    left.append(room_Bps)
                    c = max(room_Bps, 0.0)
                else:
                    c = capacity[r]
            elif len(users[r]) > 1:
                return False  # saturated and shared: the component is larger
            else:
                c = capacity[r]
            if c / n_flows < share:
                share = c / n_flows
        drawn = share * n_flows
        if drawn > 0:
            for room_Bps in left:
                if drawn >= room_Bps * _SLACK_REL:
                    return False
        self.recomputations += 1
        self._dirty_keys.clear()
        # what _retime does for this one class, with its route as the resources
        route = cls.route
        heap_mode = self._retime_begin(route)
        now = self._last_s
        contribution = share * n_flows
        if contribution != own_Bps:
            delta = contribution - own_Bps
            for r in route:
                load[r] = load[r] + delta
        if calls is not None:
            calls.rerate(cls.slot, share, contribution, now)
        else:
            cls.load_Bps = contribution
            if share != cls.rate_Bps:
                cls.set_rate(share, now)
            cls.retime(now)
            if heap_mode:
                heappush(self._check, self._check_entry(cls))
        if self.recorder.enabled:  # the component's resources, as _component gives them
            self._retime_end(sorted(route), now)
        else:
            self._retime_end(route, now)
        self._reschedule(heap_mode)
        return True

    def _solve_leaving(
        self, classes: list[_FlowClass], loose: Collection[int]
    ) -> list[float] | None:
        """Max-min rates of the component ``classes`` on what the classes outside it leave of the
        ``loose`` resources (their load less the standing contributions of the component and of
        the classes gone since the last settle); ``None`` when the new rates fill what a loose
        resource that can saturate has left (the optimistic component was too small).

        With several classes (and ``fast_paths``) the loose resources are left out of the
        solve and only checked after (:meth:`_solve_without`): the same rates, and the same
        ``None``, as the solve with them. Not the same ``_filled``, though: a loose resource
        that sets a level in the solve with them holds other loose resources below theirs, so
        the solve without them can fill more. With ``grow_components`` the component grows
        through ``_filled``, and growing it through other resources would flush, solve and
        retime other classes (the same rates, but carried bytes and loads added up in other
        steps, so not the same floats); so a failed solve without them is redone with them,
        counted as the one solve the general path makes."""
        if not loose:
            return self._solve(classes)
        capacity, load = self.capacity_Bps, self.load_Bps
        if self.fast_paths and len(classes) > 1:
            rates = self._solve_without(classes, loose)
            if rates is not None or not self.grow_components:
                return rates
            self._filled.clear()
            self.recomputations -= 1
        calls = self._calls
        if calls is not None:  # the same solve and check, in C
            self.recomputations += bool(classes)  # as _solve counts
            return self._table_solve(calls, classes, loose, True)
        outside = {r: load[r] for r in loose}
        for cls in (*classes, *self._gone):
            for r in cls.route:
                if r in outside:
                    outside[r] = outside[r] - cls.load_Bps
        saved = {r: capacity[r] for r in loose}
        for r, drawn in outside.items():
            capacity[r] = max(saved[r] - drawn, 0.0)
        try:
            rates = self._solve(classes)
        finally:
            for r, c in saved.items():
                capacity[r] = c
        routes_in: list[Sequence[int]] = [[r for r in c.route if r in outside] for c in classes]
        drawn_Bps = [rate * len(c.flows) for c, rate in zip(classes, rates, strict=True)]
        return None if self._fills(routes_in, drawn_Bps, outside) else rates

    def _fills(
        self, crossed: list[Sequence[int]], drawn_Bps: list[float], outside: dict[int, float]
    ) -> bool:
        """Whether the classes that cross a loose resource, at their new rates (in the
        component's order: ``crossed``, the loose resources each route crosses, in route order,
        and ``drawn_Bps``, each one's rate times its flows), draw at least what the classes
        ``outside`` the component leave (``capacity - outside``) of a loose resource; those it
        would fill go into ``_filled``."""
        drawn_now = self._drawn_Bps
        for r in outside:
            drawn_now[r] = 0.0
        for i in range(len(crossed)):
            d = drawn_Bps[i]
            for r in crossed[i]:
                drawn_now[r] = drawn_now[r] + d
        capacity = self.capacity_Bps
        filled = self._filled
        for r, left_Bps in outside.items():
            d = drawn_now[r]
            if d > 0 and d >= (capacity[r] - left_Bps) * _SLACK_REL:
                filled.add(r)
        return bool(filled)

    @staticmethod
    def _cut(cls: _FlowClass, loose_key: frozenset[int]) -> None:
        """Set ``cls.kept`` and ``cls.crossed`` for the loose resources ``loose_key``; callers
        skip a class already cut for them (consecutive optimistic solves mostly leave the same
        resources out)."""
        cls.cut_for = loose_key
        route = cls.route
        if loose_key.isdisjoint(route):
            cls.kept = route
            cls.crossed = ()
        else:
            cls.kept = [r for r in route if r not in loose_key]
            cls.crossed = tuple([r for r in route if r in loose_key])

    def _solve_without(
        self, classes: list[_FlowClass], loose: Collection[int]
    ) -> list[float] | None:
        """:meth:`_solve_leaving` of several classes, with the ``loose`` resources left out of
        their routes (most of what an optimistic solve's routes cross: the solver's work
        shrinks with them) and only checked after (against what the classes outside the
        component leave of them: their loads less the component's and the gone classes'
        contributions).

        Whenever the check passes (no loose resource filled), these are the floats of the
        solve with the loose resources at what is left of them: a loose resource that never
        sets a filling level changes no round (its share stays above the level; the one
        difference, the last round's "every resource saturated" shortcut, gives the same
        rates as fixing the saturated resources' classes); one that sets a level saturates,
        its flows then draw what is left of it to within rounding (1e-12), so that solve fails
        the check, and so does this one (a relaxed max-min solution that met the loose
        constraints would be the constrained one, filling it). What is left is positive (a
        loose resource is below capacity), so no loose resource stops its flows at rate 0.
        The contributions come off each loose resource in the general path's order."""
        calls = self._calls
        if calls is not None:
            self.recomputations += 1
            return self._table_solve(calls, classes, loose, False)
        load = self.load_Bps
        outside = {r: load[r] for r in loose}
        routes: list[Sequence[int]] = []
        counts: list[int] = []
        caps_Bps: list[float] = []
        crossing: list[int] = []  # the classes that cross a loose resource
        loose_key = frozenset(loose)
        loose_keys = self._loose_keys
        if len(loose_keys) > _LOOSE_KEYS_MAX:
            loose_keys.clear()  # the classes cut for those are cut again: slower, still exact
        loose_key = loose_keys.setdefault(loose_key, loose_key)
        for i, cls in enumerate(classes):
            if cls.cut_for is not loose_key:
                self._cut(cls, loose_key)
            routes.append(cls.kept)
            counts.append(len(cls.flows))
            caps_Bps.append(cls.cap_Bps)
            crossed = cls.crossed
            if crossed:
                crossing.append(i)
                own_Bps = cls.load_Bps
                for r in crossed:
                    outside[r] = outside[r] - own_Bps
        for cls in self._gone:
            for r in cls.route:
                if r in outside:
                    outside[r] = outside[r] - cls.load_Bps
        self.recomputations += 1
        rates = max_min_fair_rates(routes, counts, caps_Bps, self.capacity_Bps)
        routes_in: list[Sequence[int]] = [classes[i].crossed for i in crossing]
        drawn_Bps = [rates[i] * counts[i] for i in crossing]
        if self._fills(routes_in, drawn_Bps, outside):
            return None
        return rates

    def _table_solve(
        self,
        calls: _TableCalls,
        classes: list[_FlowClass],
        loose: Iterable[int],
        with_loose: bool,
    ) -> list[float] | None:
        """The class table's solve of ``classes`` (``ClassTable.solve_without``: the loose
        resources left out, or with ``with_loose`` kept at what the classes outside and those
        gone since the last settle leave of them); the loose resources the rates would fill go
        into ``_filled``, and the rates are ``None`` where any would."""
        gone = self._gone
        rates, filled = calls.solve_without(
            classes,
            self.capacity_Bps,
            self.load_Bps,
            loose,
            [c.route for c in gone],
            [c.load_Bps for c in gone],
            with_loose,
        )
        self._filled.update(filled)
        return rates

    def _solve(self, classes: list[_FlowClass]) -> list[float]:
        """Max-min rates of ``classes`` (one connected component); a lone class inline."""
        capacity = self.capacity_Bps
        if len(classes) == 1 and classes[0].distinct:  # alone: the closed form, inline
            only = classes[0]
            share = only.cap_Bps
            n_flows = float(len(only.flows))
            for r in only.route:
                if capacity[r] / n_flows < share:
                    share = capacity[r] / n_flows
            self.recomputations += 1
            return [share]
        if classes:
            self.recomputations += 1
            calls = self._calls
            if calls is not None:  # its optimistic solve with nothing loose: this solve
                rates = self._table_solve(calls, classes, _NOTHING_LOOSE, False)
                assert rates is not None  # nothing loose to fill
                return rates
            return max_min_fair_rates(
                [c.route for c in classes],
                [len(c.flows) for c in classes],
                [c.cap_Bps for c in classes],
                capacity,
            )
        return []

    def _retime(
        self,
        classes: list[_FlowClass],
        rates: list[float],
        resources: list[int],
        touched: list[_FlowClass],
    ) -> bool:
        """Give each class its new rate and the time its first flow completes at it (unchanged
        when neither its flows nor its rate changed), move its contribution on the loads of its
        resources, then update the peak and (when tracing) utilisation of
        ``resources``. Returns whether completions are indexed by the ``_check`` heap (many
        classes, no class table) rather than found by a scan (few) or by the class table."""
        heap_mode = self._retime_begin(resources)
        load = self.load_Bps
        now = self._last_s
        calls = self._calls
        if calls is not None:  # the same loop over the table's clocks, in C
            calls.retime(classes, rates, touched, now, load)
            self._retime_end(resources, now)
            return heap_mode
        for cls in touched:  # a flag rather than a set lookup per class below
            cls.changed = True
        for i, cls in enumerate(classes):  # by index: mypyc types a zip's items as objects
            rate = rates[i]
            contribution = rate * float(len(cls.flows))
            if contribution != cls.load_Bps:
                delta = contribution - cls.load_Bps
                for r in cls.route:
                    load[r] = load[r] + delta
                cls.load_Bps = contribution
            if rate == cls.rate_Bps and not cls.changed:
                continue  # same flows at the same rate: its completion time stands
            cls.changed = False  # (every touched class is a member, so every flag is cleared)
            if rate != cls.rate_Bps:
                cls.set_rate(rate, now)
            cls.retime(now)
            if heap_mode:
                heappush(self._check, self._check_entry(cls))
        self._retime_end(resources, now)
        return heap_mode

    def _retime_begin(self, resources: Iterable[int]) -> bool:
        """:meth:`_retime`'s start: keep the ``_check`` heap (indexing every class when entering
        heap mode or when mostly stale), bring ``resources`` up to now at their old loads, and
        take off the loads of the classes gone since the last settle. Returns the heap mode
        (never with the class table: it indexes the completions)."""
        # with the class table, it indexes the completions (the heap stays empty)
        heap_mode = self._calls is None and len(self._classes) > _HEAP_MIN_CLASSES
        if heap_mode and (
            not self._heap_mode or len(self._check) > 2 * len(self._classes) + 64
        ):  # entering heap mode, or mostly stale entries: index every class once
            self._check = [
                self._check_entry(c) for c in self._classes.values() if c.check_s < math.inf
            ]
            heapq.heapify(self._check)
        elif not heap_mode:
            self._check.clear()
        self._heap_mode = heap_mode
        self._flush(resources, self._last_s)
        if self._gone:
            load = self.load_Bps
            for cls in self._gone:
                for r in cls.route:
                    load[r] = load[r] - cls.load_Bps
            self._gone.clear()
        return heap_mode

    def _check_entry(self, cls: _FlowClass) -> tuple[float, int, _FlowClass]:
        """The ``_check`` heap's entry for ``cls`` as of now: its ``check_s``, then the next
        sequence number (a plain counter rather than ``itertools.count``: mypyc calls ``next``
        through the builtins module)."""
        seq = self._check_seq
        self._check_seq = seq + 1
        return (cls.check_s, seq, cls)

    def _retime_end(self, resources: Iterable[int], now: float) -> None:
        """:meth:`_retime`'s end: the peak loads of ``resources`` (a load with no flows left is
        zeroed, rounding residue included) and, when tracing, their utilisation."""
        load, peak, users = self.load_Bps, self.peak_load_Bps, self._users
        calls = self._calls
        if calls is not None:
            calls.peaks(resources, load, peak)
        else:
            for r in resources:
                if not users.get(r):
                    load[r] = 0.0  # no flows left: no rounding residue either
                elif load[r] > peak[r]:
                    peak[r] = load[r]
        if self.recorder.enabled:
            capacity = self.capacity_Bps
            for r in resources:
                self.recorder.counter(self._tracks[r], "utilisation", now, load[r] / capacity[r])

    def _reschedule(self, heap_mode: bool) -> None:
        """Wake up at the earliest completion over every class, unless the pending wake-up
        already fires then; a new wake-up supersedes the pending one (the generation counter
        makes the old one a no-op)."""
        now = self._last_s
        calls = self._calls
        if calls is not None:
            next_s = calls.next_completion()
        elif heap_mode:
            # earliest completion from the heap of (check_s, seq, class): a class completes no
            # earlier than its check_s, so only entries below the best next_s so far can hold a
            # better one, and those form the top of the heap (a parent's key is at most its
            # children's)
            heap = self._check
            while heap and (heap[0][2].check_s != heap[0][0] or not heap[0][2].flows):
                heappop(heap)
            next_s = math.inf
            size = len(heap)
            stack = [0] if heap else []
            while stack:
                i = stack.pop()
                key, _, cls = heap[i]
                if key >= next_s:
                    continue  # nor can any entry below it
                if cls.check_s == key and cls.flows and cls.next_s < next_s:
                    next_s = cls.next_s
                i = 2 * i + 1
                if i < size:
                    stack.append(i)
                    if i + 1 < size:
                        stack.append(i + 1)
        else:  # few classes: a scan is cheaper than keeping a heap
            next_s = math.inf
            for c in self._classes.values():
                if c.next_s < next_s:
                    next_s = c.next_s
        delay = max(next_s - now, 0.0)
        if next_s < math.inf and self.env._now + delay == self._wake_s:
            return  # the pending wake-up already fires then
        self._arm_wake(next_s, delay, self._wake)

    def _arm_wake(self, next_s: float, delay: float, wake: Callable[[int], None]) -> None:
        """Supersede the pending wake-up (a new generation) and, where a completion is due
        (``next_s`` finite), schedule ``wake(generation)`` ``delay`` from now."""
        self._generation += 1
        self._wake_s = math.inf
        if next_s < math.inf:
            generation = self._generation
            self._wake_s = self.env._now + delay
            self.env.timeout(delay).callbacks.append(lambda _ev: wake(generation))

    def _candidates(self, now: float) -> list[_FlowClass]:
        """The classes a wake-up at ``now`` must test, in the order of ``_classes`` (the order
        their flows finish, so their events fire, in): those whose ``check_s`` has come and
        those whose flows changed since the last settle (their times are not yet brought up to
        date); with few classes found by a scan, with many (the ``_check`` heap) taken off the
        heap. Every class that can finish a flow at ``now`` is among them
        (:meth:`_FlowClass.retime`); the others finish nothing, so leaving them out changes
        nothing. With the class table, it finds them."""
        calls = self._calls
        if calls is not None:
            return calls.due(now, self._classes, self._dirty_keys)
        if not self._heap_mode:
            dirty = self._dirty_keys
            return [c for c in self._classes.values() if c.check_s <= now or c.key in dirty]
        check = self._check
        picked: dict[int, _FlowClass] = {}
        while check and check[0][0] <= now:
            check_s, _, cls = heappop(check)
            if cls.check_s == check_s and cls.flows:
                picked[cls.order] = cls
        classes = self._classes
        for key in self._dirty_keys:
            changed = classes.get(key)
            if changed is not None:
                picked[changed.order] = changed
        return [picked[order] for order in sorted(picked)]

    def _wake(self, generation: int) -> None:
        if generation != self._generation:
            return  # superseded by a later recomputation
        self._wake_s = math.inf
        self._last_s = now = float(self.env._now)
        finished: list[tuple[_Flow, tuple[int, ...]]] = []
        candidates = self._candidates(now)
        calls = self._calls
        for cls in candidates:
            key = cls.key
            flows = cls.flows
            if calls is None:
                rate = cls.rate_Bps
                virtual = cls.virtual_at(now)
            else:
                rate, virtual = calls.clock(cls.slot, now)
            limit = virtual * (1.0 + _FINISH_REL_TOL)
            # Also finish a flow whose rest takes less than the clock resolves at `now`: its
            # wake-up would land at `now` again, forever.
            while flows and (
                rate == math.inf
                or flows[0][0] <= limit
                or (rate > 0 and now + (flows[0][0] - virtual) / rate <= now)
            ):
                finished.append((heappop(flows)[2], cls.route))
                self._dirty_keys.add(key)
                self._add_demand(cls, -1)
            if not flows:
                del self._classes[key]
                cls.next_s = cls.check_s = math.inf  # its heap entries are stale now
                self._dirty_res.update(cls.route)
                self._gone.append(cls)  # its load goes at the next settle
                if calls is not None:  # the table's contribution, for the settle to take off
                    cls.load_Bps = calls.remove(cls.slot)
                for r in cls.route:
                    users = self._users[r]
                    users.discard(cls)
                    if not users:  # no flows left: no rounding residue either
                        self._demand[r] = 0.0
        if self._heap_mode:  # candidates that did not finish stay candidates
            check = self._check
            for cls in candidates:
                if cls.flows and cls.check_s <= now:
                    heappush(check, self._check_entry(cls))
        for flow, route in finished:
            if self.recorder.enabled:
                args = {"bytes": flow.size_B}
                for r in route:
                    self.recorder.async_slice(
                        self._tracks[r], flow.label, flow.entered_s, now, args
                    )
            self._finish(flow.done, now)
        if not self._settle_pending:  # re-solve now; flows entering at this instant coalesce
            self._settle()
