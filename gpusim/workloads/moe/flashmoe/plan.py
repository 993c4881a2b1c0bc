"""FlashMoE's static plan per GPU: grid, tiles, superblocks, packet order, task counts, and the
layer metrics both fidelities report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gpusim.arith import ceil_div
from gpusim.errors import SimulationError
from gpusim.execution.persistent import (
    PersistentGrid,
)
from gpusim.hardware.rates import GPURates
from gpusim.kernels.mainloop import MainloopShare
from gpusim.kernels.tile_gemm import combine_tile_bytes, tile_gemm_time_s
from gpusim.spec.moe import FlashMoEStrategy, MoELayerWorkload
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch, moe_metrics

GATE_EXPERTS_PER_TILE = 64
"""Gate columns per tile; E above this needs the ring reduction across column tiles."""
SUPERBLOCK_EXPERT_SCALE = 256
"""SBZ = max(ceil(256 / max(E, 4)), 2) (FlashMoE's dispatch superblock size)."""

TASK_KINDS = ("gemm0", "gemm1", "combine")


def superblock_size(experts: int) -> int:
    """FlashMoE's dispatch superblock: ``max(ceil(256 / max(E, 4)), 2)`` blocks."""
    return max(ceil_div(SUPERBLOCK_EXPERT_SCALE, max(experts, 4)), 2)


def row_tiles(tokens: int, tile_m: int) -> int:
    """Row tiles of a packet of ``tokens`` routed tokens: ``ceil(tokens / tile_m)``."""
    return ceil_div(tokens, tile_m)


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
    share = MainloopShare(ctas_per_sm=grid.blocks_per_sm, streaming_ctas=grid.processors)

    def tile_s(k: int) -> float:
        return tile_gemm_time_s(rates, strategy.path, strategy.dtype, tm, tnn, k, tm, share)

    gate_cols = ceil_div(geometry.experts, GATE_EXPERTS_PER_TILE)
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
        gate_waves=ceil_div(gate_tiles, grid.blocks),
        ring_s=(gate_cols - 1) * flag_handoff_s,
        clear_B=float(geometry.tokens_per_gpu * geometry.row_bytes) if accumulate else 0.0,
        sbz=sbz,
        superblocks=grid.processors // sbz,
        element_bytes=elem,
        row_bytes=geometry.row_bytes,
        accumulate=accumulate,
    )


def check_counts(geometry: LayerGeometry, batch: RoutedBatch) -> np.ndarray:
    """The routed counts as a ``[GPU, expert]`` int64 array, checked against the geometry."""
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


def network_payload_B(geometry: LayerGeometry, counts: np.ndarray) -> float:
    """Bytes sent between GPUs: routed rows to remote experts (dispatch) and their GEMM1 results
    back, unpadded."""
    t = geometry.tokens_to_gpu(RoutedBatch(counts=counts, dropped=0, maxvio_batch=0.0))
    remote = float(t.sum() - np.trace(t))
    return 2.0 * remote * geometry.row_bytes


def layer_metrics(
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
