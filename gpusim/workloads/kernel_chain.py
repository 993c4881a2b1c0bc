"""One host thread launching a chain of kernels on one stream, then synchronising.

The launch-bound versus GPU-bound regime in its simplest form. Eager: with host launch cost L,
doorbell latency D and kernel time K, kernel i (1-based) is issued at i*L, may start at i*L + D,
and starts at max(i*L + D, end of kernel i-1); once the stream holds ``queue_depth`` unfinished
launches, the call that would exceed it returns only when the oldest finishes. Graph: one
cudaGraphLaunch of host cost G; node i may start at G + D + i*P (P the device-side per-node
cost) and after node i-1 ends.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import simpy

from gpusim.execution.host_costs import HostCosts
from gpusim.execution.launch import LaunchTimes
from gpusim.execution.runtime import HostRuntime, LaunchLog, sm_active
from gpusim.hardware.fabric import Fabric, Route
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.kernels import kernel_costs, memcpy_time_s
from gpusim.result import Outcome
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology
from gpusim.spec.workload import KernelChainWorkload, MemcpyOp

METRICS = frozenset(
    {
        "makespan_s",
        "launch_latency_s",
        "time_per_kernel_s",
        "kernel_time_s",
        "launch_cost_s",
        "gpu_busy_fraction",
        "host_busy_fraction",
        "launch_bound",
        "kernel_launches",
        "sm_utilisation",
        "sm_active",
        "tklqt_s",
    }
)
"""The metric names both models report (the registry declares them for sweep checks)."""


def _gpu_id(topology: Topology, wl: KernelChainWorkload) -> str:
    return wl.gpu if wl.gpu is not None else topology.gpus()[0].id


def _metrics(
    makespan_s: float,
    kernel_s: float,
    host_s: float,
    wl: KernelChainWorkload,
    launch_s: float,
    first_start_s: float,
    launches: int,
) -> dict[str, float]:
    return {
        "makespan_s": makespan_s,
        "launch_latency_s": first_start_s,
        "time_per_kernel_s": makespan_s / wl.count,
        "kernel_time_s": kernel_s,
        "launch_cost_s": launch_s,
        "gpu_busy_fraction": wl.count * kernel_s / makespan_s,
        "host_busy_fraction": host_s / makespan_s,
        "launch_bound": 1.0 if launch_s * launches / wl.count > kernel_s else 0.0,
        "kernel_launches": float(launches),
    }


def _memcpy_route(fabric: Fabric, host: str, gpu: str, op: MemcpyOp) -> Route:
    return fabric.route(host, gpu) if op.direction == "h2d" else fabric.route(gpu, host)


def _graph(wl: KernelChainWorkload) -> bool:
    """Whether the chain is one CUDA graph (memcpy chains are always issued eagerly)."""
    return wl.launch == "graph" and not isinstance(wl.kernel, MemcpyOp)


def des(node: Node, wl: KernelChainWorkload, *, seed: int) -> Outcome:
    """Simulate the chain with the host runtime and a FIFO stream (``seed`` not used: nothing
    is drawn at random)."""
    gpu = node.gpus[_gpu_id(node.topology, wl)]
    host_id = node.host_of[gpu.id]
    costs = HostCosts.from_profile(node.profile)
    times = costs.launch
    rt = HostRuntime(node.host_thread(host_id, "main"), costs, LaunchLog())
    stream = gpu.stream(0)
    op = wl.kernel
    if isinstance(op, MemcpyOp):
        route = _memcpy_route(node.fabric, host_id, gpu.id, op)
        op_s = memcpy_time_s(op.bytes, route.bottleneck_Bps, route.latency_s)
        name = f"memcpy {op.direction}"
        per_op = 1

        def issue() -> Generator[simpy.Event, Any, simpy.Event]:
            done: simpy.Event | None = None
            for _ in range(wl.count):
                done = yield from rt.copy(stream, route, op.bytes, name)
            assert done is not None
            return done

    else:
        kernels = kernel_costs(op, gpu.rates)
        op_s = sum(c.time_s for c in kernels)
        per_op = len(kernels)

        def issue() -> Generator[simpy.Event, Any, simpy.Event]:
            if _graph(wl):
                return (yield from rt.graph_launch(stream, list(kernels) * wl.count))
            done: simpy.Event | None = None
            for _ in range(wl.count):
                for cost in kernels:
                    done = yield from rt.launch(stream, cost)
            assert done is not None
            return done

    def host() -> Generator[simpy.Event, Any, None]:
        yield from issue()
        yield from rt.stream_synchronize(stream)

    node.sim.env.process(host())
    makespan = node.sim.run()
    node.finish()
    first = min(rec.kernel_start_s for rec in rt.log.records)
    launch_s = times.issue_interval_s("graph" if _graph(wl) else "eager")
    metrics = _metrics(makespan, op_s, rt.thread.busy_s, wl, launch_s, first, per_op * wl.count)
    metrics["sm_utilisation"] = gpu.busy_sm_s / (gpu.rates.sm_count * makespan)
    metrics["sm_active"] = sm_active([gpu], makespan)
    metrics["tklqt_s"] = rt.log.tklqt_s()
    return Outcome(
        makespan_s=makespan, metrics=metrics, per_gpu={gpu.id: {"busy_s": stream.busy_s}}
    )


def _eager_end_s(times: LaunchTimes, durations_s: Sequence[float]) -> tuple[float, float]:
    """End of the last kernel of an eager chain of kernels lasting ``durations_s``, and its
    TKLQT: launch i returns at i*L unless the queue is full, then when kernel i - depth ends
    (the oldest pending launch)."""
    launch_s, depth = times.api_s, times.queue_depth
    ends: list[float] = []
    issued = end = tklqt = 0.0
    blocked = False
    for i, op_s in enumerate(durations_s, start=1):
        begin = issued if blocked else (i - 1) * launch_s
        issued = issued + launch_s if blocked else i * launch_s
        if i > depth and ends[i - 1 - depth] > issued:
            issued, blocked = ends[i - 1 - depth], True
        start = max(issued + times.doorbell_s, end)
        end = start + op_s
        tklqt += start - begin
        ends.append(end)
    return end, tklqt


def _graph_end_s(times: LaunchTimes, durations_s: Sequence[float]) -> tuple[float, float]:
    """End of the last node of a one-graph chain of nodes lasting ``durations_s``, and its
    TKLQT (every node's launch call is the one cudaGraphLaunch at time 0)."""
    first = times.graph_launch_s + times.doorbell_s
    end = tklqt = 0.0
    for i, op_s in enumerate(durations_s, start=1):
        start = max(first + i * times.graph_per_kernel_s, end)
        end = start + op_s
        tklqt += start
    return end, tklqt


def analytic(
    topology: Topology, profile: CalibrationProfile, wl: KernelChainWorkload, *, seed: int
) -> Outcome:
    """The same chain by its recurrence (exact: nothing contends on one stream; ``seed`` not
    used)."""
    gpu_id = _gpu_id(topology, wl)
    device = next(g for g in topology.gpus() if g.id == gpu_id)
    platform = Platform.of(topology, profile)
    rates = platform.gpu_rates(gpu_id)
    times = LaunchTimes.from_profile(profile)
    op = wl.kernel
    if isinstance(op, MemcpyOp):
        route = _memcpy_route(platform.fabric, device.host, gpu_id, op)
        per_op_s = [memcpy_time_s(op.bytes, route.bottleneck_Bps, route.latency_s)]
        sm_s = 0.0
    else:
        kernels = kernel_costs(op, rates)
        per_op_s = [c.time_s for c in kernels]
        sm_s = sum(c.time_s * c.sms for c in kernels)
    op_s = sum(per_op_s)
    durations_s = per_op_s * wl.count
    if _graph(wl):
        launch_s = times.graph_per_kernel_s
        end, tklqt = _graph_end_s(times, durations_s)
        host_s = times.graph_launch_s
        first = times.graph_launch_s + times.doorbell_s + launch_s
    else:
        launch_s = times.api_s
        end, tklqt = _eager_end_s(times, durations_s)
        host_s = len(durations_s) * launch_s
        first = launch_s + times.doorbell_s
    makespan = end + times.sync_return_s
    metrics = _metrics(makespan, op_s, host_s, wl, launch_s, first, len(durations_s))
    metrics["sm_utilisation"] = wl.count * sm_s / (rates.sm_count * makespan)
    metrics["sm_active"] = metrics["sm_utilisation"]  # the same here: both span the whole run
    metrics["tklqt_s"] = tklqt
    return Outcome(
        makespan_s=makespan, metrics=metrics, per_gpu={gpu_id: {"busy_s": wl.count * op_s}}
    )
