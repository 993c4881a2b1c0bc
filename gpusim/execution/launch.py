"""The host-driven launch path: a host thread pays the API cost, the kernel enters its stream
(blocking the call while the stream's launch queue is full) and may start once the doorbell
latency has passed and the stream's previous work is done. The recorded, framework-level runtime
(ops, syncs, graphs) is :mod:`gpusim.execution.runtime`."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal

import simpy

from gpusim.hardware.fabric import Route
from gpusim.hardware.gpu import GPURuntime, Stream
from gpusim.hardware.host import HostThread
from gpusim.kernels.cost import KernelCost
from gpusim.spec.profile import CalibrationProfile
from gpusim.units import us_to_s

LaunchMode = Literal["eager", "graph"]


@dataclass(frozen=True)
class LaunchTimes:
    """Launch-path costs in seconds, from a calibration profile."""

    api_s: float
    doorbell_s: float
    graph_per_kernel_s: float
    """Device-side issue interval of a launched graph's nodes."""
    framework_op_s: float
    sync_return_s: float
    graph_launch_s: float
    """Host time of one cudaGraphLaunch, whatever the graph's size."""
    queue_depth: int
    """Pending launches per stream before a launch call blocks."""

    @classmethod
    def from_profile(cls, profile: CalibrationProfile) -> LaunchTimes:
        """Convert the profile's microsecond values once."""
        lc = profile.launch
        return cls(
            api_s=us_to_s(lc.launch_api_us.value),
            doorbell_s=us_to_s(lc.doorbell_to_start_us.value),
            graph_per_kernel_s=us_to_s(lc.graph_launch_per_kernel_us.value),
            framework_op_s=us_to_s(lc.framework_op_us.value),
            sync_return_s=us_to_s(lc.sync_return_us.value),
            graph_launch_s=us_to_s(profile.host.graph_launch_us.value),
            queue_depth=round(profile.host.launch_queue_depth.value),
        )

    def issue_interval_s(self, mode: LaunchMode) -> float:
        """Least spacing of back-to-back kernels set by their issue: the host's cudaLaunchKernel
        in eager mode, the graph executor's per-node cost in a graph."""
        return self.api_s if mode == "eager" else self.graph_per_kernel_s


def enter_queue(stream: Stream, depth: int) -> Generator[simpy.Event, Any, bool]:
    """Block a launch call while ``stream`` has ``depth`` launches pending. Returns whether the
    slot was handed over (then submit with ``reserved=True``)."""
    granted = stream.room(depth)
    if granted is None:
        return False
    yield granted
    return True


def launch_kernel(
    thread: HostThread,
    stream: Stream,
    cost: KernelCost,
    times: LaunchTimes,
) -> Generator[simpy.Event, Any, simpy.Event]:
    """Launch ``cost`` on ``stream`` from ``thread``; returns the kernel's completion event."""
    yield from thread.spend(f"launch {cost.name}", times.api_s)
    reserved = yield from enter_queue(stream, times.queue_depth)
    gpu = stream.gpu
    return stream.submit(
        cost.name, lambda: run_cost(gpu, cost), times.doorbell_s, reserved=reserved
    )


def run_cost(gpu: GPURuntime, cost: KernelCost) -> Generator[simpy.Event, Any, None]:
    """Run a modelled kernel on a GPU (the stream operation a launch enqueues)."""
    return gpu.run_kernel(
        cost.name, cost.sms, cost.floor_s, cost.compute_time_s, cost.hbm_bytes, cost.l2_bytes
    )


def run_cost_then(gpu: GPURuntime, cost: KernelCost, then: Callable[[], None]) -> None:
    """:func:`run_cost` as calls: ``then()`` runs where the generator would return
    (:meth:`GPURuntime.run_kernel_then`; a stream op for :meth:`Stream.submit_then`)."""
    gpu.run_kernel_then(
        then, cost.name, cost.sms, cost.floor_s, cost.compute_time_s, cost.hbm_bytes, cost.l2_bytes
    )


def launch_memcpy(
    thread: HostThread,
    stream: Stream,
    route: Route,
    size_B: float,
    times: LaunchTimes,
    name: str = "memcpy",
) -> Generator[simpy.Event, Any, simpy.Event]:
    """cudaMemcpyAsync on ``stream`` (host cost as a launch); returns its completion event."""
    yield from thread.spend(f"launch {name}", times.api_s)
    reserved = yield from enter_queue(stream, times.queue_depth)
    gpu = stream.gpu
    return stream.submit(
        name,
        lambda: gpu.copy(route.resources, route.latency_s, size_B, name),
        times.doorbell_s,
        reserved=reserved,
    )
