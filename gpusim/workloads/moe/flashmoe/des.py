"""FlashMoE's forward in the discrete-event engine: packets, superblocks and the task DAG on the
persistent-kernel engine (see the package docstring)."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import simpy

from gpusim.errors import SimulationError
from gpusim.execution.launch import LaunchTimes
from gpusim.execution.persistent import (
    DeviceTimes,
    FlowGate,
    PersistentKernel,
    TaskGroup,
)
from gpusim.hardware.node import Node
from gpusim.result import Outcome
from gpusim.spec.moe import MoELayerWorkload
from gpusim.spec.topology import GPUDevice
from gpusim.workloads.moe.flashmoe.plan import (
    FlashMoEPlan,
    check_counts,
    expected_at,
    flashmoe_strategy,
    layer_metrics,
    plan_gpu,
    superblock_packets,
    tile_rows,
)
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch


@dataclass(slots=True, eq=False)
class _Packet:
    src: int
    dst: int
    expert: int
    tokens: int
    rows: list[int]
    done0: list[int]
    back_route: tuple[int, ...]
    back_latency_s: float
    rdma: bool = False
    """The destination is on another node: dispatch and results go as NVSHMEM puts."""


@dataclass(slots=True, eq=False)
class _SuperBlock:
    src: int
    experts: list[int]
    start_s: float
    index: int = 0


@dataclass
class _Run:
    """State of one DES forward."""

    node: Node
    geometry: LayerGeometry
    counts: np.ndarray
    times: DeviceTimes
    gate: FlowGate
    plans: list[FlashMoEPlan]
    node_of: list[int]
    """The node index (``GPUDevice.node``) of each GPU of the layer."""
    kernels: list[PersistentKernel] = field(default_factory=list)
    last_flag_s: list[float] = field(default_factory=list)
    gate_end_s: list[float] = field(default_factory=list)
    _combine_flow: dict[tuple[int, int], tuple[tuple[int, ...], float, float]] = field(
        default_factory=dict
    )
    """(source, rows) -> the combine tasks' HBM route, bytes and cap."""

    def __post_init__(self) -> None:
        self.env = self.node.sim.env
        self._handoff_s = self.times.flag_handoff_s

    def hbm(self, g: int) -> int:
        return self.node.gpus[self.geometry.gpus[g]].hbm

    # -- kernel body (prologue and dispatch) -----------------------------------------------------

    def body(self, g: int) -> Callable[[PersistentKernel], Generator[simpy.Event, Any, None]]:
        def gen(kernel: PersistentKernel) -> Generator[simpy.Event, Any, None]:
            env, plan = self.env, self.plans[g]
            grid = plan.grid
            if plan.clear_B > 0:
                t0 = float(env.now)
                cleared = env.event()

                def zeroed(_payload: object) -> None:
                    cleared.succeed()

                self.gate.send(
                    (self.hbm(g),), plan.clear_B, 0.0, grid.blocks * grid.block_stream_Bps, zeroed
                )
                yield cleared
                kernel.add_busy("clear", grid.blocks * (float(env.now) - t0))
            yield env.timeout(plan.gate_compute_s + self.times.grid_barrier_s)
            kernel.add_busy("gate", plan.gate_tiles * plan.gate_tile_s)
            self.gate_end_s[g] = float(env.now) - (kernel.start_s or 0.0)
            self.last_flag_s[g] = float(env.now)
            self.dispatch(g, kernel)

        return gen

    def dispatch(self, g: int, kernel: PersistentKernel) -> None:
        plan = self.plans[g]
        now = float(self.env.now)
        sbs = [
            _SuperBlock(g, experts, now)
            for experts in superblock_packets(g, self.geometry, plan.superblocks)
        ]
        kernel.add_processors(plan.grid.processors - len(sbs) * plan.sbz)
        for sb in sbs:
            self.send_next(sb)

    def send_next(self, sb: _SuperBlock) -> None:
        geo, g = self.geometry, sb.src
        plan, kernel = self.plans[g], self.kernels[g]
        while sb.index < len(sb.experts):
            e = sb.experts[sb.index]
            sb.index += 1
            dst = geo.owner(e)
            n = int(self.counts[g, e])
            src_id, dst_id = geo.gpus[g], geo.gpus[dst]
            if dst != g:
                route = self.node.fabric.route(src_id, dst_id)
                back = self.node.fabric.route(dst_id, src_id)
                flag_s = route.latency_s + self.times.flag_handoff_s
                rdma = self.node_of[g] != self.node_of[dst]
                # an RDMA put reads its staged copy from HBM; a P2P epilogue stores the tile
                # from registers, so it writes the home GPU's HBM and reads none
                returns = back.resources if rdma else (*back.links, self.hbm(g))
                pkt = _Packet(
                    g,
                    dst,
                    e,
                    n,
                    tile_rows(n, plan.tile_m),
                    [],
                    returns,
                    back.latency_s,
                    rdma,
                )
            else:
                flag_s = self.times.flag_handoff_s
                pkt = _Packet(g, dst, e, n, tile_rows(n, plan.tile_m), [], (self.hbm(g),), 0.0)
            pkt.done0 = [0] * len(pkt.rows)
            if n == 0:  # a noop packet: one thread sends only the signal
                self.flag_later(flag_s, pkt)
                continue
            c = plan.grid.block_stream_Bps
            size_B = float(n * plan.row_bytes)
            if pkt.rdma:  # stage into the own send cell (HBM copy), then one put
                self.gate.send(
                    (self.hbm(g),),
                    2 * size_B,
                    0.0,
                    plan.sbz * c,
                    self.staged,
                    (sb, pkt, route.resources, route.latency_s),
                )
            elif dst != g:
                self.gate.send(
                    route.resources,
                    size_B,
                    route.latency_s,
                    plan.sbz * c / 2,
                    self.copied,
                    (sb, pkt, flag_s),
                )
            else:
                self.gate.send(
                    (self.hbm(g),), 2 * size_B, 0.0, plan.sbz * c, self.copied, (sb, pkt, flag_s)
                )
            return
        now = float(self.env.now)
        kernel.add_processors(plan.sbz)
        kernel.add_busy("dispatch", plan.sbz * (now - sb.start_s))

    def copied(self, payload: tuple[_SuperBlock, _Packet, float]) -> None:
        sb, pkt, flag_s = payload
        self.flag_later(flag_s, pkt)
        self.send_next(sb)

    def staged(self, payload: tuple[_SuperBlock, _Packet, tuple[int, ...], float]) -> None:
        """An RDMA packet is in the send cell: the superblock's last block issues one
        non-blocking put with signal (NIC-driven, not capped at a block's rate) and the
        superblock moves on; the signal is seen after the put completes."""
        sb, pkt, route, latency_s = payload
        size_B = float(pkt.tokens * self.plans[pkt.src].row_bytes)
        self.gate.send(route, size_B, latency_s, math.inf, self.put_done, pkt)
        self.send_next(sb)

    def put_done(self, pkt: _Packet) -> None:
        self.flag_later(self.times.flag_handoff_s, pkt)

    def flag_later(self, delay_s: float, pkt: _Packet) -> None:
        ev = self.env.timeout(delay_s, pkt)
        ev.callbacks.append(self.packet_arrived)

    def packet_arrived(self, ev: simpy.Event) -> None:
        pkt = cast(_Packet, ev.value)
        now = float(self.env.now)
        if now > self.last_flag_s[pkt.src]:
            self.last_flag_s[pkt.src] = now
        plan = self.plans[pkt.dst]
        kernel = self.kernels[pkt.dst]
        if pkt.tokens == 0:
            kernel.deliver(0, None, signal=True)
            return
        n_tasks = len(pkt.rows) * plan.tn
        group = TaskGroup("gemm0", n_tasks, plan.gemm0_s, self.gemm0_done, data=pkt)
        kernel.deliver(n_tasks, group, signal=True)

    # -- task DAG --------------------------------------------------------------------------------

    def gemm0_done(self, group: TaskGroup, first: int, count: int) -> None:
        pkt: _Packet = group.data
        tn = self.plans[pkt.dst].tn
        done0 = pkt.done0
        if count == 1:  # task granularity
            r = first // tn
            done0[r] += 1
            if done0[r] == tn:
                self.row_tile_done(pkt, r)
            return
        end = first + count
        while first < end:
            r = first // tn
            upto = min(end, (r + 1) * tn)
            done0[r] += upto - first
            first = upto
            if done0[r] == tn:
                self.row_tile_done(pkt, r)

    def row_tile_done(self, pkt: _Packet, r: int) -> None:
        """Row tile ``r`` of ``pkt`` has its TN GEMM0 tasks done: submit its GEMM1 tasks."""
        plan = self.plans[pkt.dst]
        rows = pkt.rows[r]
        if pkt.rdma:  # epilogue into the local send cell; one put per row tile
            self.kernels[pkt.dst].submit(
                TaskGroup(
                    "gemm1",
                    plan.tnx,
                    plan.gemm1_s,
                    self.gemm1_done_rdma,
                    flow_route=(self.hbm(pkt.dst),),
                    flow_B=float(rows * plan.tile_n * plan.element_bytes),
                    flow_cap_Bps=plan.grid.block_stream_Bps,
                    data=(pkt, r),
                )
            )
            return
        # what each GEMM1 task's end needs, found once per row tile: the source's kernel, the
        # delay of the results' flag and the combine tasks' flow
        back = (
            self.kernels[pkt.src],
            pkt.back_latency_s + self._handoff_s,
            self.combine_flow(pkt.src, rows),
        )
        self.kernels[pkt.dst].submit(
            TaskGroup(
                "gemm1",
                plan.tnx,
                plan.gemm1_s,
                self.gemm1_done,
                flow_route=pkt.back_route,
                flow_B=float(rows * plan.tile_n * plan.element_bytes),
                flow_latency_s=pkt.back_latency_s,
                flow_cap_Bps=plan.grid.block_stream_Bps,
                data=back,
            )
        )

    def gemm1_done(self, group: TaskGroup, _first: int, count: int) -> None:
        kernel, delay_s, (route, size_B, cap) = group.data
        # the results' flag reaches the source's subscriber after the write's latency and the
        # handoff: held in its virtual clock, without an event while its processors are busy
        kernel.deliver_later(
            delay_s, count, TaskGroup("combine", count, 0.0, None, route, size_B, 0.0, cap)
        )

    def gemm1_done_rdma(self, group: TaskGroup, _first: int, count: int) -> None:
        """The row tile's counter reaches TN + TNx: one put of ``rows x H`` elements back to
        the source; its subscriber then sees the signal and creates TNx combine tasks."""
        pkt, r = cast(tuple[_Packet, int], group.data)
        plan = self.plans[pkt.dst]
        pkt.done0[r] += count
        if pkt.done0[r] == plan.tn + plan.tnx:
            rows = pkt.rows[r]
            self.gate.send(
                pkt.back_route,
                float(rows * plan.row_bytes),
                pkt.back_latency_s,
                math.inf,
                self.tile_returned,
                (pkt.src, rows, plan.tnx),
            )

    def tile_returned(self, payload: tuple[int, int, int]) -> None:
        ev = self.env.timeout(self.times.flag_handoff_s, payload)
        ev.callbacks.append(self.result_arrived)

    def result_arrived(self, ev: simpy.Event) -> None:
        src, rows, count = cast(tuple[int, int, int], ev.value)
        self.kernels[src].deliver(count, self.combine_group(src, rows, count))

    def combine_flow(self, src: int, rows: int) -> tuple[tuple[int, ...], float, float]:
        """The HBM route, bytes and cap of a combine task of a returned tile of ``rows`` rows
        at ``src``."""
        key = (src, rows)
        flow = self._combine_flow.get(key)
        if flow is None:
            plan = self.plans[src]
            flow = ((self.hbm(src),), plan.combine_B(rows), plan.grid.block_stream_Bps)
            self._combine_flow[key] = flow
        return flow

    def combine_group(self, src: int, rows: int, count: int) -> TaskGroup:
        """``count`` combine tasks of a returned tile of ``rows`` rows at ``src``."""
        route, size_B, cap = self.combine_flow(src, rows)
        return TaskGroup("combine", count, 0.0, None, route, size_B, 0.0, cap)


