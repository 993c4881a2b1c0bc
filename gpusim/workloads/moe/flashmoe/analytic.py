"""FlashMoE's forward in closed form (see :func:`analytic`)."""

from __future__ import annotations

import math

from gpusim.engine.maxmin import max_min_fair_rates
from gpusim.execution.launch import LaunchTimes
from gpusim.execution.persistent import (
    DeviceTimes,
)
from gpusim.hardware.fabric import Fabric
from gpusim.hardware.rates import gpu_rates
from gpusim.result import Outcome
from gpusim.spec.moe import MoELayerWorkload
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology
from gpusim.workloads.moe.flashmoe.plan import (
    TASK_KINDS,
    check_counts,
    flashmoe_strategy,
    layer_metrics,
    plan_gpu,
    superblock_packets,
    tile_rows,
)
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch


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
    strategy = flashmoe_strategy(wl)
    counts = check_counts(geometry, batch)
    fabric = Fabric(topology, profile)
    launch = LaunchTimes.from_profile(profile)
    times = DeviceTimes.from_profile(profile)
    specs = {g.id: g.model for g in topology.gpus()}
    ids = geometry.gpus
    n = len(ids)
    rates = [gpu_rates(specs[gid], profile) for gid in ids]
    plans = [plan_gpu(r, strategy, geometry, times.flag_handoff_s) for r in rates]
    h = times.flag_handoff_s
    s = times.scheduler_s_per_task
    lat = times.task_latency_s
    sub = times.subscriber_s_per_task
    hbm_base = len(fabric.capacities_Bps)  # GPU HBMs follow the fabric's resources
    node_of = {g.id: g.node for g in topology.gpus()}

    def rdma(g: int, d: int) -> bool:
        return node_of[ids[g]] != node_of[ids[d]]

    start = [launch.api_s + launch.doorbell_s for _ in range(n)]
    disp_start = [
        start[i] + r.kernel_floor_s + p.clear_s + p.gate_compute_s + times.grid_barrier_s
        for i, (r, p) in enumerate(zip(rates, plans, strict=True))
    ]

    # Dispatch: every non-empty packet as one flow (an RDMA packet as two: its staging copy and
    # its uncapped put); static max-min rates with the caps.
    flows: list[tuple[int, int, int]] = []  # (src, expert, superblock; -1: an RDMA put)
    routes: list[tuple[int, ...]] = []
    caps: list[float] = []
    link_bytes: dict[str, float] = {}
    for g in range(n):
        plan = plans[g]
        c = plan.grid.block_stream_Bps
        for j, experts in enumerate(superblock_packets(g, geometry, plan.superblocks)):
            for e in experts:
                if counts[g, e] == 0:
                    continue
                dst = geometry.owner(e)
                flows.append((g, e, j))
                if dst == g or rdma(g, dst):
                    routes.append((hbm_base + g,))
                    caps.append(plan.sbz * c)
                if rdma(g, dst):
                    flows.append((g, e, -1))
                    routes.append(fabric.route(ids[g], ids[dst]).resources)
                    caps.append(math.inf)
                elif dst != g:
                    routes.append(fabric.route(ids[g], ids[dst]).resources)
                    caps.append(plan.sbz * c / 2)
    capacities = list(fabric.capacities_Bps) + [r.hbm_achievable_Bps for r in rates]
    flow_rates = max_min_fair_rates(routes, [1] * len(routes), caps, capacities)
    rate_of = {(g, e): r for (g, e, j), r in zip(flows, flow_rates, strict=True) if j >= 0}
    put_rate_of = {(g, e): r for (g, e, j), r in zip(flows, flow_rates, strict=True) if j < 0}

    arrivals: list[list[tuple[float, int, int]]] = [[] for _ in range(n)]  # dst: (t, src, e)
    last_flag = list(disp_start)
    disp_busy = [0.0] * n
    disp_end = list(disp_start)
    for g in range(n):
        plan = plans[g]
        for experts in superblock_packets(g, geometry, plan.superblocks):
            t = disp_start[g]
            for e in experts:
                dst = geometry.owner(e)
                tokens = int(counts[g, e])
                route_lat = 0.0 if dst == g else fabric.route(ids[g], ids[dst]).latency_s
                put_s = 0.0
                if tokens > 0:
                    if rdma(g, dst):  # staged, then a non-blocking put
                        t += 2 * tokens * plan.row_bytes / rate_of[(g, e)]
                        put_s = route_lat + tokens * plan.row_bytes / put_rate_of[(g, e)]
                    else:
                        size_B = tokens * plan.row_bytes * (2 if dst == g else 1)
                        t += route_lat + size_B / rate_of[(g, e)]
                    if dst != g:
                        for r in fabric.route(ids[g], ids[dst]).resources:
                            name = fabric.resources[r].name
                            link_bytes[name] = link_bytes.get(name, 0.0) + tokens * plan.row_bytes
                arrive = t + put_s + h if put_s else t + route_lat + h
                arrivals[dst].append((arrive, g, e))
                last_flag[g] = max(last_flag[g], arrive)
            disp_busy[g] += plan.sbz * (t - disp_start[g])
            disp_end[g] = max(disp_end[g], t)

    end = [0.0] * n
    work = [0.0] * n
    tasks = [0] * n
    first_ready = [math.inf] * n
    busy = {kind: [0.0] * n for kind in TASK_KINDS}
    put_back: dict[tuple[int, int], list[float]] = {}  # (source, resource): [first, bytes, tail]
    for d in range(n):
        plan = plans[d]
        sub_free = 0.0
        for arrive, g, e in sorted(arrivals[d]):
            tokens = int(counts[g, e])
            rows_list = tile_rows(tokens, plan.tile_m)
            n0 = len(rows_list) * plan.tn
            ready = max(arrive, sub_free) + n0 * sub
            sub_free = ready
            if tokens == 0:
                end[d] = max(end[d], ready)
                continue
            first_ready[d] = min(first_ready[d], ready)
            home = plans[g]
            back_res: tuple[int, ...] = ()
            back_lat = 0.0
            back_Bps = math.inf
            if g != d:
                back = fabric.route(ids[d], ids[g])
                back_lat, back_res = back.latency_s, back.resources
                back_Bps = back.bottleneck_Bps
            remote = rdma(d, g)
            for r, rows in enumerate(rows_list):
                out_B = rows * plan.tile_n * plan.element_bytes
                if remote:  # local epilogue; one uncontended put of the row tile
                    write = out_B / plan.grid.block_stream_Bps
                    back_s = back_lat + plan.tnx * out_B / back_Bps + h + plan.tnx * sub
                else:
                    write = back_lat + out_B / plan.grid.block_stream_Bps
                    back_s = back_lat + h + sub
                comb = home.combine_B(rows) / home.grid.block_stream_Bps
                chain = (
                    ready
                    + (r + 1) * plan.tn * s
                    + lat
                    + plan.gemm0_s
                    + plan.tnx * s
                    + lat
                    + plan.gemm1_s
                    + write
                    + back_s
                    + s
                    + lat
                    + comb
                )
                end[g] = max(end[g], chain)
                busy["gemm0"][d] += plan.tn * plan.gemm0_s
                busy["gemm1"][d] += plan.tnx * (plan.gemm1_s + write)
                busy["combine"][g] += plan.tnx * comb
                work[d] += plan.tn * (s + lat + plan.gemm0_s)
                work[d] += plan.tnx * (s + lat + plan.gemm1_s + write)
                work[g] += plan.tnx * (s + lat + comb)
                tasks[d] += plan.tn + plan.tnx
                tasks[g] += plan.tnx
                for res in back_res:
                    name = fabric.resources[res].name
                    link_bytes[name] = link_bytes.get(name, 0.0) + plan.tnx * out_B
                if remote:  # the returns into g share the links of their routes
                    tail = h + plan.tnx * sub + s + lat + comb
                    for res in back_res:
                        load = put_back.setdefault((g, res), [math.inf, 0.0, 0.0])
                        load[0] = min(load[0], ready + plan.tn * s + lat + plan.gemm0_s)
                        load[1] += plan.tnx * out_B
                        load[2] = max(load[2], tail)
    # link bound of the RDMA returns: from the first one ready, all bytes over each resource
    for (g, res), (first, back_B, tail) in put_back.items():
        end[g] = max(end[g], first + back_B / fabric.capacities_Bps[res] + tail)
    for g in range(n):
        plan = plans[g]
        if first_ready[g] < math.inf:
            p = plan.grid.processors
            full_comb = plan.combine_B(plan.tile_m) / plan.grid.block_stream_Bps
            end[g] = max(
                end[g],
                first_ready[g] + work[g] / p,
                disp_start[g] + (disp_busy[g] + work[g]) / p,
                first_ready[g] + tasks[g] * s + lat + full_comb,
            )
        end[g] = max(end[g], disp_end[g])
    latency = max(end)

    per_gpu: dict[str, dict[str, float]] = {}
    busy_sm_s = 0.0
    task_busy = 0.0
    held = 0.0
    for g, gid in enumerate(ids):
        plan = plans[g]
        p = plan.grid.processors
        kernel_s = end[g] - start[g]
        gemm = busy["gemm0"][g] + busy["gemm1"][g]
        comb = busy["combine"][g]
        gate_s = disp_start[g] - start[g]
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
            "dispatch_s": last_flag[g] - start[g],
            "dispatch_work_s": disp_busy[g] / p,
            "gemm_s": gemm / p,
            "combine_s": comb / p,
            "idle_s": kernel_s - gate_s - (disp_busy[g] + gemm + comb) / p,
            "tasks": float(tasks[g]),
            "blocks": float(plan.grid.blocks),
            "processors": float(p),
            "sm_utilisation": used / (plan.grid.blocks * kernel_s),
        }
    metrics = layer_metrics(
        geometry, batch, counts, plans, latency, busy_sm_s, task_busy, held, sum(tasks)
    )
    return Outcome(makespan_s=latency, metrics=metrics, per_gpu=per_gpu, link_bytes=link_bytes)
