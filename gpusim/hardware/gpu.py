"""Runtime GPU: an SM pool, HBM as a shared fluid resource, and FIFO streams."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import simpy

from gpusim.engine.fluid import FluidNetwork
from gpusim.engine.trace import TraceRecorder, Track
from gpusim.hardware.rates import GPURates

StreamOp = Callable[[], Generator[simpy.Event, Any, None]]


class GPURuntime:
    """One GPU in a running simulation."""

    def __init__(
        self,
        device_id: str,
        rates: GPURates,
        env: simpy.Environment,
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
        now = float(self.env.now)
        self.busy_sm_s += self._busy_sms * (now - self._busy_since_s)
        self._busy_sms += delta
        self._busy_since_s = now
        if self.recorder.enabled:
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
        if sms > self.rates.sm_count:  # max(1, min(sms, sm_count)) without two calls
            sms = self.rates.sm_count
        if sms < 1:
            sms = 1
        granted = self.acquire_sms(sms)
        if granted is not None:
            yield granted
        self._sm_change(sms)
        network = self.network
        if l2_bytes > 0 and self.l2 is not None and compute_time_s > 0:  # its operand reads too
            flows = [
                network.transfer((resource,), size_B, floor_s, size_B / compute_time_s, name)
                for resource, size_B in ((self.hbm, hbm_bytes), (self.l2, l2_bytes))
                if size_B > 0
            ]
            yield self.env.all_of(flows)
        elif hbm_bytes > 0:  # the floor delays the flow's start, like a route latency
            cap = hbm_bytes / compute_time_s if compute_time_s > 0 else math.inf
            yield network.transfer((self.hbm,), hbm_bytes, floor_s, cap, name)
        elif floor_s + compute_time_s > 0:
            yield self.env.timeout(floor_s + compute_time_s)
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
    ) -> simpy.Event:
        """Queue ``op`` after everything already submitted; it may start ``ready_delay_s`` from
        now at the earliest (the doorbell-to-start latency). ``reserved``: its queue slot was
        handed over by :meth:`room`. ``cat``/``args`` label its trace slice. Returns its
        completion event."""
        env = self.gpu.env
        prev = self._tail
        done = env.event()
        self._tail = done
        if not reserved:
            self.pending += 1
        env.process(self._run(name, op, prev, ready_delay_s, done, cat, args))
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

    def _run(
        self,
        name: str,
        op: StreamOp,
        prev: simpy.Event | None,
        ready_delay_s: float,
        done: simpy.Event,
        cat: str | None,
        args: dict[str, Any] | None,
    ) -> Generator[simpy.Event, Any, None]:
        gpu = self.gpu
        env = gpu.env
        if ready_delay_s > 0:
            yield env.timeout(ready_delay_s)
        if prev is not None and prev.callbacks is not None:  # not yet processed
            yield prev
        start = float(env.now)
        if self.first_start_s is None:
            self.first_start_s = start
        yield from op()
        end = float(env.now)
        self.busy_s += end - start
        if gpu.recorder.enabled:
            gpu.recorder.slice(self.track, name, start, end, args, cat)
        if self._room_waiters:
            self._room_waiters.popleft().succeed()  # the slot passes on; pending is unchanged
        else:
            self.pending -= 1
        done.succeed(end)

    def idle(self) -> simpy.Event:
        """An event that fires when everything submitted so far has finished."""
        if self._tail is None:
            ev = self.gpu.env.event()
            ev.succeed()
            return ev
        return self._tail
