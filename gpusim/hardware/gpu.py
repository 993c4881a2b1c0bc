"""Runtime GPU: an SM pool, HBM as a shared fluid resource, and FIFO streams."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, Protocol

import simpy
from simpy.events import URGENT

from gpusim.engine.fluid import FluidNetwork
from gpusim.engine.sim import CountingEnvironment, triggered_event
from gpusim.engine.trace import TraceRecorder, Track
from gpusim.hardware.rates import GPURates

StreamOp = Callable[[], Generator[simpy.Event, Any, None]]
StreamCallOp = Callable[[Callable[[], None]], None]
"""A stream op written as calls (:meth:`Stream.submit_then`)."""


class GPURuntime:
    """One GPU in a running simulation."""

    def __init__(
        self,
        device_id: str,
        rates: GPURates,
        env: CountingEnvironment,
        network: FluidNetwork,
        recorder: TraceRecorder,
        memory_resource: int | None = None,
    ) -> None:
        """A GPU whose HBM is a new resource of ``network``, or ``memory_resource`` when given:
        the index of a resource already registered (a unified-memory GPU shares its host CPU's
        memory)."""
        self.id = device_id
        self.rates = rates
        self.env = env
        self.network = network
        self.recorder = recorder
        self._traced: bool = recorder.enabled  # read per kernel: natively, kept here
        self.hbm = (
            network.add_resource(f"{device_id}.hbm", rates.hbm_achievable_Bps, group="memory")
            if memory_resource is None
            else memory_resource
        )
        self.l2: int | None = None
        """Index of this GPU's L2 resource (the node registers it after every HBM)."""
        self.copy_engines = simpy.Resource(env, capacity=rates.spec.copy_engines)
        self.free_sms = rates.sm_count
        self._sm_waiters: deque[tuple[int, simpy.Event]] = deque()
        self.streams: dict[int, Stream] = {}
        self.busy_sm_s = 0.0
        self.kernels_run = 0
        self._busy_sms = 0
        self._busy_since_s = 0.0
        self._sm_track = Track(device_id, "busy SMs")

    def stream(self, stream_id: int = 0) -> Stream:
        """The stream with this id (created on first use)."""
        s = self.streams.get(stream_id)
        if s is None:
            s = Stream(self, stream_id)
            self.streams[stream_id] = s
        return s

    def acquire_sms(self, count: int) -> simpy.Event | None:
        """Take ``count`` SMs, first come first served. Returns None when they were free (no
        event needed), else an event that fires once they are granted."""
        if not self._sm_waiters and self.free_sms >= count:
            self.free_sms -= count
            return None
        granted = self.env.event()
        self._sm_waiters.append((count, granted))
        return granted

    def release_sms(self, count: int) -> None:
        """Return SMs and grant waiting requests in order while they fit."""
        self.free_sms += count
        waiters = self._sm_waiters
        while waiters and waiters[0][0] <= self.free_sms:
            n, granted = waiters.popleft()
            self.free_sms -= n
            granted.succeed()

    def occupy_sms(self, count: int) -> Generator[simpy.Event, Any, None]:
        """Hold ``count`` SMs for work that is not a :meth:`run_kernel` kernel (e.g. a collective's
        kernel): wait for them first come first served, then count them busy (in ``busy_sm_s``)
        until :meth:`vacate_sms` returns them."""
        granted = self.acquire_sms(count)
        if granted is not None:
            yield granted
        self._sm_change(count)

    def vacate_sms(self, count: int) -> None:
        """Return ``count`` SMs taken with :meth:`occupy_sms` and stop counting them busy."""
        self._sm_change(-count)
        self.release_sms(count)

    def _sm_change(self, delta: int) -> None:
        now = float(self.env._now)  # not the property: twice per kernel
        self.busy_sm_s += self._busy_sms * (now - self._busy_since_s)
        self._busy_sms += delta
        self._busy_since_s = now
        if self._traced:
            self.recorder.counter(self._sm_track, "busy SMs", now, self._busy_sms)

    def run_kernel(
        self,
        name: str,
        sms: int,
        floor_s: float,
        compute_time_s: float,
        hbm_bytes: float,
        l2_bytes: float = 0.0,
    ) -> Generator[simpy.Event, Any, None]:
        """Execute a kernel on this GPU: take ``sms`` SMs, pay the floor, then either its compute
        time or its memory traffic as flows capped at the rate its compute allows: its HBM
        bytes on the HBM, its L2 operand reads on the L2 (so a kernel alone takes exactly
        ``floor + max(compute, bytes / achievable HBM bandwidth)``: its compute time already
        holds its share of the L2, and beside another L2 reader both slow down)."""
        sms = self._kernel_sms(sms)
        granted = self.acquire_sms(sms)
        if granted is not None:
            yield granted
        self._sm_change(sms)
        work = self._kernel_work(name, floor_s, compute_time_s, hbm_bytes, l2_bytes, None)
        if work is not None:
            yield work
        self._kernel_end(sms)

    def run_kernel_then(
        self,
        then: Callable[[], None],
        name: str,
        sms: int,
        floor_s: float,
        compute_time_s: float,
        hbm_bytes: float,
        l2_bytes: float = 0.0,
    ) -> None:
        """:meth:`run_kernel` as calls instead of a generator: ``then()`` runs where a process
        running the kernel would go on after it (the same events in the same order, the HBM
        flow's end mostly without its event: ``FluidNetwork.transfer_then``)."""
        sms = self._kernel_sms(sms)
        granted = self.acquire_sms(sms)

        def run() -> None:
            self._sm_change(sms)
            self._kernel_work(name, floor_s, compute_time_s, hbm_bytes, l2_bytes, end)

        def end() -> None:
            self._kernel_end(sms)
            then()

        if granted is None:
            run()
        else:
            granted.callbacks.append(lambda _ev: run())

    def _kernel_sms(self, sms: int) -> int:
        """The SMs a kernel asking for ``sms`` takes: at least 1, at most the GPU's."""
        if sms > self.rates.sm_count:  # max(1, min(sms, sm_count)) without two calls
            return self.rates.sm_count
        return sms if sms >= 1 else 1

    def _kernel_work(
        self,
        name: str,
        floor_s: float,
        compute_time_s: float,
        hbm_bytes: float,
        l2_bytes: float,
        then: Callable[[], None] | None,
    ) -> simpy.Event | None:
        """Start a kernel's work once it holds its SMs (see :meth:`run_kernel`). Without
        ``then``: the event it ends with, None when it takes no time. With ``then``: None, and
        ``then()`` is called where a process waiting for that event would resume."""
        network = self.network
        work: simpy.Event | None = None
        if l2_bytes > 0 and self.l2 is not None and compute_time_s > 0:  # its operand reads too
            flows = [
                network.transfer((resource,), size_B, floor_s, size_B / compute_time_s, name)
                for resource, size_B in ((self.hbm, hbm_bytes), (self.l2, l2_bytes))
                if size_B > 0
            ]
            work = self.env.all_of(flows)
        elif hbm_bytes > 0:  # the floor delays the flow's start, like a route latency
            cap = hbm_bytes / compute_time_s if compute_time_s > 0 else math.inf
            if then is not None:
                network.transfer_then(then, (self.hbm,), hbm_bytes, floor_s, cap, name)
                return None
            work = network.transfer((self.hbm,), hbm_bytes, floor_s, cap, name)
        elif floor_s + compute_time_s > 0:
            work = self.env.timeout(floor_s + compute_time_s)
        if then is None:
            return work
        if work is None:
            then()
        else:  # a new event: not yet processed
            work.callbacks.append(lambda _ev: then())
        return None

    def _kernel_end(self, sms: int) -> None:
        self._sm_change(-sms)
        self.release_sms(sms)
        self.kernels_run += 1

    def copy(
        self, route: tuple[int, ...], latency_s: float, size_B: float, name: str
    ) -> Generator[simpy.Event, Any, None]:
        """A DMA copy: wait for a free copy engine, then move the bytes over ``route``."""
        with self.copy_engines.request() as engine:
            yield engine
            yield self.network.transfer(route, size_B, latency_s, label=name)

    def finish(self) -> None:
        """Close the busy-SM integral at the current time."""
        self._sm_change(0)


