"""Grouped GEMM (CUTLASS ``grouped_gemm``, Megatron's expert GEMMs): one kernel computing many
independent problems ``[m_i x k] @ [k x n]`` whose tiles share one grid.

All problems use the large 128 x 128 CTA tile of :mod:`gpusim.kernels.gemm`; the waves run over
the total tile count, so small groups fill the tail that a per-expert launch would leave idle.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpusim.arith import ceil_div
from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.gemm import LARGE_TILE_MN, TILE_K
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.profile import InstructionPath, ShapeClass


def grouped_gemm_cost(
    ms: Sequence[int],
    n: int,
    k: int,
    dtype: Dtype,
    path: InstructionPath,
    rates: GPURates,
    name: str = "grouped_gemm",
    sms: int | None = None,
) -> KernelCost:
    """Cost of one grouped GEMM kernel over problems with row counts ``ms`` (zero rows: the
    problem is skipped, its weights are not read) on ``sms`` SMs (default all)."""
    tile_m, tile_n = LARGE_TILE_MN
    k_iters = ceil_div(k, TILE_K)
    tiles = sum(ceil_div(m, tile_m) * ceil_div(n, tile_n) for m in ms if m > 0)
    rate = rates.tensor_rate_per_sm_FLOPps(path, dtype, ShapeClass.large)
    cta_flops = 2.0 * tile_m * tile_n * TILE_K * k_iters
    sms_used = rates.sm_count if sms is None else max(1, min(sms, rates.sm_count))
    waves = ceil_div(tiles, sms_used) if tiles else 0
    elem = storage_bytes(dtype)
    hbm_bytes = float(sum(elem * (m * k + k * n + m * n) for m in ms if m > 0))
    flops = float(sum(2 * m * n * k for m in ms))
    return KernelCost(
        name=name,
        flops=flops,
        hbm_bytes=hbm_bytes,
        blocks=max(1, tiles),
        sms=max(1, min(sms_used, tiles)),
        compute_time_s=waves * cta_flops / rate,
        floor_s=rates.kernel_floor_s,
        hbm_achievable_Bps=rates.hbm_achievable_Bps,
        lower_bound_s=max(
            flops / rates.tensor_peak_FLOPps(dtype), hbm_bytes / rates.hbm_nameplate_Bps
        ),
    )
