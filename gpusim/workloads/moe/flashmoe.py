"""FlashMoE: the whole distributed MoE layer as one persistent kernel per GPU (flashmoe.md
sections 2-6 and 11), on the device-driven engine of ``gpusim.execution.persistent``.

One forward on every GPU g (experts placed contiguously, ``LayerGeometry``):

1. Launch: one host launch per GPU (launch API on the rank's host thread, then the doorbell
   latency); the kernel takes all of the GPU's SMs and pays the kernel floor.
2. Clear (top-k > 1 only): all blocks zero the ``T x H`` output buffer (combine accumulates with
   atomics): an HBM write.
3. Gate: ``ceil(T/128) x ceil(E/64)`` tiles of ``2 x 128 x 64 x H`` FLOP, in waves over all
   blocks at the per-block tile rate (``gpusim.kernels.tile_gemm``); for E > 64 a ring across the
   column tiles adds ``ceil(E/64) - 1`` flag handoffs; then one grid barrier.
4. Dispatch: superblocks of ``SBZ = max(ceil(256 / max(E, 4)), 2)`` processor blocks
   (``floor(P / SBZ)`` of them) each copy the packets of the experts they own, one after another,
   starting from the next GPU's experts (the swizzle); a packet ``(g, e)`` with ``n`` routed
   tokens moves ``n x H x element`` bytes (only routed tokens: payload efficiency 1): to a remote
   expert as SM-issued stores over the fabric route (each block loads then stores every byte, so
   the packet is capped at ``SBZ x block rate / 2``; NVLink shares emerge in the fluid network),
   to a local expert as an HBM copy (read + write, ``2 n x H x element`` HBM bytes, capped at
   ``SBZ x block rate``). HBM traffic at the remote end is not modelled (as for every network
   transfer in gpusim). The packet's flag then reaches the destination after the route latency
   plus one flag handoff; a zero-token packet sends only the flag. The destination's subscriber
   decodes it into ``ceil(n/128) x TN`` GEMM0 tasks (``TN = I / 64``). Processor blocks outside a
   busy superblock are idle processors at once; a superblock's blocks join when its last copy ends.
5. Task DAG at the destination: GEMM0 tile ``[<= 128 x 64]``, K = H; when the ``TN`` GEMM0 tiles
   of a (source, expert, row tile) are done, ``TNx = H / 64`` GEMM1 tasks (K = I). Each GEMM1
   tile's epilogue writes ``rows x 64 x element`` bytes back to the source GPU (fabric route or
   local HBM; the block waits for its stores, one route latency, before its flag) and its flag
   reaches the source's subscriber one route latency plus one flag handoff later, which creates
   one combine task there: read the tile and each row's token index and gate probability, add
   into the output (``gpusim.kernels.tile_gemm.combine_tile_bytes``) through HBM.
   RDMA peers (the destination on another node, ``GPUDevice.node``; flashmoe.md sections 3, 4
   and 6): dispatch stages the rows into the sender's own send cell (an HBM copy by the
   superblock, as for a local expert), then the superblock's last block issues one non-blocking
   put of ``n x H x element`` bytes with its 8-byte signal (not modelled as bytes) over the
   route, uncapped (the NIC moves it: one fluid transfer shared max-min with everything else),
   and the superblock goes on with its next packet; the destination's subscriber sees the
   signal one flag handoff after the put completes. GEMM1 tiles of an RDMA packet write into
   the destination's local send cell (HBM, capped at the block rate); when a row tile's counter
   reaches ``TN + TNx`` one put of ``rows x H x element`` bytes goes back (uncapped), and one
   flag handoff after it completes the source's subscriber creates the row tile's ``TNx``
   combine tasks. Inter-node payload is thus exactly the routed rows (payload efficiency 1).
6. End: a GPU's kernel ends when its scheduler has run every task of its task bound (all GEMM0
   and GEMM1 tasks of the packets it receives, bound known once every dispatch signal arrived,
   plus the combines of its own tokens) and every signal arrived. The forward latency is the
   latest kernel end, measured from the first launch call (CUDA events around the launch).

Every block-issued transfer (all but the RDMA puts) is capped at one block's streaming rate
(``gpusim.kernels.tile_gemm.block_stream_Bps``: an assumption until measured). Not modelled: the
GEMM tiles' operand traffic (A and W tiles through L2/HBM; folded into the tile rate), the gate's
softmax/top-k beyond its GEMM tiles, and HBM traffic at the receiving end of remote stores.

Behaviour worth knowing. Dispatch packets of equal size finish together under max-min sharing,
so a destination's subscriber sees the flags of all sources at once and decodes them in sender
order (FlashMoE's subscriber sweeps its flags in (peer, expert) order too); with first-come
first-served scheduling every GPU then computes source 0's row tiles first, then source 1's...,
and on 8 GPUs the GEMM1 result writes of all GPUs converge on one source's NVLink ingress at a
time. The DES shows that convoy (the fluid network shares the oversubscribed port); the analytic
form does not.

``analytic`` is a closed form exact without contention in the one-GPU, one-expert case where all
tasks fit in one wave (tested against the DES to 1e-6); elsewhere it is an estimate (see its
docstring).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import simpy

from gpusim.engine.maxmin import max_min_fair_rates
from gpusim.errors import SimulationError
from gpusim.execution.launch import LaunchTimes
from gpusim.execution.persistent import (
    DeviceTimes,
    FlowGate,
    PersistentGrid,
    PersistentKernel,
    TaskGroup,
)
from gpusim.hardware.fabric import Fabric
from gpusim.hardware.node import Node
from gpusim.hardware.rates import GPURates, gpu_rates
from gpusim.kernels.tile_gemm import combine_tile_bytes, tile_gemm_time_s
from gpusim.result import Outcome
from gpusim.spec.moe import FlashMoEStrategy, MoELayerWorkload
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import GPUDevice, Topology
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch, moe_metrics

GATE_EXPERTS_PER_TILE = 64
"""Gate columns per tile; E above this needs the ring reduction across column tiles."""
SUPERBLOCK_EXPERT_SCALE = 256
"""SBZ = max(ceil(256 / max(E, 4)), 2) (FlashMoE's dispatch superblock size)."""

TASK_KINDS = ("gemm0", "gemm1", "combine")


def superblock_size(experts: int) -> int:
    """FlashMoE's dispatch superblock: ``max(ceil(256 / max(E, 4)), 2)`` blocks."""
    return max(-(-SUPERBLOCK_EXPERT_SCALE // max(experts, 4)), 2)


def row_tiles(tokens: int, tile_m: int) -> int:
    """Row tiles of a packet of ``tokens`` routed tokens: ``ceil(tokens / tile_m)``."""
    return -(-tokens // tile_m)


def tile_rows(tokens: int, tile_m: int) -> list[int]:
    """Rows of each row tile of a packet (the last one partial)."""
    full, rest = divmod(tokens, tile_m)
    return [tile_m] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class FlashMoEPlan:
    """Static per-GPU quantities of one FlashMoE forward."""

    grid: PersistentGrid
    tile_m: int
    tile_n: int
    tn: int
    """GEMM0 column tiles per row tile: I / tile_n."""
    tnx: int
    """GEMM1 column tiles per row tile: H / tile_n."""
    gemm0_s: float
    gemm1_s: float
    gate_tiles: int
    gate_tile_s: float
    gate_waves: int
    ring_s: float
    clear_B: float
    sbz: int
    superblocks: int
    element_bytes: int
    row_bytes: int
    accumulate: bool
    _combine_B: dict[int, float] = field(default_factory=dict, compare=False, repr=False)

    @property
    def gate_compute_s(self) -> float:
        """Gate tiles in waves over all blocks, plus the ring for E > 64."""
        return self.gate_waves * self.gate_tile_s + self.ring_s

    @property
    def clear_s(self) -> float:
        """Zeroing the output buffer at the HBM rate of all blocks together."""
        return self.clear_B / (self.grid.blocks * self.grid.block_stream_Bps)

    def combine_B(self, rows: int) -> float:
        """HBM bytes of one combine tile of ``rows`` rows."""
        cached = self._combine_B.get(rows)
        if cached is None:
            cached = combine_tile_bytes(rows, self.tile_n, self.element_bytes, self.accumulate)
            self._combine_B[rows] = cached
        return cached


def flashmoe_strategy(wl: MoELayerWorkload) -> FlashMoEStrategy:
    """The workload's strategy, which must be FlashMoE."""
    if not isinstance(wl.strategy, FlashMoEStrategy):
        raise SimulationError(f"strategy '{wl.strategy.name}' is not flashmoe")
    return wl.strategy


def plan_gpu(
    rates: GPURates,
    strategy: FlashMoEStrategy,
    geometry: LayerGeometry,
    flag_handoff_s: float,
) -> FlashMoEPlan:
    """The grid, tile times and phase sizes of FlashMoE on the GPU of ``rates``."""
    tm, tnn = strategy.tile_m, strategy.tile_n
    for name, dim in (("hidden", geometry.hidden), ("intermediate", geometry.intermediate)):
        if dim % tnn:
            raise SimulationError(f"{name} {dim} is not a multiple of tile_n {tnn}")
    grid = PersistentGrid.plan(
        rates, strategy.kernel_resources(), max_blocks_per_sm=strategy.blocks_per_sm
    )
    bpsm = grid.blocks_per_sm

    def tile_s(k: int) -> float:
        return tile_gemm_time_s(rates, strategy.path, strategy.dtype, tm, tnn, k, tm, bpsm)

    gate_cols = -(-geometry.experts // GATE_EXPERTS_PER_TILE)
    gate_tiles = row_tiles(geometry.tokens_per_gpu, tm) * gate_cols
    sbz = min(superblock_size(geometry.experts), grid.processors)
    elem = geometry.element_bytes
    accumulate = geometry.top_k > 1
    return FlashMoEPlan(
        grid=grid,
        tile_m=tm,
        tile_n=tnn,
        tn=geometry.intermediate // tnn,
        tnx=geometry.hidden // tnn,
        gemm0_s=tile_s(geometry.hidden),
        gemm1_s=tile_s(geometry.intermediate),
        gate_tiles=gate_tiles,
        gate_tile_s=tile_s(geometry.hidden),
        gate_waves=-(-gate_tiles // grid.blocks),
        ring_s=(gate_cols - 1) * flag_handoff_s,
        clear_B=float(geometry.tokens_per_gpu * geometry.row_bytes) if accumulate else 0.0,
        sbz=sbz,
        superblocks=grid.processors // sbz,
        element_bytes=elem,
        row_bytes=geometry.row_bytes,
        accumulate=accumulate,
    )


def _check(geometry: LayerGeometry, batch: RoutedBatch) -> np.ndarray:
    counts = np.asarray(batch.counts)
    if counts.shape != (geometry.n_gpus, geometry.experts):
        raise SimulationError(
            f"routed counts have shape {counts.shape}, expected "
            f"({geometry.n_gpus}, {geometry.experts})"
        )
    if (counts < 0).any():
        raise SimulationError("routed counts must be non-negative")
    return counts.astype(np.int64)


def dispatch_order(src: int, geometry: LayerGeometry) -> list[int]:
    """Experts in the order a source's superblocks take them: starting with the next GPU's
    experts, so that sources spread over destinations."""
    e, lx = geometry.experts, geometry.local_experts
    return [(src * lx + lx + j) % e for j in range(e)]


def superblock_packets(src: int, geometry: LayerGeometry, superblocks: int) -> list[list[int]]:
    """Experts each superblock of ``src`` copies, in order (round robin over the swizzle)."""
    order = dispatch_order(src, geometry)
    used = min(superblocks, len(order))
    return [order[j::superblocks] for j in range(used)]


def expected_at(geometry: LayerGeometry, counts: np.ndarray, plan: FlashMoEPlan, g: int) -> int:
    """Tasks and signals GPU ``g``'s kernel must see: one dispatch signal per (source, local
    expert), the GEMM0 and GEMM1 tasks of the row tiles it receives, the combines of its tokens."""
    lx = geometry.local_experts
    local = counts[:, g * lx : (g + 1) * lx]
    rt_in = int(sum(row_tiles(int(n), plan.tile_m) for n in local.flat))
    rt_home = int(sum(row_tiles(int(n), plan.tile_m) for n in counts[g]))
    return geometry.n_gpus * lx + rt_in * (plan.tn + plan.tnx) + rt_home * plan.tnx


# -- DES -------------------------------------------------------------------------------------------


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
                pkt = _Packet(
                    g,
                    dst,
                    e,
                    n,
                    tile_rows(n, plan.tile_m),
                    [],
                    back.resources,
                    back.latency_s,
                    self.node_of[g] != self.node_of[dst],
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
        plan = self.plans[pkt.dst]
        tn = plan.tn
        end = first + count
        while first < end:
            r = first // tn
            upto = min(end, (r + 1) * tn)
            pkt.done0[r] += upto - first
            first = upto
            if pkt.done0[r] == tn:
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
                    continue
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
                        data=(pkt, rows),
                    )
                )

    def gemm1_done(self, group: TaskGroup, _first: int, count: int) -> None:
        pkt, rows = group.data
        ev = self.env.timeout(pkt.back_latency_s + self._handoff_s, (pkt.src, rows, count))
        ev.callbacks.append(self.result_arrived)

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
        key = (src, rows)
        flow = self._combine_flow.get(key)
        if flow is None:
            plan = self.plans[src]
            flow = ((self.hbm(src),), plan.combine_B(rows), plan.grid.block_stream_Bps)
            self._combine_flow[key] = flow
        route, size_B, cap = flow
        combine = TaskGroup("combine", count, 0.0, None, route, size_B, 0.0, cap)
        self.kernels[src].deliver(count, combine)


def _layer_metrics(
    geometry: LayerGeometry,
    batch: RoutedBatch,
    counts: np.ndarray,
    plans: Sequence[FlashMoEPlan],
    latency_s: float,
    busy_sm_s: float,
    processor_busy_s: float,
    held_sm_s: float,
    tasks: float,
) -> dict[str, float]:
    """The layer metrics both fidelities report (shared MoE metrics + FlashMoE's own)."""
    total_sms = sum(p.grid.sms for p in plans)
    metrics = moe_metrics(
        geometry=geometry,
        batch=batch,
        latency_s=latency_s,
        busy_sm_s=busy_sm_s,
        total_sms=total_sms,
        network_payload_B=network_payload_B(geometry, counts),
        kernel_launches=1,  # one persistent kernel per GPU per forward
    )
    metrics["processor_busy_s"] = processor_busy_s
    metrics["sm_held_fraction"] = held_sm_s / (total_sms * latency_s)
    metrics["tasks"] = float(tasks)
    return metrics


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
    counts = _check(geometry, batch)
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
    metrics = _layer_metrics(
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
    n_links = len(node.fabric.resources)
    link_bytes = {
        node.fabric.resources[r].name: b
        for r, b in sorted(gate.carried_B.items())
        if r < n_links and b > 0
    }
    return Outcome(makespan_s=latency, metrics=metrics, per_gpu=per_gpu, link_bytes=link_bytes)


def network_payload_B(geometry: LayerGeometry, counts: np.ndarray) -> float:
    """Bytes sent between GPUs: routed rows to remote experts (dispatch) and their GEMM1 results
    back, unpadded."""
    t = geometry.tokens_to_gpu(RoutedBatch(counts=counts, dropped=0, maxvio_batch=0.0))
    remote = float(t.sum() - np.trace(t))
    return 2.0 * remote * geometry.row_bytes


# -- analytic --------------------------------------------------------------------------------------


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
    counts = _check(geometry, batch)
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
    n_links = len(fabric.resources)
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
                    routes.append((n_links + g,))
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
    metrics = _layer_metrics(
        geometry, batch, counts, plans, latency, busy_sm_s, task_busy, held, sum(tasks)
    )
    return Outcome(makespan_s=latency, metrics=metrics, per_gpu=per_gpu, link_bytes=link_bytes)