class Stream:
    """A CUDA stream: operations run one after another in submission order. ``pending`` counts
    operations submitted and not yet finished (the launch queue a launch call may block on)."""

    def __init__(self, gpu: GPURuntime, stream_id: int) -> None:
        self.gpu = gpu
        self.id = stream_id
        self.track = Track(gpu.id, f"stream {stream_id}")
        self.first_start_s: float | None = None
        self.busy_s = 0.0
        self.pending = 0
        self._tail: simpy.Event | None = None
        self._room_waiters: deque[simpy.Event] = deque()

    def submit(
        self,
        name: str,
        op: StreamOp,
        ready_delay_s: float = 0.0,
        *,
        reserved: bool = False,
        cat: str | None = None,
        args: dict[str, Any] | None = None,
        stamps: OpStamps | None = None,
    ) -> simpy.Event:
        """Queue ``op`` after everything already submitted; it may start ``ready_delay_s`` from
        now at the earliest (the doorbell-to-start latency). ``reserved``: its queue slot was
        handed over by :meth:`room`. ``cat``/``args`` label its trace slice; ``stamps``, when
        given, gets the op's start and end times. Returns its completion event."""
        return self._queue(name, op, None, ready_delay_s, reserved, cat, args, stamps)

    def submit_then(
        self,
        name: str,
        start: StreamCallOp,
        ready_delay_s: float = 0.0,
        *,
        reserved: bool = False,
        cat: str | None = None,
        args: dict[str, Any] | None = None,
        stamps: OpStamps | None = None,
    ) -> simpy.Event:
        """:meth:`submit` for an op written as calls: ``start(then)`` starts it and it calls
        ``then()`` where the generator form would return (e.g.
        :meth:`GPURuntime.run_kernel_then`): no generator to drive."""
        return self._queue(name, None, start, ready_delay_s, reserved, cat, args, stamps)

    def _queue(
        self,
        name: str,
        op: StreamOp | None,
        start: StreamCallOp | None,
        ready_delay_s: float,
        reserved: bool,
        cat: str | None,
        args: dict[str, Any] | None,
        stamps: OpStamps | None,
    ) -> simpy.Event:
        env = self.gpu.env
        prev = self._tail
        done = env.event()
        self._tail = done
        if not reserved:
            self.pending += 1
        run = _StreamOp(self, name, op, start, prev, ready_delay_s, done, cat, args, stamps)
        # its start: the event SimPy's process start would be (same key), with no Process
        env.schedule(triggered_event(env, run.begin), URGENT)
        return done

    def room(self, depth: int) -> simpy.Event | None:
        """None when a launch may enter now (fewer than ``depth`` pending and nobody waiting);
        else an event that fires when an operation finishes and hands its slot to this caller,
        who then submits with ``reserved=True`` (waiters are served in order)."""
        if self.pending < depth and not self._room_waiters:
            return None
        granted = self.gpu.env.event()
        self._room_waiters.append(granted)
        return granted

    def idle(self) -> simpy.Event:
        """An event that fires when everything submitted so far has finished."""
        if self._tail is None:
            ev = self.gpu.env.event()
            ev.succeed()
            return ev
        return self._tail


