"""FlashMoE's forward in closed form (see :func:`analytic`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gpusim.execution.launch import LaunchTimes
from gpusim.execution.persistent import (
    DeviceTimes,
)
from gpusim.hardware.fabric import Fabric
from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import GPURates
from gpusim.hardware.static_flows import static_rates_Bps
from gpusim.result import Outcome
from gpusim.spec.moe import MoELayerWorkload
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology
from gpusim.workloads.moe.flashmoe.analytic_tasks import Work, expert_tasks
from gpusim.workloads.moe.flashmoe.plan import (
    FlashMoEPlan,
    check_counts,
    flashmoe_strategy,
    layer_metrics,
    plan_gpu,
    superblock_packets,
)
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch

DispatchFlow = tuple[int, int, int]
"""(source, expert, superblock) of one dispatch flow; superblock -1: an RDMA packet's put."""


def analytic(
    topology: Topology,
    profile: CalibrationProfile,
    wl: MoELayerWorkload,
    geometry: LayerGeometry,
    batch: RoutedBatch,
) -> Outcome:
    """Closed form of one FlashMoE forward.

    Per GPU: launch + floor + clear + gate + barrier, then dispatch packets at their static
    max-min rates (all packets of all sources assumed in flight together, the superblocks' own
    sequences added up; an RDMA packet's staging copy and its uncapped put as two flows, the
    superblock moving on after the copy), flags, and the subscriber's serial decode. A GPU then
    ends at the latest of

    - each row tile's chain: its packet's tasks ready, the scheduler's assignments of that packet's
      GEMM0 tasks up to the row tile, GEMM0, the row tile's TNx assignments, GEMM1 with its write,
      the flag back, the decode and assignment of its combine, the combine (ends on the source);
      for an RDMA source the write is the local epilogue and the row tile's put follows at the
      back route's uncontended bottleneck rate (an estimate: puts of different row tiles share
      the NIC in the DES), then the decode of its TNx combines;
    - the processor throughput bound: first tasks ready + (sum over its tasks of assignment +
      start latency + duration) / P;
    - the scheduler bound: first tasks ready + tasks x scheduler time + the last task.

    Exact (to rounding) when nothing contends and every phase fits in one wave: one GPU, one
    expert, whole row tiles, GEMM1 tiles per row tile <= GEMM0 tiles per row tile, subscriber
    time <= scheduler time per task (the test case). Elsewhere it is an estimate: it ignores
    contention of tasks of different packets for processors and for the scheduler beyond the
    bounds above, NVLink contention of GEMM1 writes, and rate changes as dispatch packets finish.
    """
    layer = Layer.of(topology, profile, wl, geometry, batch)
    dispatch = _dispatch(layer)
    work = Work.empty(layer.n, dispatch.link_bytes)
    for d in range(layer.n):
        expert_tasks(layer, d, dispatch.arrivals[d], work)
    end = _gpu_ends(layer, dispatch, work)
    latency = max(end)
    per_gpu, busy_sm_s, task_busy, held = _per_gpu(layer, dispatch, work, end)
    metrics = layer_metrics(
        geometry,
        batch,
        layer.counts,
        layer.plans,
        latency,
        busy_sm_s,
        task_busy,
        held,
        sum(work.tasks),
    )
    return Outcome(makespan_s=latency, metrics=metrics, per_gpu=per_gpu, link_bytes=work.link_bytes)