def des(
    node: Node,
    wl: MoELayerWorkload,
    geometry: LayerGeometry,
    batch: RoutedBatch,
    *,
    flow_bypass: bool = True,
) -> Outcome:
    """Simulate one FlashMoE forward on ``node`` (see the module docstring).

    ``flow_bypass=False`` sends every transfer through the fluid network instead of timing the
    uncontended ones in closed form (same result, slower: the reference for tests).
    """
    strategy = flashmoe_strategy(wl)
    counts = check_counts(geometry, batch)
    env = node.sim.env
    launch = LaunchTimes.from_profile(node.profile)
    times = DeviceTimes.from_profile(node.profile)
    gate = FlowGate(node.network, bypass=flow_bypass)
    ids = geometry.gpus
    n = len(ids)
    plans = [
        plan_gpu(node.gpus[gid].rates, strategy, geometry, times.flag_handoff_s) for gid in ids
    ]
    node_of = [cast(GPUDevice, node.topology.device(gid)).node for gid in ids]
    run = _Run(node, geometry, counts, times, gate, plans, node_of)
    run.last_flag_s = [0.0] * n
    run.gate_end_s = [0.0] * n
    for i, gid in enumerate(ids):
        kernel = PersistentKernel(
            node.gpus[gid],
            plans[i].grid,
            times,
            gate,
            task_batch=strategy.task_batch,
            name="flashmoe",
        )
        kernel.expect(expected_at(geometry, counts, plans[i], i))
        run.kernels.append(kernel)

    def rank(i: int) -> Generator[simpy.Event, Any, None]:
        gid = ids[i]
        thread = node.host_thread(node.host_of[gid], f"rank {gid}")
        yield from thread.spend("launch flashmoe", launch.api_s)
        kernel, body = run.kernels[i], run.body(i)
        node.gpus[gid].stream(0).submit("flashmoe", lambda: kernel.run(body), launch.doorbell_s)

    for i in range(n):
        env.process(rank(i))
    node.sim.run()
    node.finish()
    spans: list[tuple[float, float]] = []
    for i, k in enumerate(run.kernels):
        if k.start_s is None or k.end_s is None:
            raise SimulationError(f"FlashMoE kernel on {ids[i]} did not terminate")
        spans.append((k.start_s, k.end_s))
    latency = max(end for _start, end in spans)
    per_gpu: dict[str, dict[str, float]] = {}
    busy_sm_s = 0.0
    task_busy = 0.0
    held = 0.0
    for i, (gid, k) in enumerate(zip(ids, run.kernels, strict=True)):
        start_s, end_s = spans[i]
        plan = plans[i]
        p = plan.grid.processors
        b = k.busy_block_s
        kernel_s = end_s - start_s
        gemm = b.get("gemm0", 0.0) + b.get("gemm1", 0.0)
        comb = b.get("combine", 0.0)
        disp = b.get("dispatch", 0.0)
        busy_sm_s += sum(b.values()) / plan.grid.blocks_per_sm
        task_busy += gemm + comb
        held += plan.grid.sms * kernel_s
        per_gpu[gid] = {
            "start_s": start_s,
            "end_s": end_s,
            "kernel_s": kernel_s,
            "gate_s": run.gate_end_s[i],
            "dispatch_s": run.last_flag_s[i] - start_s,
            "dispatch_work_s": disp / p,
            "gemm_s": gemm / p,
            "combine_s": comb / p,
            "idle_s": kernel_s - run.gate_end_s[i] - (disp + gemm + comb) / p,
            "tasks": float(sum(k.tasks_run.values())),
            "task_batches": float(k.batches_run),
            "blocks": float(plan.grid.blocks),
            "processors": float(p),
            "sm_utilisation": k.utilisation(),
        }
    metrics = layer_metrics(
        geometry,
        batch,
        counts,
        plans,
        latency,
        busy_sm_s,
        task_busy,
        held,
        sum(v["tasks"] for v in per_gpu.values()),
    )
    metrics["fluid_transfer_fraction"] = gate.fluid_transfers / max(gate.transfers, 1)
    link_bytes = {
        node.fabric.resources[r].name: b
        for r, b in sorted(gate.carried_B.items())
        if node.platform.is_link(r) and b > 0
    }
    return Outcome(makespan_s=latency, metrics=metrics, per_gpu=per_gpu, link_bytes=link_bytes)