class OpStamps(Protocol):
    """What records a stream op's start and end times (e.g. a launch record)."""

    kernel_start_s: float
    kernel_end_s: float


class _StreamOp:
    """One operation of a stream, driven through its events by callbacks exactly as a SimPy
    process would drive a generator waiting the doorbell latency, then the previous op, then
    running the op (the same events, in the same order), without the Process, the generator
    frame around the op or the process's end event, which nobody waits on."""

    __slots__ = (
        "args",
        "cat",
        "delay_s",
        "done",
        "gen",
        "name",
        "op",
        "prev",
        "stamps",
        "start",
        "start_s",
        "stream",
    )

    def __init__(
        self,
        stream: Stream,
        name: str,
        op: StreamOp | None,
        start: StreamCallOp | None,
        prev: simpy.Event | None,
        delay_s: float,
        done: simpy.Event,
        cat: str | None,
        args: dict[str, Any] | None,
        stamps: OpStamps | None,
    ) -> None:
        self.stream = stream
        self.name = name
        self.op = op
        self.start = start
        self.prev = prev
        self.delay_s = delay_s
        self.done = done
        self.cat = cat
        self.args = args
        self.stamps = stamps
        self.gen: Generator[simpy.Event, Any, None] | None = None
        self.start_s = 0.0

    def begin(self, _event: simpy.Event) -> None:
        """The op's start event: wait for the doorbell latency."""
        if self.delay_s > 0:
            timer = self.stream.gpu.env.timeout(self.delay_s)
            timer.callbacks.append(self._ready)
        else:
            self._ready(None)

    def _ready(self, _event: simpy.Event | None) -> None:
        prev = self.prev
        if prev is not None and prev.callbacks is not None:  # not yet processed
            prev.callbacks.append(self._run)
        else:
            self._run(None)

    def _run(self, _event: simpy.Event | None) -> None:
        self.prev = None
        stream = self.stream
        start = self.start_s = float(stream.gpu.env._now)
        if stream.first_start_s is None:
            stream.first_start_s = start
        if self.stamps is not None:
            self.stamps.kernel_start_s = start
        if self.start is not None:
            self.start(self._end)
            return
        assert self.op is not None
        self.gen = self.op()
        self._step(True, None)

    def _resume(self, event: simpy.Event) -> None:
        if not event._ok:
            event._defused = True
        self._step(event._ok, event._value)

    def _step(self, ok: bool, value: Any) -> None:
        """Send ``value`` into the op (throw it, as SimPy's process does, when not ``ok``), and
        on through every event it yields that is already processed, until it waits or ends."""
        gen = self.gen
        assert gen is not None
        while True:
            try:
                if ok:
                    event = gen.send(value)
                else:  # the op gets its own copy of the exception, as in SimPy
                    exc = type(value)(*value.args)
                    exc.__cause__ = value
                    event = gen.throw(exc)
            except StopIteration:
                self.gen = None
                self._end()
                return
            callbacks = event.callbacks
            if callbacks is not None:
                callbacks.append(self._resume)
                return
            ok, value = event._ok, event._value
            if not ok:
                event._defused = True

    def _end(self) -> None:
        stream = self.stream
        gpu = stream.gpu
        end = float(gpu.env._now)
        if self.stamps is not None:
            self.stamps.kernel_end_s = end
        stream.busy_s += end - self.start_s
        if gpu._traced:
            gpu.recorder.slice(stream.track, self.name, self.start_s, end, self.args, self.cat)
        if stream._room_waiters:
            stream._room_waiters.popleft().succeed()  # the slot passes on; pending is unchanged
        else:
            stream.pending -= 1
        # mostly without the event (CountingEnvironment.defer; the network's env is the GPU's)
        gpu.network.env.succeed(self.done, end)