@dataclass(frozen=True)
class Layer:
    """What every stage of the closed form reads: the GPUs' plans, the fabric, the costs."""

    geometry: LayerGeometry
    counts: np.ndarray
    platform: Platform
    fabric: Fabric
    times: DeviceTimes
    ids: list[str]
    rates: list[GPURates]
    plans: list[FlashMoEPlan]
    node_of: dict[str, int]
    start: list[float]
    """When each GPU's kernel starts: launch API + doorbell."""
    disp_start: list[float]
    """When each GPU's dispatch starts: start + floor + clear + gate + grid barrier."""

    @classmethod
    def of(
        cls,
        topology: Topology,
        profile: CalibrationProfile,
        wl: MoELayerWorkload,
        geometry: LayerGeometry,
        batch: RoutedBatch,
    ) -> Layer:
        """Plan every GPU of the layer and time its kernel's start and its dispatch's."""
        strategy = flashmoe_strategy(wl)
        counts = check_counts(geometry, batch)
        launch = LaunchTimes.from_profile(profile)
        times = DeviceTimes.from_profile(profile)
        platform = Platform.of(topology, profile)
        ids = geometry.gpus
        rates = platform.rates_of(ids)
        plans = [plan_gpu(r, strategy, geometry, times.flag_handoff_s) for r in rates]
        start = [launch.api_s + launch.doorbell_s for _ in ids]
        disp_start = [
            start[i] + r.kernel_floor_s + p.clear_s + p.gate_compute_s + times.grid_barrier_s
            for i, (r, p) in enumerate(zip(rates, plans, strict=True))
        ]
        return cls(
            geometry=geometry,
            counts=counts,
            platform=platform,
            fabric=platform.fabric,
            times=times,
            ids=ids,
            rates=rates,
            plans=plans,
            node_of={g.id: g.node for g in topology.gpus()},
            start=start,
            disp_start=disp_start,
        )

    @property
    def n(self) -> int:
        """GPUs of the layer."""
        return len(self.ids)

    def rdma(self, g: int, d: int) -> bool:
        """Whether GPUs ``g`` and ``d`` are on different nodes."""
        return self.node_of[self.ids[g]] != self.node_of[self.ids[d]]


# -- dispatch --------------------------------------------------------------------------------


@dataclass
class _Dispatch:
    """The dispatch phase of every GPU."""

    arrivals: list[list[tuple[float, int, int]]]
    """Per destination: (arrival time with its flag, source, expert) of every packet."""
    last_flag: list[float]
    busy: list[float]
    """Block-seconds each GPU's superblocks spent dispatching."""
    end: list[float]
    link_bytes: dict[str, float]


def _dispatch_flows(
    layer: Layer,
) -> tuple[list[DispatchFlow], list[tuple[int, ...]], list[float]]:
    """Every non-empty packet as one flow (an RDMA packet as two: its staging copy and its
    uncapped put), with its route (a GPU's HBM at the platform's index) and its rate cap."""
    fabric, ids, geometry = layer.fabric, layer.ids, layer.geometry
    flows: list[DispatchFlow] = []
    routes: list[tuple[int, ...]] = []
    caps: list[float] = []
    for g in range(layer.n):
        plan = layer.plans[g]
        c = plan.grid.block_stream_Bps
        for j, experts in enumerate(superblock_packets(g, geometry, plan.superblocks)):
            for e in experts:
                if layer.counts[g, e] == 0:
                    continue
                dst = geometry.owner(e)
                flows.append((g, e, j))
                if dst == g or layer.rdma(g, dst):
                    routes.append((layer.platform.hbm_resource[ids[g]],))
                    caps.append(plan.sbz * c)
                if layer.rdma(g, dst):
                    flows.append((g, e, -1))
                    routes.append(fabric.route(ids[g], ids[dst]).resources)
                    caps.append(math.inf)
                elif dst != g:
                    routes.append(fabric.route(ids[g], ids[dst]).resources)
                    caps.append(plan.sbz * c / 2)
    return flows, routes, caps


def _dispatch_rates(
    layer: Layer,
    flows: list[DispatchFlow],
    routes: list[tuple[int, ...]],
    caps: list[float],
) -> tuple[dict[tuple[int, int], float], dict[tuple[int, int], float]]:
    """Static max-min rates of the dispatch flows, all in flight together: per (source, expert)
    the packet's rate and, for an RDMA packet, its put's."""
    flow_rates = static_rates_Bps(layer.platform, routes, caps)
    rate_of = {(g, e): r for (g, e, j), r in zip(flows, flow_rates, strict=True) if j >= 0}
    put_rate_of = {(g, e): r for (g, e, j), r in zip(flows, flow_rates, strict=True) if j < 0}
    return rate_of, put_rate_of


