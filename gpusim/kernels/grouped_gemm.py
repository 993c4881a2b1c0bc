"""Grouped GEMM: one kernel computing many independent problems ``[m_i x k] @ [k x n]`` whose
tiles share one grid (Megatron's expert GEMMs).

Two libraries, each with its own tile:

- ``grouped_gemm`` (tgale96/grouped_gemm, the ``cutlass_sm80`` back end Megatron-LM uses): a
  CUTLASS 2 ``DefaultGemmGrouped`` kernel for ``Sm80`` with a 128 x 128 x 32 threadblock tile,
  64 x 64 x 32 warps (2 x 2) and 4 stages (``csrc/grouped_gemm.cu``), run on the ``mma_sync``
  path even on Hopper; :data:`CUTLASS_SM80_GROUPED_TILE`.
- a ``wgmma`` grouped kernel (CUTLASS 3 grouped GEMM): the cooperative 128 x 256 SM90 tile of
  :mod:`gpusim.kernels.gemm`.

Either way the tiles of all problems form one persistent grid of one CTA per SM, so the waves
run over the total tile count and small groups fill the tail a per-expert launch would leave
idle; each CTA is costed by the mainloop model (:mod:`gpusim.kernels.mainloop`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from gpusim.arith import ceil_div
from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.gemm import library_tiles, waves_time_s
from gpusim.kernels.mainloop import CtaTile, sm_rates
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.profile import InstructionPath

CUTLASS_SM80_GROUPED_TILE: Final = CtaTile(
    name="128x128x32_sm80_grouped",
    tile_m=128,
    tile_n=128,
    tile_k=32,
    warps_m=2,
    warps_n=2,
    stages=4,
)
"""tgale96/grouped_gemm's kernel configuration (16-bit operands: a 32-element K step)."""


def grouped_tiles(path: InstructionPath, dtype: Dtype, rates: GPURates) -> tuple[CtaTile, ...]:
    """The CTA tiles a grouped GEMM on ``path`` may run: grouped_gemm's one SM80 tile for
    ``mma_sync`` (its K step is 64 bytes of the dtype), the SM90 library tiles for ``wgmma``
    (the kernel of least modelled time is chosen, as for a single GEMM), the SIMT library tiles
    on ``cuda_core``."""
    if path is InstructionPath.mma_sync:
        base = CUTLASS_SM80_GROUPED_TILE
        return (replace(base, tile_k=2 * base.tile_k // storage_bytes(dtype)),)
    return library_tiles(path, dtype, rates.spec)


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
    path = rates.matmul_path(path, dtype)
    sm = sm_rates(rates, path, dtype)
    sms_used = rates.sm_count if sms is None else max(1, min(sms, rates.sm_count))
    elem = storage_bytes(dtype)
    best: tuple[float, CtaTile, int] | None = None
    for tile in grouped_tiles(path, dtype, rates):
        tiles = sum(ceil_div(m, tile.tile_m) * ceil_div(n, tile.tile_n) for m in ms if m > 0)
        epilogue_B = float(tile.tile_m * tile.tile_n * elem)
        k_padded = tile.steps(k) * tile.tile_k
        time_s = (
            waves_time_s(sm, tile, elem, tiles, sms_used, k_padded, epilogue_B) if tiles else 0.0
        )
        if best is None or time_s < best[0]:
            best = (time_s, tile, tiles)
    assert best is not None  # every path has at least one tile
    compute_s, tile, tiles = best
    hbm_bytes = float(sum(elem * (m * k + k * n + m * n) for m in ms if m > 0))
    flops = float(sum(2 * m * n * k for m in ms))
    return KernelCost(
        name=name,
        flops=flops,
        hbm_bytes=hbm_bytes,
        blocks=max(1, tiles),
        sms=max(1, min(sms_used, tiles)),
        compute_time_s=compute_s,
        floor_s=rates.kernel_floor_s,
        hbm_achievable_Bps=rates.hbm_achievable_Bps,
        lower_bound_s=max(
            flops / rates.matmul_peak_FLOPps(path, dtype), hbm_bytes / rates.hbm_nameplate_Bps
        ),
        l2_bytes=tiles * tile.steps(k) * tile.l2_step_bytes(elem),
    )
