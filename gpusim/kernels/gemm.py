"""Library GEMM cost (cuBLAS / CUTLASS): tile configurations, split-K, waves, per-CTA mainloops.

Mechanism:

- The library's tile configurations (:data:`SM90_TILES` for ``wgmma`` kernels, :data:`SM80_TILES`
  for ``mma.sync`` ones, :data:`SIMT_TILES` for CUDA-core SGEMM/HGEMM kernels on a GPU without
  tensor cores for the dtype; :func:`library_tiles`), each applied to the output as it is or
  transposed (a library computes ``C^T = B^T A^T`` when that suits the shape better, which is
  how cuBLAS serves a GEMM with a short N). ``tile_k`` is one 128-byte (SM90) or 64-byte (SM80)
  row of the operands' storage type.
- Split-K: when the output tiles cannot fill the SMs, K is split into ``split_k`` slices that run
  as separate CTAs, each accumulating in FP32 and writing a partial tile; the partials are read
  back and reduced (HBM traffic inside this kernel, ``2 * split_k * m * n * 4`` bytes, no extra
  launch), candidates ``1 .. max(1, sms // output_tiles)``.
- Waves: ``tiles = output tiles x split_k`` CTAs, one per SM at a time, in
  ``ceil(tiles / sms)`` waves. A full wave takes one CTA time
  (:func:`gpusim.kernels.mainloop.cta_time_s`: pipeline fill, K steps each bound by MMA issue, L2
  operand reads or shared memory, and the epilogue store) with every SM streaming; the last,
  partial wave takes one CTA time with only its CTAs sharing the L2, so the tail costs a full
  wave when the mainloop is MMA-bound and less when it is L2-bound.
- Choice: the configuration, orientation and split-K of least modelled time, as a library's
  heuristic intends (cuBLAS's is a trained selector; the model assumes it finds the best of these
  candidates). Because the candidates do not depend on K or on bandwidth and shrink with fewer
  SMs, the time is non-decreasing in M, N and K and non-increasing in any bandwidth.
- HBM: A and B read once each and C written once (``storage_bytes(dtype)``; L2 reuse between
  CTAs assumed complete, docs/memory.md), plus the split-K partials. ``l2_bytes`` counts every
  CTA's operand reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from gpusim.arith import ceil_div
from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.mainloop import CtaTile, MainloopShare, SmRates, cta_time_s, sm_rates
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.hardware import GPUSpec
from gpusim.spec.profile import InstructionPath
from gpusim.spec.workload import GemmOp

PARTIAL_BYTES: Final = 4
"""Bytes per element of a split-K partial (FP32 accumulators)."""
SM90_K_ROW_BYTES: Final = 128
"""Bytes of one operand row a ``wgmma`` mainloop step consumes (CUTLASS 3 SM90 tile K)."""
SM80_K_ROW_BYTES: Final = 64
"""Bytes of one operand row an SM80 ``mma.sync`` mainloop step consumes (CUTLASS 2 tile K)."""

SM90_TILES: Final = (
    # (tile_m, tile_n, warps_m, warps_n, cluster_m): CUTLASS 3 SM90 TMA warp-specialized
    # kernels, the shapes its profiler and cuBLAS's sm90 kernels use: cooperative kernels with
    # two consumer warpgroups split along M and a 2x1 multicast cluster, ping-pong kernels with
    # one consumer warpgroup per 64-row tile.
    (128, 256, 2, 1, 2),
    (256, 128, 2, 1, 2),
    (128, 128, 2, 1, 2),
    (64, 256, 1, 1, 1),
    (64, 128, 1, 1, 1),
)
SM80_TILES: Final = (
    # (tile_m, tile_n, warps_m, warps_n, cluster_m): CUTLASS 2 SM80 tensor-op defaults
    # (threadblock / warp shapes of the cutlass_library generator's sm80 f16 and tf32 kernels).
    (256, 128, 4, 2, 1),
    (128, 256, 2, 4, 1),
    (128, 128, 2, 2, 1),
    (128, 64, 2, 2, 1),
    (64, 128, 2, 2, 1),
    (64, 64, 2, 2, 1),
)
SIMT_TILES: Final = (
    # (tile_m, tile_n, warps_m, warps_n, cluster_m): CUDA-core (SIMT) GEMM kernels, K step
    # SIMT_TILE_K elements, SIMT_STAGES stages. 128x128 with 32x64 warps is CUTLASS 2's default
    # SIMT configuration (cutlass/gemm/device/default_gemm_configuration.h, OpClassSimt:
    # ThreadblockShape 128x128x8, WarpShape 32x64x8, 2 stages), and cuBLAS's Maxwell/Pascal
    # SGEMM/HGEMM kernels are named by the same 128x128 CTA tile (maxwell_sgemm_128x128_*);
    # ASSUMPTION [unverified]: the smaller 128x64 and 64x64 tiles of CUTLASS's SM50 SIMT
    # generator are also candidates (cuBLAS has 128x64 and 64x64 SGEMM kernels for short shapes).
    (128, 128, 4, 2, 1),
    (128, 64, 2, 2, 1),
    (64, 64, 2, 1, 1),
)
SIMT_TILE_K: Final = 8
"""K elements one SIMT GEMM mainloop step consumes (CUTLASS 2's default SIMT threadblock K)."""
SIMT_STAGES: Final = 2
"""Shared-memory stages of a SIMT GEMM (CUTLASS 2's default SIMT configuration: double buffer)."""
SMEM_EPILOGUE_RESERVE_BYTES: Final = 32 * 1024
"""Shared memory a CTA keeps out of its pipeline (epilogue staging, barriers)."""
MAX_STAGES: Final = 7


def _stages(tile_m: int, tile_n: int, tile_k: int, element_bytes: int, smem_B: float) -> int:
    stage_B = (tile_m + tile_n) * tile_k * element_bytes
    return max(2, min(MAX_STAGES, int((smem_B - SMEM_EPILOGUE_RESERVE_BYTES) // stage_B)))


def library_tiles(path: InstructionPath, dtype: Dtype, gpu: GPUSpec) -> tuple[CtaTile, ...]:
    """The tile configurations a library GEMM on ``path`` chooses among for ``dtype``: on the
    tensor cores with as many pipeline stages as the GPU's shared memory per block holds (at
    most 7), on the CUDA cores :data:`SIMT_TILES` (double-buffered, K step of 8 elements)."""
    if path is InstructionPath.cuda_core:
        return tuple(
            CtaTile(
                name=f"simt_{tm}x{tn}x{SIMT_TILE_K}",
                tile_m=tm,
                tile_n=tn,
                tile_k=SIMT_TILE_K,
                warps_m=wm,
                warps_n=wn,
                stages=SIMT_STAGES,
                cluster_m=cm,
            )
            for tm, tn, wm, wn, cm in SIMT_TILES
        )
    elem = storage_bytes(dtype)
    sm90 = path is InstructionPath.wgmma
    tile_k = (SM90_K_ROW_BYTES if sm90 else SM80_K_ROW_BYTES) // elem
    smem_B = gpu.shared_mem_per_block_KiB * 1024
    return tuple(
        CtaTile(
            name=f"{tm}x{tn}x{tile_k}_{cm}x1x1",
            tile_m=tm,
            tile_n=tn,
            tile_k=tile_k,
            warps_m=wm,
            warps_n=wn,
            stages=_stages(tm, tn, tile_k, elem, smem_B),
            cluster_m=cm,
        )
        for tm, tn, wm, wn, cm in (SM90_TILES if sm90 else SM80_TILES)
    )


@dataclass(frozen=True)
class GemmPlan:
    """How the model runs one GEMM: configuration, orientation, split-K, CTAs and waves."""

    tile: CtaTile
    transposed: bool
    """The tile's M runs along the GEMM's N (the library computes ``C^T``)."""
    split_k: int
    output_tiles: int
    k_per_split: int
    """K depth each CTA covers: ``ceil(ceil(k / tile_k) / split_k) * tile_k``."""
    sms: int
    compute_time_s: float
    """Waves of CTA times (see the module docstring)."""

    @property
    def tiles(self) -> int:
        """CTAs launched: output tiles times ``split_k``."""
        return self.output_tiles * self.split_k

    @property
    def waves(self) -> int:
        """``ceil(tiles / sms)``."""
        return ceil_div(self.tiles, self.sms)


def executed_path(op: GemmOp, rates: GPURates) -> InstructionPath:
    """The instruction path ``op`` runs on (:meth:`GPURates.matmul_path`: ``mma_sync`` on a
    GPU without ``wgmma``, ``cuda_core`` on one without tensor cores for the dtype)."""
    return rates.matmul_path(op.path, op.dtype)


def _check_sms(rates: GPURates, sms: int | None) -> int:
    if sms is None:
        return rates.sm_count
    if not 1 <= sms <= rates.sm_count:
        raise ValueError(f"sms must be in 1..{rates.sm_count}, got {sms}")
    return sms


def waves_time_s(
    sm: SmRates,
    tile: CtaTile,
    element_bytes: int,
    ctas: int,
    sms: int,
    k_depth: int,
    epilogue_bytes: float,
) -> float:
    """``ctas`` CTAs of ``tile`` over ``sms`` SMs, one per SM at a time: the full waves with every
    SM streaming, then the partial wave with its CTAs only (see the module docstring)."""
    full, tail = divmod(ctas, sms)
    time_s = 0.0
    if full:
        share = MainloopShare(ctas_per_sm=1, streaming_ctas=sms)
        time_s += full * cta_time_s(sm, tile, element_bytes, share, k_depth, epilogue_bytes)
    if tail:
        share = MainloopShare(ctas_per_sm=1, streaming_ctas=tail)
        time_s += cta_time_s(sm, tile, element_bytes, share, k_depth, epilogue_bytes)
    return time_s


def _partial_bytes(m: int, n: int, split_k: int) -> float:
    return 0.0 if split_k == 1 else float(2 * split_k * m * n * PARTIAL_BYTES)


def _candidates(op: GemmOp, rates: GPURates, sms: int) -> Iterator[tuple[GemmPlan, float]]:
    path = executed_path(op, rates)
    elem = storage_bytes(op.dtype)
    sm = sm_rates(rates, path, op.dtype)
    for tile in library_tiles(path, op.dtype, rates.spec):
        for transposed in (False, True):
            rows, cols = (op.n, op.m) if transposed else (op.m, op.n)
            output_tiles = ceil_div(rows, tile.tile_m) * ceil_div(cols, tile.tile_n)
            for split_k in range(1, max(1, sms // output_tiles) + 1):
                k_per_split = ceil_div(tile.steps(op.k), split_k) * tile.tile_k
                out_elem = elem if split_k == 1 else PARTIAL_BYTES
                epilogue_B = float(tile.tile_m * tile.tile_n * out_elem)
                compute_s = waves_time_s(
                    sm,
                    tile,
                    elem,
                    output_tiles * split_k,
                    sms,
                    k_per_split,
                    epilogue_B,
                )
                plan = GemmPlan(
                    tile, transposed, split_k, output_tiles, k_per_split, sms, compute_s
                )
                yield plan, _partial_bytes(op.m, op.n, split_k)


def _compulsory_bytes(op: GemmOp) -> float:
    return float(storage_bytes(op.dtype) * (op.m * op.k + op.k * op.n + op.m * op.n))


def gemm_plan(op: GemmOp, rates: GPURates, sms: int | None = None) -> GemmPlan:
    """The configuration, orientation and split-K of least modelled time for ``op`` on ``sms``
    SMs (default all); ties go to the earlier candidate (listed order, untransposed, smaller
    split)."""
    sms_used = _check_sms(rates, sms)
    base_B = _compulsory_bytes(op)
    best: GemmPlan | None = None
    best_s = 0.0
    for plan, partial_B in _candidates(op, rates, sms_used):
        body_s = max(plan.compute_time_s, (base_B + partial_B) / rates.hbm_achievable_Bps)
        if best is None or body_s < best_s:
            best, best_s = plan, body_s
    assert best is not None  # every configuration yields split_k = 1
    return best


def gemm_l2_bytes(plan: GemmPlan, dtype: Dtype) -> float:
    """Operand bytes every CTA of ``plan`` reads from L2."""
    steps = plan.k_per_split // plan.tile.tile_k
    return plan.tiles * steps * plan.tile.l2_step_bytes(storage_bytes(dtype))


def gemm_cost(op: GemmOp, rates: GPURates, sms: int | None = None) -> KernelCost:
    """Cost of ``op`` on the GPU of ``rates``, using ``sms`` SMs (default: all of them).

    See the module docstring for the mechanism. ``flops`` is the useful ``2*m*n*k``;
    ``compute_time_s`` is the waves of CTA times (padding, fill, epilogue and the tail wave
    included); ``hbm_bytes`` counts A, B and C once plus any split-K partials; ``l2_bytes`` the
    CTAs' operand reads; ``lower_bound_s`` is the roofline of the useful flops and compulsory
    bytes at nameplate peaks.
    """
    plan = gemm_plan(op, rates, sms)
    flops = 2.0 * op.m * op.n * op.k
    compulsory = _compulsory_bytes(op)
    lower_bound_s = max(
        flops / rates.matmul_peak_FLOPps(op.path, op.dtype), compulsory / rates.hbm_nameplate_Bps
    )
    return KernelCost(
        name=f"gemm_{op.m}x{op.n}x{op.k}_{op.dtype}_{executed_path(op, rates)}",
        flops=flops,
        hbm_bytes=compulsory + _partial_bytes(op.m, op.n, plan.split_k),
        blocks=plan.tiles,
        sms=min(plan.sms, plan.tiles),  # one CTA per SM at a time (persistent-style grid)
        compute_time_s=plan.compute_time_s,
        floor_s=rates.kernel_floor_s,
        hbm_achievable_Bps=rates.hbm_achievable_Bps,
        lower_bound_s=lower_bound_s,
        l2_bytes=gemm_l2_bytes(plan, op.dtype),
    )