def _dispatch(layer: Layer) -> _Dispatch:
    """Each superblock's packets in sequence at their static rates; a packet arrives (with its
    flag) after its transfer, an RDMA packet after its staging copy and its put."""
    fabric, ids, geometry, h = layer.fabric, layer.ids, layer.geometry, layer.times.flag_handoff_s
    rate_of, put_rate_of = _dispatch_rates(layer, *_dispatch_flows(layer))
    out = _Dispatch(
        arrivals=[[] for _ in range(layer.n)],
        last_flag=list(layer.disp_start),
        busy=[0.0] * layer.n,
        end=list(layer.disp_start),
        link_bytes={},
    )
    link_bytes = out.link_bytes
    for g in range(layer.n):
        plan = layer.plans[g]
        for experts in superblock_packets(g, geometry, plan.superblocks):
            t = layer.disp_start[g]
            for e in experts:
                dst = geometry.owner(e)
                tokens = int(layer.counts[g, e])
                route_lat = 0.0 if dst == g else fabric.route(ids[g], ids[dst]).latency_s
                put_s = 0.0
                if tokens > 0:
                    if layer.rdma(g, dst):  # staged, then a non-blocking put
                        t += 2 * tokens * plan.row_bytes / rate_of[(g, e)]
                        put_s = route_lat + tokens * plan.row_bytes / put_rate_of[(g, e)]
                    else:
                        size_B = tokens * plan.row_bytes * (2 if dst == g else 1)
                        t += route_lat + size_B / rate_of[(g, e)]
                    if dst != g:
                        for r in fabric.route(ids[g], ids[dst]).links:
                            name = fabric.resources[r].name
                            link_bytes[name] = link_bytes.get(name, 0.0) + tokens * plan.row_bytes
                arrive = t + put_s + h if put_s else t + route_lat + h
                out.arrivals[dst].append((arrive, g, e))
                out.last_flag[g] = max(out.last_flag[g], arrive)
            out.busy[g] += plan.sbz * (t - layer.disp_start[g])
            out.end[g] = max(out.end[g], t)
    return out


# -- ends and rows ---------------------------------------------------------------------------


def _gpu_ends(layer: Layer, dispatch: _Dispatch, work: Work) -> list[float]:
    """Each GPU's end: the latest chain, the RDMA returns' link bound, the processor throughput
    bound, the scheduler bound and its dispatch."""
    s, lat = layer.times.scheduler_s_per_task, layer.times.task_latency_s
    end = work.end
    # link bound of the RDMA returns: from the first one ready, all bytes over each resource
    for (g, res), (first, back_B, tail) in work.put_back.items():
        end[g] = max(end[g], first + back_B / layer.fabric.capacities_Bps[res] + tail)
    for g in range(layer.n):
        plan = layer.plans[g]
        if work.first_ready[g] < math.inf:
            p = plan.grid.processors
            full_comb = plan.combine_B(plan.tile_m) / plan.grid.block_stream_Bps
            end[g] = max(
                end[g],
                work.first_ready[g] + work.work[g] / p,
                layer.disp_start[g] + (dispatch.busy[g] + work.work[g]) / p,
                work.first_ready[g] + work.tasks[g] * s + lat + full_comb,
            )
        end[g] = max(end[g], dispatch.end[g])
    return end


def _per_gpu(
    layer: Layer, dispatch: _Dispatch, work: Work, end: list[float]
) -> tuple[dict[str, dict[str, float]], float, float, float]:
    """Per-GPU rows, and the busy SM-seconds, task-busy processor-seconds and held SM-seconds
    the layer metrics need."""
    per_gpu: dict[str, dict[str, float]] = {}
    busy_sm_s = 0.0
    task_busy = 0.0
    held = 0.0
    start, disp_busy = layer.start, dispatch.busy
    for g, gid in enumerate(layer.ids):
        plan = layer.plans[g]
        p = plan.grid.processors
        kernel_s = end[g] - start[g]
        gemm = work.busy["gemm0"][g] + work.busy["gemm1"][g]
        comb = work.busy["combine"][g]
        gate_s = layer.disp_start[g] - start[g]
        used = (
            plan.clear_s * plan.grid.blocks
            + plan.gate_tiles * plan.gate_tile_s
            + disp_busy[g]
            + gemm
            + comb
        )
        busy_sm_s += used / plan.grid.blocks_per_sm
        task_busy += gemm + comb
        held += plan.grid.sms * kernel_s
        per_gpu[gid] = {
            "start_s": start[g],
            "end_s": end[g],
            "kernel_s": kernel_s,
            "gate_s": gate_s,
            "dispatch_s": dispatch.last_flag[g] - start[g],
            "dispatch_work_s": disp_busy[g] / p,
            "gemm_s": gemm / p,
            "combine_s": comb / p,
            "idle_s": kernel_s - gate_s - (disp_busy[g] + gemm + comb) / p,
            "tasks": float(work.tasks[g]),
            "blocks": float(plan.grid.blocks),
            "processors": float(p),
            "sm_utilisation": used / (plan.grid.blocks * kernel_s),
        }
    return per_gpu, busy_sm_s, task_busy, held
