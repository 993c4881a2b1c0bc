"""GEMM cost: CTA tiles, split-K, waves over the SMs, and HBM traffic.

Mechanism (a model of a cuBLAS/CUTLASS-style tiled GEMM, not of any one kernel):

- Shape class: ``skinny`` when ``min(m, n) <= 64``, else ``large``. The class selects the
  calibrated tensor-core efficiency and the CTA tile.
- CTA tile (``tile_m x tile_n``, K consumed in steps of ``tile_k = 64``):

  * ``large``: 128 x 128 (one CTA of two consumer warpgroups issuing ``wgmma`` m64n128, the
    common CUTLASS/cuBLAS SM90 tile). 128 x 256 reaches slightly higher per-SM efficiency but
    doubles the tile and with it the wave-quantisation loss on mid-sized problems; the profile's
    ``large`` efficiency is calibrated against this tile.
  * ``skinny``: 64 along the short dimension (the smallest ``wgmma`` M) by 128 along the long one.

- Split-K: when the output tiles cannot fill the SMs, K is split into ``split_k`` slices that run
  as separate CTAs, each accumulating in FP32 and writing a partial tile; the partials are read back
  and reduced (modelled as HBM traffic inside this kernel, ``2 * split_k * m * n * 4`` bytes, no
  extra launch). ``split_k`` is chosen, like a library heuristic would, to minimise the modelled
  time over ``1 .. max(1, sms // output_tiles)``; ties go to the smaller split. Because the
  candidate set does not depend on K or on bandwidth and shrinks with fewer SMs, the time is
  non-decreasing in K, non-increasing in HBM bandwidth and never lower on fewer SMs.
- Waves: ``tiles = ceil(m/tile_m) * ceil(n/tile_n) * split_k`` CTAs, one per SM at a time, run in
  ``waves = ceil(tiles / sms)``; the last, partial wave costs as much as a full one (the tail
  effect). Per-CTA time is ``2 * tile_m * tile_n * tile_k * k_iters_per_split`` FLOP at the per-SM
  achievable tensor rate, so padding in M, N and K is paid for: the calibrated efficiency applies to
  the MMA work a CTA issues.
- HBM: A and B read once each and C written once (``storage_bytes(dtype)``), L2 reuse assumed
  perfect, plus the split-K partials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gpusim.arith import ceil_div, round_up
from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.spec.base import storage_bytes
from gpusim.spec.profile import InstructionPath, ShapeClass, native_tensor_path
from gpusim.spec.workload import GemmOp

SKINNY_MAX_DIM: Final = 64
"""A GEMM is ``skinny`` when ``min(m, n)`` is at most this."""
LARGE_TILE_MN: Final = (128, 128)
SKINNY_TILE_SHORT_LONG: Final = (64, 128)
TILE_K: Final = 64
"""K elements one mainloop step consumes; K is padded to a multiple of it."""
PARTIAL_BYTES: Final = 4
"""Bytes per element of a split-K partial (FP32 accumulators)."""


@dataclass(frozen=True)
class GemmPlan:
    """How the model runs one GEMM: tile, split-K, CTAs and waves."""

    shape: ShapeClass
    tile_m: int
    tile_n: int
    tile_k: int
    split_k: int
    output_tiles: int
    """``ceil(m / tile_m) * ceil(n / tile_n)``."""
    k_iters_per_split: int
    """Mainloop steps of ``tile_k`` each CTA runs: ``ceil(ceil(k / tile_k) / split_k)``."""
    sms: int
    """SMs available to the GEMM."""

    @property
    def tiles(self) -> int:
        """CTAs launched: output tiles times ``split_k``."""
        return self.output_tiles * self.split_k

    @property
    def waves(self) -> int:
        """``ceil(tiles / sms)``."""
        return ceil_div(self.tiles, self.sms)


def gemm_shape_class(m_rows: int, n_cols: int) -> ShapeClass:
    """``skinny`` when ``min(m, n) <= 64``, else ``large``."""
    return ShapeClass.skinny if min(m_rows, n_cols) <= SKINNY_MAX_DIM else ShapeClass.large


def gemm_tile(m_rows: int, n_cols: int) -> tuple[ShapeClass, int, int]:
    """The shape class and CTA tile ``(tile_m, tile_n)`` the model uses for an ``m x n``
    output: 128 x 128 when ``large``; when ``skinny``, 64 along the short side by 128 along the
    long one (see the module docstring)."""
    shape = gemm_shape_class(m_rows, n_cols)
    if shape is ShapeClass.large:
        return shape, *LARGE_TILE_MN
    short, long = SKINNY_TILE_SHORT_LONG
    tile_m, tile_n = (short, long) if m_rows <= n_cols else (long, short)
    return shape, tile_m, tile_n


def gemm_issued_fraction(m_rows: int, n_cols: int, k_depth: int) -> tuple[ShapeClass, float]:
    """The shape class of ``m x n x k`` and the useful share of the MMA work the model's tiles
    issue for it: ``m n k / (M' N' K')``, M and N padded to the CTA tile (:func:`gemm_tile`),
    K to ``TILE_K`` (the fitter reads per-issued-FLOP efficiencies through it)."""
    shape, tile_m, tile_n = gemm_tile(m_rows, n_cols)
    issued = round_up(m_rows, tile_m) * round_up(n_cols, tile_n) * round_up(k_depth, TILE_K)
    return shape, (m_rows * n_cols * k_depth) / issued


def _compulsory_bytes(op: GemmOp) -> float:
    elem = storage_bytes(op.dtype)
    return float(elem * (op.m * op.k + op.k * op.n + op.m * op.n))


def _partial_bytes(op: GemmOp, split_k: int) -> float:
    if split_k == 1:
        return 0.0
    return float(2 * split_k * op.m * op.n * PARTIAL_BYTES)


def _check_sms(rates: GPURates, sms: int | None) -> int:
    if sms is None:
        return rates.sm_count
    if not 1 <= sms <= rates.sm_count:
        raise ValueError(f"sms must be in 1..{rates.sm_count}, got {sms}")
    return sms


def _compute_time_s(plan: GemmPlan, rate_per_sm_FLOPps: float) -> float:
    cta_flops = 2.0 * plan.tile_m * plan.tile_n * plan.tile_k * plan.k_iters_per_split
    return plan.waves * cta_flops / rate_per_sm_FLOPps


def gemm_plan(op: GemmOp, rates: GPURates, sms: int | None = None) -> GemmPlan:
    """The tile, split-K and wave count the model uses for ``op`` on ``sms`` SMs (default all)."""
    sms_used = _check_sms(rates, sms)
    shape, tile_m, tile_n = gemm_tile(op.m, op.n)
    output_tiles = ceil_div(op.m, tile_m) * ceil_div(op.n, tile_n)
    k_iters = ceil_div(op.k, TILE_K)
    rate = rates.tensor_rate_per_sm_FLOPps(op.path, op.dtype, shape)
    base = _compulsory_bytes(op)

    best: GemmPlan | None = None
    best_body_s = 0.0
    for split_k in range(1, max(1, sms_used // output_tiles) + 1):
        plan = GemmPlan(
            shape=shape,
            tile_m=tile_m,
            tile_n=tile_n,
            tile_k=TILE_K,
            split_k=split_k,
            output_tiles=output_tiles,
            k_iters_per_split=ceil_div(k_iters, split_k),
            sms=sms_used,
        )
        hbm_bytes = base + _partial_bytes(op, split_k)
        body_s = max(_compute_time_s(plan, rate), hbm_bytes / rates.hbm_achievable_Bps)
        if best is None or body_s < best_body_s:
            best, best_body_s = plan, body_s
    assert best is not None  # the range always holds split_k = 1
    return best


def executed_path(op: GemmOp, rates: GPURates) -> InstructionPath:
    """The instruction path ``op`` runs on, for naming its kernel: the one it asks for, except
    that a GPU without ``wgmma`` (compute capability below 9.0, such as the A100) runs
    ``mma_sync``. The rate is still read from the profile entry of the requested path, which such
    a GPU's profile aliases to its native ``mma_sync`` value."""
    if native_tensor_path(rates.spec.compute_capability) is InstructionPath.mma_sync:
        return InstructionPath.mma_sync
    return op.path


def gemm_cost(op: GemmOp, rates: GPURates, sms: int | None = None) -> KernelCost:
    """Cost of ``op`` on the GPU of ``rates``, using ``sms`` SMs (default: all of them).

    See the module docstring for the mechanism. ``flops`` is the useful ``2*m*n*k``;
    ``compute_time_s`` is ``waves * per-CTA time`` (padding and the tail wave included);
    ``hbm_bytes`` counts A, B and C once plus any split-K partials; ``lower_bound_s`` is the
    roofline of the useful flops and compulsory bytes at nameplate peaks.
    """
    plan = gemm_plan(op, rates, sms)
    rate = rates.tensor_rate_per_sm_FLOPps(op.path, op.dtype, plan.shape)
    flops = 2.0 * op.m * op.n * op.k
    compulsory = _compulsory_bytes(op)
    lower_bound_s = max(
        flops / rates.tensor_peak_FLOPps(op.dtype), compulsory / rates.hbm_nameplate_Bps
    )
    return KernelCost(
        name=f"gemm_{op.m}x{op.n}x{op.k}_{op.dtype}_{executed_path(op, rates)}",
        flops=flops,
        hbm_bytes=compulsory + _partial_bytes(op, plan.split_k),
        blocks=plan.tiles,
        sms=min(plan.sms, plan.tiles),  # one CTA per SM at a time (persistent-style grid)
        compute_time_s=_compute_time_s(plan, rate),
        floor_s=rates.kernel_floor_s,
        hbm_achievable_Bps=rates.hbm_achievable_Bps,
        lower_bound_s=lower_bound_s,
    )
