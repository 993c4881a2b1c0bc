"""The host runtime as a framework program drives it: framework ops that launch kernels through
runtime calls, host-only Python steps, host synchronisations and CUDA graph launches, issued in
order by one host thread. Every launch is recorded (:class:`LaunchRecord`) with the timestamps a
PyTorch-profiler trace holds, and drawn as ``cpu_op`` / ``cuda_runtime`` / ``kernel`` slices
linked by correlation ids (see ``docs/host_runtime.md``).

Model, per launch j on a stream: the host begins the runtime call at h_j, pays its cost c_j,
blocks while the stream already holds ``queue_depth`` unfinished launches, and the kernel may
start the doorbell latency D after the call returns, once the stream's previous work is done.
A synchronisation waits until the awaited stream (or every stream of the device) has drained,
then pays the return latency before the host issues anything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import simpy

from gpusim.execution.host_costs import HostCosts, OpKind, RuntimeCall
from gpusim.execution.launch import LaunchTimes, enter_queue, run_cost, run_cost_then
from gpusim.hardware.fabric import Route
from gpusim.hardware.gpu import GPURuntime, Stream
from gpusim.hardware.host import HostThread
from gpusim.kernels.cost import KernelCost


@dataclass(slots=True, init=False)
class LaunchRecord:
    """One kernel (or copy) and the host calls that put it on its stream (times in seconds)."""

    correlation: int
    """Shared by the runtime call and the kernels it launched (a graph's nodes share one)."""
    external_id: int
    """The enclosing framework op's id; 0 when launched outside one."""
    name: str
    call: RuntimeCall
    gpu: str
    stream: int
    runtime_begin_s: float
    runtime_end_s: float
    op_begin_s: float
    op_end_s: float
    kernel_start_s: float
    kernel_end_s: float

    def __init__(
        self,
        correlation: int,
        external_id: int,
        name: str,
        call: RuntimeCall,
        gpu: str,
        stream: int,
        runtime_begin_s: float,
        runtime_end_s: float = math.nan,
        op_begin_s: float = math.nan,
        op_end_s: float = math.nan,
        kernel_start_s: float = math.nan,
        kernel_end_s: float = math.nan,
    ) -> None:
        # written out (init=False): mypyc compiles this one, not the one dataclass generates
        self.correlation = correlation
        self.external_id = external_id
        self.name = name
        self.call = call
        self.gpu = gpu
        self.stream = stream
        self.runtime_begin_s = runtime_begin_s
        self.runtime_end_s = runtime_end_s
        self.op_begin_s = op_begin_s
        self.op_end_s = op_end_s
        self.kernel_start_s = kernel_start_s
        self.kernel_end_s = kernel_end_s

    @property
    def launch_queue_s(self) -> float:
        """SKIP's t_lj: from the runtime call's start to the kernel's start."""
        return self.kernel_start_s - self.runtime_begin_s

    @property
    def launch_tax_s(self) -> float:
        """SODA's launch tax: from the runtime call's end to the kernel's start."""
        return self.kernel_start_s - self.runtime_end_s


@dataclass
class LaunchLog:
    """Every launch of a run, and the id counters (shared by all host threads of a run)."""

    records: list[LaunchRecord] = field(default_factory=list)
    _correlation: int = 0
    _external: int = 0

    def next_correlation(self) -> int:
        """A fresh correlation id (runtime call <-> kernels)."""
        self._correlation += 1
        return self._correlation

    def next_external(self) -> int:
        """A fresh framework-op id (cpu_op <-> its runtime calls and kernels)."""
        self._external += 1
        return self._external

    def tklqt_s(self) -> float:
        """Total kernel launch and queuing time: the sum of t_lj over every launched kernel."""
        return sum(r.launch_queue_s for r in self.records)


@dataclass(frozen=True)
class KernelLaunch:
    """A kernel a framework op launches, through which runtime call."""

    stream: Stream
    cost: KernelCost
    call: RuntimeCall = RuntimeCall.launch_kernel


def run_graph_nodes(
    gpu: GPURuntime,
    nodes: Sequence[KernelCost],
    records: Sequence[LaunchRecord],
    node_s: float,
    after_kernel: Callable[[KernelCost, LaunchRecord], None],
) -> Generator[simpy.Event, Any, None]:
    """The device side of a straight-line CUDA graph: node ``i`` (1-based) may start ``i`` per-node
    costs (``node_s``) after the graph starts and after node ``i - 1`` ends; each node's record
    gets its kernel's start and end, then ``after_kernel`` sees it."""
    env = gpu.env
    start = float(env._now)
    for i, (cost, rec) in enumerate(zip(nodes, records, strict=True), start=1):
        ready = start + i * node_s
        if ready > float(env._now):
            yield env.timeout(ready - float(env._now))
        rec.kernel_start_s = float(env._now)
        yield from run_cost(gpu, cost)
        rec.kernel_end_s = float(env._now)
        after_kernel(cost, rec)


class HostRuntime:
    """One host thread issuing framework ops and runtime calls, recording every launch."""

    def __init__(self, thread: HostThread, costs: HostCosts, log: LaunchLog | None = None) -> None:
        self.thread = thread
        self.costs = costs
        self.log = log if log is not None else LaunchLog()
        self.env = thread.env
        self.recorder = thread.recorder
        # read on every launch: kept here typed, so the compiled launch path reads them natively
        # (HostCosts and TraceRecorder are not compiled: each read would be a dict lookup)
        self._times: LaunchTimes = costs.launch
        self._runtime_s: dict[RuntimeCall, float] = costs.runtime_s
        self._traced: bool = self.recorder.enabled

    def _now(self) -> float:
        return float(self.env._now)  # not the property: on every launch

    def op(
        self,
        name: str,
        kind: OpKind,
        launches: Sequence[KernelLaunch] = (),
        *,
        records_graph: bool = False,
    ) -> Generator[simpy.Event, Any, list[simpy.Event]]:
        """A framework op: its dispatch on the host, then one runtime call per kernel it launches
        (none for a view op). Returns the kernels' completion events."""
        begin = self._now()
        ext = self.log.next_external()
        first = len(self.log.records)
        yield from self.thread.spend(None, self.costs.framework_op_s(kind, records_graph))
        done = []
        for kl in launches:
            done.append((yield from self._launch(kl.stream, kl.cost, kl.call, ext)))
        self._close_op(name, ext, begin, first)
        return done

    def launch(
        self, stream: Stream, cost: KernelCost, call: RuntimeCall = RuntimeCall.launch_kernel
    ) -> Generator[simpy.Event, Any, simpy.Event]:
        """A runtime call outside any framework op (bare CUDA); returns the kernel's completion.
        (The launch's own generator, not one delegating to it: one frame less per launch.)"""
        return self._launch(stream, cost, call, 0)

    def copy(
        self, stream: Stream, route: Route, size_B: float, name: str
    ) -> Generator[simpy.Event, Any, simpy.Event]:
        """cudaMemcpyAsync of ``size_B`` over ``route`` on ``stream``, outside any framework op;
        returns the copy's completion event."""
        return (yield from self._launch_copy(stream, route, size_B, name, 0))

    def python_step(self, name: str) -> Generator[simpy.Event, Any, None]:
        """Host-only Python work that launches nothing."""
        yield from self.thread.spend(name, self.costs.python_step_s, cat="python_function")

    def stream_synchronize(self, stream: Stream) -> Generator[simpy.Event, Any, None]:
        """cudaStreamSynchronize: wait until ``stream`` drains, then the return latency."""
        yield from self._sync("cudaStreamSynchronize", [stream.idle()])

    def device_synchronize(self, gpu: GPURuntime) -> Generator[simpy.Event, Any, None]:
        """torch.cuda.synchronize (cudaDeviceSynchronize): wait for every stream of ``gpu``."""
        yield from self._sync("cudaDeviceSynchronize", [s.idle() for s in gpu.streams.values()])

    def to_host(
        self,
        name: str,
        stream: Stream,
        route: Route,
        size_B: float,
        kind: OpKind = OpKind.elementwise,
        launches: Sequence[KernelLaunch] = (),
    ) -> Generator[simpy.Event, Any, None]:
        """An op whose result the host needs (``.item()``, ``.cpu()``, ``.tolist()``, the count
        of ``nonzero``): dispatch, its kernels, a device-to-host copy of ``size_B`` on ``stream``
        over ``route``, and a stream synchronisation inside the op."""
        begin = self._now()
        ext = self.log.next_external()
        first = len(self.log.records)
        yield from self.thread.spend(None, self.costs.framework_op_s(kind))
        for kl in launches:
            yield from self._launch(kl.stream, kl.cost, kl.call, ext)
        yield from self._launch_copy(stream, route, size_B, "Memcpy DtoH", ext)
        yield from self._sync("cudaStreamSynchronize", [stream.idle()])
        self._close_op(name, ext, begin, first)

    def graph_launch(
        self, stream: Stream, nodes: Sequence[KernelCost], name: str = "graph"
    ) -> Generator[simpy.Event, Any, simpy.Event]:
        """cudaGraphLaunch of a straight-line graph: one host call whatever the node count; on
        the device node i (1-based) may start ``i`` per-node costs after the graph starts, and
        after node i-1 ends. The graph holds one slot of the launch queue."""
        corr = self.log.next_correlation()
        begin = self._now()
        call = RuntimeCall.graph_launch
        yield from self.thread.spend(None, self.costs.runtime_call_s(call))
        reserved = yield from enter_queue(stream, self.costs.queue_depth)
        gpu, node_s = stream.gpu, self.costs.launch.graph_per_kernel_s
        records = [self._record(corr, 0, c.name, call, stream, begin) for c in nodes]

        def body() -> Generator[simpy.Event, Any, None]:
            yield from run_graph_nodes(
                gpu, nodes, records, node_s, lambda _cost, rec: self._draw_kernel(stream, rec)
            )

        done = stream.submit(name, body, self.costs.launch.doorbell_s, reserved=reserved)
        self._close_call(call, corr, 0, begin, records)
        return done

    # -- internals -------------------------------------------------------------------------

    def _record(
        self, corr: int, ext: int, name: str, call: RuntimeCall, stream: Stream, begin_s: float
    ) -> LaunchRecord:
        rec = LaunchRecord(corr, ext, name, call, stream.gpu.id, stream.id, begin_s)
        self.log.records.append(rec)
        return rec

    def _launch(
        self, stream: Stream, cost: KernelCost, call: RuntimeCall, ext: int
    ) -> Generator[simpy.Event, Any, simpy.Event]:
        # the hottest path of launch-bound chains: enter_queue inlined, attributes read once
        env, times = self.env, self._times
        corr = self.log.next_correlation()
        begin = float(env._now)
        busy = self.thread.call(self._runtime_s[call])
        if busy is not None:
            yield busy
        granted = stream.room(times.queue_depth)
        reserved = False
        if granted is not None:
            yield granted
            reserved = True
        name = cost.name
        rec = self._record(corr, ext, name, call, stream, begin)
        done = stream.submit_then(
            name,
            partial(run_cost_then, stream.gpu, cost),
            times.doorbell_s,
            reserved=reserved,
            cat="kernel",
            args=self._kernel_args(rec) if self._traced else None,
            stamps=rec,  # the kernel's start and end, without a generator around run_cost
        )
        self._close_call(call, corr, ext, begin, [rec])
        return done

    def _launch_copy(
        self, stream: Stream, route: Route, size_B: float, name: str, ext: int
    ) -> Generator[simpy.Event, Any, simpy.Event]:
        corr = self.log.next_correlation()
        begin = self._now()
        call = RuntimeCall.memcpy_async
        yield from self.thread.spend(None, self.costs.runtime_call_s(call))
        reserved = yield from enter_queue(stream, self.costs.queue_depth)
        rec = self._record(corr, ext, name, call, stream, begin)
        gpu, env = stream.gpu, self.env

        def body() -> Generator[simpy.Event, Any, None]:
            rec.kernel_start_s = float(env._now)
            yield from gpu.copy(route.resources, route.latency_s, size_B, rec.name)
            rec.kernel_end_s = float(env._now)

        args = self._kernel_args(rec) | {"bytes": size_B} if self._traced else None
        done = stream.submit(
            rec.name,
            body,
            self.costs.launch.doorbell_s,
            reserved=reserved,
            cat="gpu_memcpy",
            args=args,
        )
        self._close_call(call, corr, ext, begin, [rec])
        return done

    def _sync(self, label: str, events: list[simpy.Event]) -> Generator[simpy.Event, Any, None]:
        # a sync is a runtime call with its own correlation id and no kernel, as in Kineto
        args = {"correlation": self.log.next_correlation()}
        thread = self.thread
        yield from thread.wait(label, events, self.costs.sync_return_s, "cuda_runtime", args)

    def _close_call(
        self, call: RuntimeCall, corr: int, ext: int, begin_s: float, records: list[LaunchRecord]
    ) -> None:
        end = self._now()
        for rec in records:
            rec.runtime_end_s = end
        if self._traced:  # the args dict costs a measurable share of a launch
            args = {"correlation": corr, "External id": ext}
            self.recorder.slice(self.thread.track, call.value, begin_s, end, args, "cuda_runtime")

    def _close_op(self, name: str, ext: int, begin_s: float, first: int) -> None:
        end = self._now()
        for rec in self.log.records[first:]:
            rec.op_begin_s, rec.op_end_s = begin_s, end
        if self._traced:
            args = {"External id": ext}
            self.recorder.slice(self.thread.track, name, begin_s, end, args, "cpu_op")

    @staticmethod
    def _kernel_args(rec: LaunchRecord) -> dict[str, Any]:
        return {
            "correlation": rec.correlation,
            "External id": rec.external_id,
            "device": rec.gpu,
            "stream": rec.stream,
        }

    def _draw_kernel(self, stream: Stream, rec: LaunchRecord) -> None:
        self.recorder.slice(
            stream.track,
            rec.name,
            rec.kernel_start_s,
            rec.kernel_end_s,
            self._kernel_args(rec),
            "kernel",
        )


def sm_active(gpus: Iterable[GPURuntime], interval_s: float) -> float:
    """SM active as timeline tools report it: SMs holding work (resident blocks, whether they
    compute, wait or poll), time-weighted over the whole timed interval, host gaps included,
    averaged over the GPUs' SMs. Call after the run's integrals are closed (``node.finish()``)."""
    gpus = list(gpus)
    total_sms = sum(g.rates.sm_count for g in gpus)
    return sum(g.busy_sm_s for g in gpus) / (total_sms * interval_s)
