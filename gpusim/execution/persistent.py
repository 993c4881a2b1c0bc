"""The device-driven execution path: one persistent kernel per GPU whose own scheduler hands tile
tasks to its blocks, and whose blocks move data with SM-issued transfers and flags.

The model follows FlashMoE's actor design (flashmoe.md sections 2-5) but knows nothing of MoE:
a workload describes task groups, their durations and what finishing a task creates.

Grid
    The kernel launches ``blocks = blocks_per_sm x SMs`` blocks, ``blocks_per_sm`` being the
    occupancy of the block resources (threads, registers, shared memory, declared or measured
    by ptxas: :class:`gpusim.spec.resources.KernelResources`,
    :func:`gpusim.hardware.occupancy.occupancy_of`) capped by the strategy's own limit. One "OS"
    block runs the scheduler (one warp) and the subscriber (three warps); the other
    ``P = blocks - 1`` blocks are processors (:class:`PersistentGrid`).

Holding SMs versus using them
    The kernel takes every SM it occupies from the GPU's pool when it starts and gives them back
    when it ends, so for the rest of the system the GPU is fully busy for the kernel's whole
    duration (``GPURuntime.busy_sm_s`` counts them as busy). That is *holding*. Most of that time
    a processor block may be spinning on its doorbell: held, not used. What the kernel *uses* is
    the time its blocks spend executing work (tasks, and whatever work the workload records with
    :meth:`PersistentKernel.add_busy`): :attr:`PersistentKernel.busy_block_s`. A utilisation
    figure of a persistent kernel (FlashMoE's "SM utilisation") must be the used fraction,
    ``busy block-seconds / (blocks x duration)`` (:meth:`PersistentKernel.utilisation`), not the
    held one, which is 1 by construction.

Scheduler (one warp, first come first served)
    Ready task groups wait in one FIFO; idle processors are interchangeable. Each assignment
    costs the scheduler ``scheduler_s_per_task`` of serial time, and the processor starts the
    task ``task_latency_s`` after the assignment completes (doorbell seen, descriptor fetched).
    The scheduler is modelled in virtual time: it keeps the instant it will next be free, and an
    assignment made at ``now`` completes at ``max(now, free, task ready) +
    scheduler_s_per_task``. Because tasks are served in ready order and processors are
    identical, this is the first-come-first-served outcome without an event per assignment; at
    high task rates the assignments queue behind one another, so the scheduler's throughput cap
    (``1 / scheduler_s_per_task`` tasks per second) emerges. (FlashMoE's scheduler sweeps its
    queues and assigns each sweep's tasks in queue order before sweeping again: FIFO at sweep
    granularity.)

Subscriber (three warps, modelled as one serial server)
    A packet or flag that arrives is decoded into tasks at ``subscriber_s_per_task`` per task
    created, one packet after another; its tasks become ready together when its decode ends
    (FlashMoE bumps the queue head once per decoded packet). The group enters the scheduler's
    FIFO at arrival, stamped with that ready time, so no event is spent on the decode; a task
    made ready by other means during the decode (nanoseconds) queues behind it. Flags arriving at
    the same instant are decoded in arrival-event order. A flag in flight to the subscriber
    (:meth:`PersistentKernel.deliver_later`, e.g. FlashMoE's GEMM1 results) costs no event while
    every processor is busy: it is held in the subscriber's virtual clock under the key its
    event would have had and decoded before the next thing that touches the kernel after that
    key; when a processor idles, held flags become their events again.

Tasks
    A task group holds ``count`` tasks of one kind with the same duration model: ``compute_s``
    (a wait), then optionally a transfer (``flow_B`` bytes over ``flow_route`` after
    ``flow_latency_s``, capped at ``flow_cap_Bps``), through :class:`FlowGate`. Finishing a task
    calls the group's ``on_done(group, first, count)``, which may submit new groups (the DAG).
    Events: one per task without a transfer, two with one (compute end, transfer end) and one for
    a transfer-only task; no per-cycle events.

Batched tasks (``task_batch`` > 1)
    The scheduler may hand a processor ``k`` consecutive tasks of the group at the head of the
    FIFO as one event whose duration is the sum of the tasks' durations: ``k x compute_s +
    (k - 1) x task_latency_s`` (each task after the first still pays its start latency), then one
    transfer of ``k x flow_B`` bytes after ``k x flow_latency_s``. The scheduler spends
    ``scheduler_s_per_task`` on the batch's first task before it starts and the other
    ``(k - 1) x scheduler_s_per_task`` when it ends (where, in the per-task run, those
    assignments would be spread over the batch; charging them up front would make every
    processor that frees at once queue for ``k`` assignments each), so its throughput cap is
    unchanged. What keeps the two modes close is the batch size: a batch commits work to one
    processor that, per task, other processors freeing up later would have shared, and it
    delays the successors its tasks enable (a row tile's GEMM1 tasks, a returned tile's combine)
    to its end. So ``k = min(task_batch, tasks left in the group, floor(W / (2 P w)))`` with
    ``W`` the uncontended work of every ready task, ``w`` one task's and ``P`` the processors: a
    batch never exceeds half of one processor's share of the current backlog, and while the
    backlog is under two tasks' work per processor, tasks go one by one (the per-task
    behaviour). Counting work, not tasks, keeps a backlog of short tasks (combines) from
    licensing batches of long ones (GEMMs).

    Tolerance (FlashMoE forward latency, batched with ``task_batch`` = 8 against per-task,
    measured on 2-4 GPUs with 8K-16K tokens per GPU, E = 8-64, H, I = 1-4K): within 5 % (the
    measured spread is -1.7 % to +3.4 %; ``tests/test_flashmoe.py`` checks a 2-GPU case).
    Exception: when GEMM1 result writes oversubscribe NVLink ingress ports in turn (8 GPUs,
    uniform routing: every GPU computes the same source's row tiles at the same time, see
    ``gpusim.workloads.moe.flashmoe``), the order perturbation of batching spreads the writes
    over more ports and the batched run is up to about 12 % faster; use ``task_batch`` = 1 there.

Transfers (:class:`FlowGate`)
    Every transfer a block issues has a rate cap (one block's streaming rate, or a superblock's).
    When, on every resource of its route, the caps of all gated transfers in flight (the new one
    included) sum to at most the resource's capacity, no resource on the route can saturate and
    max-min fairness gives the transfer exactly its cap (the sums count transfers still in their
    latency too, which only makes the test conservative): it is then timed in closed form
    (``latency + bytes / cap``) with one event, without a rate recomputation of the fluid
    network. When a resource would be over-subscribed, every gated transfer crossing it moves
    into the fluid network with its remaining bytes, and the fluid network shares it max-min
    fairly from then on. This is exact, not an approximation, as long as all traffic on those
    resources goes through the gate (true for a persistent kernel that holds every SM of its GPUs
    and is the only traffic on their links); transfers of other models on the same resources
    would not be seen by the gate's sums.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import Any

import simpy
from simpy.events import NORMAL, EventCallbacks

from gpusim.engine.fluid import FluidNetwork
from gpusim.engine.heap import heappop, heappush
from gpusim.engine.sim import TriggeredEvent
from gpusim.hardware.gpu import GPURuntime
from gpusim.hardware.occupancy import Occupancy, occupancy_of
from gpusim.hardware.rates import GPURates
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.resources import KernelResources
from gpusim.units import ns_to_s, us_to_s

_OVERSUBSCRIBE_REL_TOL = 1e-9
"""Cap sums this close above a capacity count as fitting (sums of equal shares round up)."""

Payload = Any
Callback = Callable[[Payload], None]


class BypassedTransfer(TriggeredEvent):
    """A transfer timed in closed form, and the event of its end: ``env.timeout(delay_s)`` with
    one callback. Like a timeout it is triggered when it is made (``Event.__init__`` would make
    it pending) and ``env.schedule(rec, NORMAL, delay_s)`` gives it a timeout's key (``now +
    delay_s`` and the next id), so the order of events is the timeout's. ``FlowGate.send``
    builds one per closed-form transfer (no ``env``: the loop does not read it) and sets
    ``callbacks`` and every field below."""

    route: tuple[int, ...]
    size_B: float
    cap_Bps: float
    enter_s: float
    """When the bytes start to move (the send's time plus its latency)."""
    callback: Callback
    payload: Payload
    alive: bool
    """False once it has ended or moved into the fluid network (its event is then ignored)."""


class TaskBatch(TriggeredEvent):
    """Tasks ``first .. first + k - 1`` of ``group`` running on one processor since
    ``start_s``: the payload of their transfer and, where they compute, the event of their
    compute's end (triggered when made, as :class:`BypassedTransfer` is, and scheduled by the
    kernel). The kernel builds one per task and sets ``callbacks`` where the batch is an event,
    and the four fields below."""

    group: TaskGroup
    first: int
    k: int
    start_s: float


@dataclass(frozen=True)
class PersistentGrid:
    """Blocks of a persistent kernel on one GPU and how they are split into roles."""

    sms: int
    blocks_per_sm: int
    os_blocks: int
    occupancy: Occupancy
    """The occupancy calculation of the declared block resources (before the cap)."""
    block_stream_Bps: float
    """Rate cap of one block's transfers (see ``gpusim.kernels.tile_gemm.block_stream_Bps``)."""

    @property
    def blocks(self) -> int:
        """``blocks_per_sm x sms``."""
        return self.blocks_per_sm * self.sms

    @property
    def processors(self) -> int:
        """Processor blocks: ``blocks - os_blocks``."""
        return self.blocks - self.os_blocks

    @classmethod
    def plan(
        cls,
        rates: GPURates,
        resources: KernelResources,
        *,
        max_blocks_per_sm: int,
        os_blocks: int = 1,
    ) -> PersistentGrid:
        """The grid on every SM of the GPU of ``rates``: resident blocks per SM from the
        occupancy of ``resources`` (declared, or measured by ptxas), at most
        ``max_blocks_per_sm``; the block streaming cap is the achievable HBM bandwidth shared
        over all resident blocks."""
        occ = occupancy_of(rates.spec, resources)
        per_sm = min(occ.blocks_per_sm, max_blocks_per_sm)
        blocks = per_sm * rates.sm_count
        if blocks <= os_blocks:
            raise ValueError(f"a grid of {blocks} blocks leaves no processor block")
        return cls(
            sms=rates.sm_count,
            blocks_per_sm=per_sm,
            os_blocks=os_blocks,
            occupancy=occ,
            block_stream_Bps=rates.hbm_achievable_Bps / blocks,
        )


@dataclass(frozen=True)
class DeviceTimes:
    """Device-side synchronisation and scheduling costs in seconds, from a profile."""

    flag_handoff_s: float
    grid_barrier_s: float
    task_latency_s: float
    scheduler_s_per_task: float
    subscriber_s_per_task: float

    @classmethod
    def from_profile(cls, profile: CalibrationProfile) -> DeviceTimes:
        """Convert the profile's ns/us values once."""
        dc = profile.device
        return cls(
            flag_handoff_s=ns_to_s(dc.flag_handoff_ns.value),
            grid_barrier_s=us_to_s(dc.grid_barrier_us.value),
            task_latency_s=ns_to_s(dc.task_latency_ns.value),
            scheduler_s_per_task=ns_to_s(dc.scheduler_ns_per_task.value),
            subscriber_s_per_task=ns_to_s(dc.subscriber_ns_per_task.value),
        )


# -- transfers -------------------------------------------------------------------------------------


class FlowGate:
    """Capped SM-issued transfers over a fluid network, timed in closed form while no resource on
    their route can saturate (see the module docstring). One gate per network: every persistent
    kernel sharing the network must use the same gate.

    Why the closed form is exact. Every transfer has a *bound*, the most max-min fairness can
    ever give it: its cap, or, where lower, its route's bound (the least of ``capacity /
    times crossed`` over its resources; an uncapped transfer, e.g. one crossing InfiniBand, has
    only that); the gate lowers a cap above the bound to the bound, in the fluid network too.
    The gate keeps, per resource, the sum of the bounds of the gated transfers in flight over it
    (latency included), each counted once per crossing. A transfer is timed in closed form at
    its bound only if, with it added, that sum is within the capacity (up to
    ``_OVERSUBSCRIBE_REL_TOL``) on every resource of its route; when a later transfer would
    take a resource over, every closed-form transfer crossing it moves into the fluid network
    first (with its remaining bytes), and sums only fall otherwise. So for the whole
    closed-form life of a transfer, the loads of every resource on its route, which are at most
    the sums of the bounds, can only reach the capacity when every flow over it gets its bound:
    in progressive filling no resource on the route fixes a flow below its bound, and the
    transfer gets exactly its bound. (Where the bound is the route's, the resource that sets it
    is full with this transfer alone, so nothing else can cross it in the meantime without
    moving it to the fluid network.) The fluid network need not know of the closed-form
    transfers: on the resources they cross, the flows it does share are likewise never held
    below their bounds. Counting an uncapped transfer at its route's bound rather than as
    unbounded is what lets small loads share a resource with it in closed form.

    ``bypass=False`` sends every transfer through the fluid network (the reference the closed
    form is tested against).
    """

    def __init__(self, network: FluidNetwork, *, bypass: bool = True) -> None:
        self.network = network
        self.env = network.env
        self.bypass = bypass
        self._limit: list[float] = []
        self._demand: list[float] = []
        self._users: list[int] = []
        self._bypassed: list[list[BypassedTransfer]] = []
        self._carried: list[float] = []
        self._capacity_Bps = network.capacity_Bps  # the network's list: it grows in place
        self._route_bound: dict[tuple[int, ...], float] = {}
        # every closed-form transfer's callbacks: one list, shared, as the event loop only reads
        # an event's list and nothing else waits on a record
        self._done_callbacks: EventCallbacks = [self._bypass_done]
        self._grow()
        self.transfers = 0
        self.fluid_transfers = 0
        """Transfers that entered the fluid network (issued there or moved there)."""

    def _grow(self) -> None:
        """Size the per-resource tables to the network's resources."""
        caps = self._capacity_Bps
        for r in range(len(self._limit), len(caps)):
            self._limit.append(caps[r] * (1.0 + _OVERSUBSCRIBE_REL_TOL))
            self._demand.append(0.0)
            self._users.append(0)
            self._bypassed.append([])
            self._carried.append(0.0)

    def _bound_of(self, route: tuple[int, ...]) -> float:
        """The most one flow over ``route`` can get: the least of each resource's capacity over
        the times the route crosses it (kept per route; :meth:`send` looks it up first). The
        per-resource tables are sized here, where a route is first seen: they only grow, so a
        route seen before has every resource in them."""
        caps = self._capacity_Bps
        if len(self._limit) < len(caps):  # resources added since
            self._grow()
        bound_Bps = self._route_bound[route] = min(caps[r] / route.count(r) for r in route)
        return bound_Bps

    @property
    def carried_B(self) -> dict[int, float]:
        """Bytes sent over each resource index (every gated transfer, counted when issued)."""
        return {r: b for r, b in enumerate(self._carried) if b > 0}

    def send(
        self,
        route: tuple[int, ...],
        size_B: float,
        latency_s: float,
        cap_Bps: float,
        callback: Callback,
        payload: Payload = None,
    ) -> None:
        """Move ``size_B`` bytes over ``route`` (resource indices of the network) after
        ``latency_s``, at most ``cap_Bps``; then call ``callback(payload)``. Never calls back
        synchronously."""
        if not (size_B >= 0 and latency_s >= 0 and cap_Bps > 0):
            raise ValueError("transfer size and latency must be >= 0 and the cap > 0")
        self.transfers += 1
        env = self.env
        if size_B == 0 or not route:
            body_s = size_B / cap_Bps if size_B > 0 and cap_Bps < math.inf else 0.0
            ev = env.timeout(latency_s + body_s, payload)
            ev.callbacks.append(lambda e: callback(e.value))
            return
        bound_Bps = self._route_bound.get(route)
        if bound_Bps is None:
            bound_Bps = self._bound_of(route)
        if cap_Bps > bound_Bps:
            # no rate changes (no flow gets more): the closed form, the demand sums and the
            # fluid network all take the one rate it can get
            cap_Bps = bound_Bps
        fits = self.bypass
        counted_Bps = cap_Bps
        if cap_Bps == math.inf:  # over resources of unbounded capacity: none can saturate
            counted_Bps = 0.0
            fits = False
        carried, users, demand, limit = self._carried, self._users, self._demand, self._limit
        for r in route:
            carried[r] += size_B
            users[r] += 1
            d = demand[r] + counted_Bps
            demand[r] = d
            if d > limit[r]:
                fits = False
        if not fits:
            bypassed = self._bypassed
            for r in route:
                if bypassed[r] and demand[r] > limit[r]:
                    self._convert(r)
            self._fluid(route, size_B, latency_s, cap_Bps, counted_Bps, callback, payload)
            return
        rec = BypassedTransfer()
        rec.callbacks = self._done_callbacks
        rec.route = route
        rec.size_B = size_B
        rec.cap_Bps = cap_Bps
        rec.enter_s = env._now + latency_s
        rec.callback = callback
        rec.payload = payload
        rec.alive = True
        bypassed = self._bypassed
        for r in route:
            members = bypassed[r]
            members.append(rec)
            n = len(members)
            if n > 64 and n > 4 * users[r]:  # drop finished records
                bypassed[r] = [m for m in members if m.alive]
        env.schedule(rec, NORMAL, latency_s + size_B / cap_Bps)

    def _fluid(
        self,
        route: tuple[int, ...],
        size_B: float,
        latency_s: float,
        cap_Bps: float,
        counted_Bps: float,
        callback: Callback,
        payload: Payload,
    ) -> None:
        self.fluid_transfers += 1
        self.network.transfer_then(
            partial(self._fluid_done, route, counted_Bps, callback, payload),
            route,
            size_B,
            latency_s,
            cap_Bps,
            "persistent",
        )

    def _fluid_done(
        self,
        route: tuple[int, ...],
        counted_Bps: float,
        callback: Callback,
        payload: Payload,
    ) -> None:
        self._release(route, counted_Bps)
        callback(payload)

    def _bypass_done(self, rec: BypassedTransfer) -> None:
        if not rec.alive:
            return  # moved into the fluid network
        rec.alive = False
        self._release(rec.route, rec.cap_Bps)
        rec.callback(rec.payload)

    def _convert(self, resource: int) -> None:
        """Move every closed-form transfer crossing ``resource`` into the fluid network."""
        members = self._bypassed[resource]
        if not members:
            return
        self._bypassed[resource] = []
        now = float(self.env._now)
        for rec in members:
            if not rec.alive:
                continue
            rec.alive = False  # its timer is ignored; other resources drop it lazily
            if now < rec.enter_s:
                remaining_B, latency_s = rec.size_B, rec.enter_s - now
            else:
                remaining_B = max(0.0, rec.size_B - rec.cap_Bps * (now - rec.enter_s))
                latency_s = 0.0
            self._fluid(
                rec.route,
                remaining_B,
                latency_s,
                rec.cap_Bps,
                rec.cap_Bps,
                rec.callback,
                rec.payload,
            )

    def _release(self, route: tuple[int, ...], counted_Bps: float) -> None:
        """A transfer over ``route`` counted at ``counted_Bps`` ended."""
        users, demand = self._users, self._demand
        for r in route:
            left = users[r] - 1
            users[r] = left
            if left:
                demand[r] -= counted_Bps
            else:  # nothing in flight: reset the sum (no rounding drift) and the records
                demand[r] = 0.0
                self._bypassed[r] = []


# -- tasks -----------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False, init=False)
class TaskGroup:
    """``count`` tasks of one kind with one duration model, handed out in index order."""

    kind: str
    """Accounting category (busy time and task counts are kept per kind)."""
    count: int
    compute_s: float
    """Per-task time on a processor before its transfer."""
    on_done: Callable[[TaskGroup, int, int], None] | None
    """Called as ``on_done(group, first, count)`` when tasks ``first .. first+count-1`` end."""
    flow_route: tuple[int, ...]
    flow_B: float
    """Per-task bytes sent after the compute (0: no transfer)."""
    flow_latency_s: float
    flow_cap_Bps: float
    data: Any
    """Whatever ``on_done`` needs."""
    next_index: int
    ready_s: float
    """When the tasks become ready (set by the kernel; later than submission while the
    subscriber decodes them)."""
    nominal_s: float
    """Uncontended per-task time (set by the kernel where ``task_batch`` > 1): what batch sizes
    are measured in."""
    acc: list[float]
    """The kernel's [busy block-seconds, tasks] of this group's kind (set by the kernel)."""

    def __init__(
        self,
        kind: str,
        count: int,
        compute_s: float,
        on_done: Callable[[TaskGroup, int, int], None] | None = None,
        flow_route: tuple[int, ...] = (),
        flow_B: float = 0.0,
        flow_latency_s: float = 0.0,
        flow_cap_Bps: float = math.inf,
        data: Any = None,
    ) -> None:
        """The group as submitted; the fields the kernel sets start empty. (Written out, with
        the dataclass's ``init=False``: mypyc compiles this one, not the one ``dataclass``
        generates.)"""
        self.kind = kind
        self.count = count
        self.compute_s = compute_s
        self.on_done = on_done
        self.flow_route = flow_route
        self.flow_B = flow_B
        self.flow_latency_s = flow_latency_s
        self.flow_cap_Bps = flow_cap_Bps
        self.data = data
        self.next_index = 0
        self.ready_s = 0.0
        self.nominal_s = 0.0
        self.acc = []


class PersistentKernel:
    """One persistent kernel on one GPU: a processor pool, a scheduler, a subscriber, task
    accounting and data-dependent termination (see the module docstring).

    Termination: the workload announces with :meth:`expect` everything that must happen before
    the kernel may end (the task bound plus any signals it waits for); finished tasks are counted
    off automatically, signals by ``deliver(..., signal=True)``. The kernel ends when the count
    reaches zero after :meth:`run`'s body has returned.
    """

    def __init__(
        self,
        gpu: GPURuntime,
        grid: PersistentGrid,
        times: DeviceTimes,
        gate: FlowGate,
        *,
        task_batch: int = 1,
        name: str = "persistent",
    ) -> None:
        if task_batch < 1:
            raise ValueError(f"task_batch must be >= 1, got {task_batch}")
        self.gpu = gpu
        self.env = gpu.env
        self.grid = grid
        self.times = times
        self.gate = gate
        self.task_batch = task_batch
        self.name = name
        self.processors = grid.processors
        self._sched_s = times.scheduler_s_per_task
        self._latency_s = times.task_latency_s
        self.done = self.env.event()
        self.start_s: float | None = None
        self.end_s: float | None = None
        self._busy: dict[str, list[float]] = {}
        self.batches_run = 0
        self._idle = 0
        self._ready: deque[TaskGroup] = deque()
        self._ready_work_s = 0.0
        self._sched_free_s = 0.0
        self._sub_free_s = 0.0
        self._open = 0
        self._early: list[tuple[int, TaskGroup | None, bool]] = []
        self._held: list[tuple[float, int, int, TaskGroup]] = []
        """Deliveries held in the subscriber's virtual clock (:meth:`deliver_later`), a heap of
        (arrival time, event id, tasks, group)."""
        self._in_done = False
        self._one_by_one = task_batch == 1
        """Whether a task's end hands its processor the next task by :meth:`_assign_freed`."""
        self._done = self._task_done  # bound once: every task's callback
        # the callbacks of every task event, one list each, shared: the event loop only reads an
        # event's list, and nothing else waits on a task
        self._done_callbacks: EventCallbacks = [self._done]
        self._computed_callbacks: EventCallbacks = [self._compute_done]

    # -- lifecycle --------------------------------------------------------------------------------

    def run(
        self, body: Callable[[PersistentKernel], Generator[simpy.Event, Any, None]]
    ) -> Generator[simpy.Event, Any, None]:
        """The kernel as a stream operation: take every SM of the grid, pay the kernel floor,
        run ``body`` (the workload's prologue: it adds processors and submits work), wait until
        everything expected has happened, give the SMs back."""
        gpu, env = self.gpu, self.env
        sms = self.grid.sms
        # held for the whole kernel: see "Holding SMs versus using them"
        yield from gpu.occupy_sms(sms)
        self.start_s = float(env._now)
        self._sub_free_s = self._sched_free_s = self.start_s
        self._open += 1  # the body itself
        early, self._early = self._early, []
        for n_tasks, group, signal in early:
            self.deliver(n_tasks, group, signal=signal)
        if gpu.rates.kernel_floor_s > 0:
            yield env.timeout(gpu.rates.kernel_floor_s)
        yield from body(self)
        self._fulfil(1)
        if not self.done.triggered:
            yield self.done
        gpu.vacate_sms(sms)
        gpu.kernels_run += 1

    def expect(self, n: int) -> None:
        """Announce ``n`` more tasks or signals the kernel must see before it may end."""
        self._open += n

    def _fulfil(self, n: int) -> None:
        self._open -= n
        if self._open == 0 and self.start_s is not None and not self.done.triggered:
            self.end_s = float(self.env._now)
            self.done.succeed(self.end_s)

    def _account(self, kind: str) -> list[float]:
        acc = self._busy.get(kind)
        if acc is None:
            acc = self._busy[kind] = [0.0, 0.0]
        return acc

    def add_busy(self, kind: str, block_s: float) -> None:
        """Record ``block_s`` block-seconds of work done outside tasks (e.g. a copy phase)."""
        self._account(kind)[0] += block_s

    @property
    def busy_block_s(self) -> dict[str, float]:
        """Block-seconds spent executing work, per kind (tasks and :meth:`add_busy`)."""
        return {kind: acc[0] for kind, acc in self._busy.items()}

    @property
    def tasks_run(self) -> dict[str, int]:
        """Tasks finished, per kind."""
        return {kind: int(acc[1]) for kind, acc in self._busy.items() if acc[1]}

    def add_processors(self, n: int) -> None:
        """``n`` processor blocks become idle and join the pool now."""
        if self._held:
            self._catch_up()
        self._idle += n
        self._assign()
        if self._idle and self._held:
            self._release_held()

    def utilisation(self) -> float:
        """Used fraction: busy block-seconds / (blocks x kernel duration)."""
        if self.start_s is None or self.end_s is None or self.end_s <= self.start_s:
            return 0.0
        busy = sum(acc[0] for acc in self._busy.values())
        return busy / (self.grid.blocks * (self.end_s - self.start_s))

    # -- subscriber and scheduler -----------------------------------------------------------------

    def deliver(self, n_tasks: int, group: TaskGroup | None, *, signal: bool = False) -> None:
        """A packet or flag arrives now: the subscriber (a serial server) decodes it into
        ``n_tasks`` tasks, ``group``, whose tasks are ready when the decode ends; ``signal``
        counts off one expected signal.

        The group enters the scheduler's FIFO now, in arrival order, with its ready time; a
        task made ready by other means during the decode (nanoseconds) queues behind it."""
        if self.start_s is None:  # the kernel has not started: its subscriber sees it at start
            self._early.append((n_tasks, group, signal))
            return
        if self._held:
            self._catch_up()
        now = self.env._now
        t = self._sub_free_s
        if t < now:
            t = now
        t += n_tasks * self.times.subscriber_s_per_task
        self._sub_free_s = t
        if group is not None and group.count > 0:
            self.submit(group, t)
        if signal:
            self._fulfil(1)

    def deliver_later(self, delay_s: float, n_tasks: int, group: TaskGroup) -> None:
        """``deliver(n_tasks, group)`` ``delay_s`` from now (a packet or flag in flight), the same
        as a timeout of ``delay_s`` whose callback delivers, but without its event while no
        processor is idle: the delivery is held in the subscriber's virtual clock with the key
        that event would have had (:meth:`CountingEnvironment.take_id`), and it is made before
        the first thing that touches the kernel after that key (:meth:`_catch_up`). A delivery
        that finds every processor busy only decodes and queues its tasks, kernel state that
        nothing else reads, so making it later, before the next reader, is exact. Whenever a
        processor is idle (it would take the tasks at arrival), held deliveries become the
        events they stand for (:meth:`_release_held`)."""
        env = self.env
        if delay_s < 0:
            raise ValueError(f"negative delay {delay_s}")
        at = env._now + delay_s  # the time the timeout would have
        eid = env.take_id()
        if (self._idle and not self._in_done) or self.start_s is None:
            env.schedule_held(at, eid, partial(self.deliver, n_tasks, group))
        else:
            heappush(self._held, (at, eid, n_tasks, group))

    def _catch_up(self) -> None:
        """Make the held deliveries whose events would have run before the running one."""
        held = self._held
        env = self.env
        sub_s = self.times.subscriber_s_per_task
        while held:
            at, eid, n_tasks, group = held[0]
            if at > env._now or not env.passed(at, eid):  # the first test spares most calls
                return
            heappop(held)
            # deliver() at ``at`` with every processor busy: decode, then queue
            t = self._sub_free_s
            if t < at:
                t = at
            t += n_tasks * sub_s
            self._sub_free_s = t
            if group.count > 0:
                self._enqueue(group, t)

    def _release_held(self) -> None:
        """A processor is idle: every held delivery becomes the event it stands for."""
        held, self._held = self._held, []
        env = self.env
        for at, eid, n_tasks, group in held:
            env.schedule_held(at, eid, partial(self.deliver, n_tasks, group))

    def submit(self, group: TaskGroup, ready_s: float | None = None) -> None:
        """Make a group's tasks ready at ``ready_s`` (default now; processor-produced tasks come
        this way directly)."""
        if group.count <= 0:
            return
        if self._held:
            self._catch_up()
        now = self.env._now
        self._enqueue(group, now if ready_s is None or ready_s < now else ready_s)
        if self._idle:
            self._assign()

    def _enqueue(self, group: TaskGroup, ready_s: float) -> None:
        group.ready_s = ready_s
        group.acc = self._busy.get(group.kind) or self._account(group.kind)
        self._ready.append(group)
        if self.task_batch > 1:  # the backlog's work sizes batches; one by one it is unused
            nominal = self._latency_s + group.compute_s + group.flow_latency_s
            if group.flow_cap_Bps < math.inf:
                nominal += group.flow_B / group.flow_cap_Bps
            group.nominal_s = nominal
            self._ready_work_s += group.count * nominal

    def _assign(self) -> None:
        ready = self._ready
        idle = self._idle
        if not idle or not ready:
            return
        now = self.env._now
        s = self._sched_s
        latency = self._latency_s
        batch = self.task_batch
        sched_free = self._sched_free_s
        work = self._ready_work_s
        while idle and ready:
            g = ready[0]
            first = g.next_index
            k = 1
            if batch > 1:
                share = int(work / (2 * self.processors * g.nominal_s))
                if share > 1:
                    k = min(batch, g.count - first, share)
                work -= k * g.nominal_s
            g.next_index = first + k
            if first + k == g.count:
                ready.popleft()
            idle -= 1
            t = sched_free if sched_free > now else now
            if t < g.ready_s:
                t = g.ready_s
            sched_free = t = t + s  # the first task's assignment; the others' at the batch's end
            b = TaskBatch()
            b.k = k
            compute = g.compute_s if k == 1 else k * g.compute_s + (k - 1) * latency
            self._start(b, g, first, t + latency, compute, now)
        self._idle = idle
        self._sched_free_s = sched_free
        self._ready_work_s = work

    def _compute_done(self, b: TaskBatch) -> None:
        g, k = b.group, b.k
        self.gate.send(
            g.flow_route, k * g.flow_B, k * g.flow_latency_s, g.flow_cap_Bps, self._done, b
        )

    def _task_done(self, b: TaskBatch) -> None:
        now = self.env._now
        held = self._held
        if held and held[0][0] <= now:  # a later head has not passed: no call
            self._catch_up()
        g, k = b.group, b.k
        acc = g.acc
        if k > 1:
            acc[0] += now - b.start_s - (k - 1) * self._latency_s
            # the scheduler's work for the batch's other k - 1 tasks
            t = self._sched_free_s
            self._sched_free_s = (t if t > now else now) + (k - 1) * self._sched_s
        else:
            acc[0] += now - b.start_s
        acc[1] += k
        self.batches_run += 1
        self._idle += 1
        on_done = g.on_done
        if on_done is not None:
            self._in_done = True  # deliveries it holds for this kernel wait for the _assign
            on_done(g, b.first, k)
            self._in_done = False
        left = self._open - k
        self._open = left
        if not left:
            self._fulfil(0)
        elif self._ready:
            if self._idle == 1 and self._one_by_one:
                self._assign_freed(b, now)
                return  # no processor is idle now: nothing held to release
            self._assign()
        if self._idle and self._held:
            self._release_held()

    def _assign_freed(self, b: TaskBatch, now: float) -> None:
        """:meth:`_assign` where tasks go one by one and one processor is idle (the one a task
        just freed) with tasks ready: the most frequent assignment, without the loop and the
        batch sizing. The freed task's ``b`` carries the new task: once its task has ended,
        nothing reads it (its event has run; a transfer's record or flow that had it as
        payload has called back)."""
        ready = self._ready
        g = ready[0]
        first = g.next_index
        g.next_index = first + 1
        if first + 1 == g.count:
            ready.popleft()
        self._idle = 0
        t = self._sched_free_s
        if t < now:
            t = now
        if t < g.ready_s:
            t = g.ready_s
        self._sched_free_s = t = t + self._sched_s
        self._start(b, g, first, t + self._latency_s, g.compute_s, now)

    def _start(
        self, b: TaskBatch, g: TaskGroup, first: int, start_s: float, compute_s: float, now: float
    ) -> None:
        """Run ``b`` (its ``k`` tasks from ``first`` of ``g``) on a processor from ``start_s``:
        the event of its compute's end (``compute_s`` long), or, for a transfer-only task, its
        transfer with the batch as payload."""
        b.group = g
        b.first = first
        b.start_s = start_s
        k = b.k
        if g.flow_B <= 0:
            b.callbacks = self._done_callbacks
            self.env.schedule(b, NORMAL, start_s + compute_s - now)
        elif compute_s > 0:
            b.callbacks = self._computed_callbacks
            self.env.schedule(b, NORMAL, start_s + compute_s - now)
        else:  # transfer only: the batch is the transfer's payload, not an event
            self.gate.send(
                g.flow_route,
                k * g.flow_B,
                start_s - now + k * g.flow_latency_s,
                g.flow_cap_Bps,
                self._done,
                b,
            )
