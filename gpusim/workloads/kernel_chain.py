"""One host thread launching a chain of kernels on one stream, then synchronising.

The launch-bound versus GPU-bound regime in its simplest form: with host launch cost L, doorbell
latency D and kernel time K, kernel i (1-based) is issued at i*L, may start at i*L + D, and starts
at max(i*L + D, end of kernel i-1).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from gpusim.execution.launch import LaunchTimes, launch_kernel, launch_memcpy
from gpusim.hardware.fabric import Fabric, Route
from gpusim.hardware.node import Node
from gpusim.hardware.rates import gpu_rates
from gpusim.kernels import kernel_cost, memcpy_time_s
from gpusim.result import Outcome
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology
from gpusim.spec.workload import KernelChainWorkload, MemcpyOp


def _gpu_id(topology: Topology, wl: KernelChainWorkload) -> str:
    return wl.gpu if wl.gpu is not None else topology.gpus()[0].id


def _metrics(
    makespan_s: float,
    kernel_s: float,
    host_s: float,
    wl: KernelChainWorkload,
    launch_s: float,
    first_start_s: float,
) -> dict[str, float]:
    return {
        "makespan_s": makespan_s,
        "launch_latency_s": first_start_s,
        "time_per_kernel_s": makespan_s / wl.count,
        "kernel_time_s": kernel_s,
        "launch_cost_s": launch_s,
        "gpu_busy_fraction": wl.count * kernel_s / makespan_s,
        "host_busy_fraction": host_s / makespan_s,
        "launch_bound": 1.0 if launch_s > kernel_s else 0.0,
        "kernel_launches": float(wl.count),
    }


def _memcpy_route(fabric: Fabric, host: str, gpu: str, op: MemcpyOp) -> Route:
    return fabric.route(host, gpu) if op.direction == "h2d" else fabric.route(gpu, host)


def des(node: Node, wl: KernelChainWorkload, *, seed: int) -> Outcome:
    """Simulate the chain with the host launch model and a FIFO stream (``seed`` not used:
    nothing is drawn at random)."""
    gpu = node.gpus[_gpu_id(node.topology, wl)]
    host_id = node.host_of[gpu.id]
    thread = node.host_thread(host_id, "main")
    times = LaunchTimes.from_profile(node.profile)
    stream = gpu.stream(0)
    op = wl.kernel
    if isinstance(op, MemcpyOp):
        route = _memcpy_route(node.fabric, host_id, gpu.id, op)
        op_s = memcpy_time_s(op.bytes, route.bottleneck_Bps, route.latency_s)

        def launch() -> Generator[simpy.Event, Any, simpy.Event]:
            return (yield from launch_memcpy(thread, stream, route, op.bytes, times))

    else:
        cost = kernel_cost(op, gpu.rates)
        op_s = cost.time_s

        def launch() -> Generator[simpy.Event, Any, simpy.Event]:
            return (yield from launch_kernel(thread, stream, cost, times, wl.launch))

    def host() -> Generator[simpy.Event, Any, None]:
        done: simpy.Event | None = None
        for _ in range(wl.count):
            done = yield from launch()
        assert done is not None
        yield from thread.wait("cudaStreamSynchronize", [done], times.sync_return_s)

    node.sim.env.process(host())
    makespan = node.sim.run()
    node.finish()
    first = stream.first_start_s
    assert first is not None
    metrics = _metrics(makespan, op_s, thread.busy_s, wl, times.host_cost_s(wl.launch), first)
    metrics["sm_utilisation"] = gpu.busy_sm_s / (gpu.rates.sm_count * makespan)
    return Outcome(
        makespan_s=makespan, metrics=metrics, per_gpu={gpu.id: {"busy_s": stream.busy_s}}
    )


def analytic(
    topology: Topology, profile: CalibrationProfile, wl: KernelChainWorkload, *, seed: int
) -> Outcome:
    """The same chain by its recurrence (exact: nothing contends on one stream; ``seed`` not
    used)."""
    gpu_id = _gpu_id(topology, wl)
    device = next(g for g in topology.gpus() if g.id == gpu_id)
    rates = gpu_rates(device.model, profile)
    times = LaunchTimes.from_profile(profile)
    op = wl.kernel
    if isinstance(op, MemcpyOp):
        route = _memcpy_route(Fabric(topology, profile), device.host, gpu_id, op)
        op_s = memcpy_time_s(op.bytes, route.bottleneck_Bps, route.latency_s)
        sm_s = 0.0
    else:
        cost = kernel_cost(op, rates)
        op_s = cost.time_s
        sm_s = cost.time_s * cost.sms
    launch_s = times.host_cost_s(wl.launch)
    end = 0.0
    for i in range(1, wl.count + 1):
        end = max(i * launch_s + times.doorbell_s, end) + op_s
    makespan = end + times.sync_return_s
    first = launch_s + times.doorbell_s
    metrics = _metrics(makespan, op_s, wl.count * launch_s, wl, launch_s, first)
    metrics["sm_utilisation"] = wl.count * sm_s / (rates.sm_count * makespan)
    return Outcome(
        makespan_s=makespan, metrics=metrics, per_gpu={gpu_id: {"busy_s": wl.count * op_s}}
    )
