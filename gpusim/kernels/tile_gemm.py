"""Tile-level costs inside a persistent kernel: one processor block's GEMM tile and combine tile.

A persistent kernel (FlashMoE, flashmoe.md sections 2-4) does its work one output tile at a time,
each tile on one thread block, with several blocks resident on every SM. These functions give
the cost of one such tile on one block; the persistent engine (``gpusim.execution.persistent``)
schedules the tiles.

GEMM tile
    One block computes a ``[rows <= tile_m] x tile_n`` output tile with depth ``k``. It issues
    MMA instructions for the whole tile whatever ``rows`` is (a partial row tile still runs full
    MMA instructions and loads full operand slices: the padding is paid). Its mainloop is the
    one of every tiled GEMM (:mod:`gpusim.kernels.mainloop`): a pipeline fill, then
    ``ceil(k / tile_k)`` K steps, each the slowest of

    - the block's share of its SM's MMA issue rate for the path (FlashMoE: ``mma_sync``; its
      CUTLASS mainloop is clamped to sm_80, no ``wgmma``, no TMA) and dtype, split between the
      ``blocks_per_sm`` co-resident processor blocks (a block alone on its SM gets all of it);
    - the block's share of the L2 read bandwidth, split between the ``streaming_blocks`` that
      run GEMM tiles at once (the grid's processors), times the step's operand bytes:
      ``(tile_m + tile_n) x tile_k`` elements, so the tile's arithmetic intensity sets its rate;
    - the shared-memory traffic of the step (the ``cp.async`` writes plus the fragment reads of
      the 2 x 2 warp grid) at the block's share of the SM's shared-memory bandwidth.

    ``tile_k`` is 32 bytes of the element type (8 for TF32, 16 for 16-bit types: FlashMoE's
    block GEMM takes its K from a base of 8 on sm_80/sm_90, flashmoe.md §2) and the pipeline has
    4 stages (CUTLASS ``MainloopSm80CpAsyncUnpredicated`` at paper time). The output store is
    not part of the tile time: the persistent engine sends it as a transfer where the kernel
    makes one (GEMM1's epilogue).

Combine tile
    One block reads a returned ``rows x tile_n`` result tile plus each row's token index and gate
    probability from HBM, scales it and adds it into the layer output: with top-k > 1 by atomic
    adds (a read-modify-write of the output elements, counted as one read and one write of HBM),
    with top-k = 1 by plain stores. :func:`combine_tile_bytes` gives those HBM bytes. Alone the
    tile's time is bytes over the bandwidth the block gets; with ``n`` blocks streaming at once
    each gets ``achievable HBM / n`` (:func:`combine_tile_time_s`), which is contention: in the
    DES the bytes go through the GPU's HBM fluid resource instead, so the share emerges.

Block streaming rate
    One block cannot pull the whole HBM bandwidth by itself: its loads in flight are bounded by
    its 128 threads. :func:`block_stream_Bps` is the rate cap the persistent engine gives every
    transfer a block issues: the achievable HBM bandwidth shared evenly over the grid's resident
    blocks (what each block gets when every block streams). ASSUMPTION, to be replaced by a
    kernels_ref measurement of one block's load/store rate: a Little's-law estimate for a
    128-thread block with 16-byte accesses and four in flight per thread (8 KiB) over an HBM load
    latency of about 300-370 ns (hardware.md section 5) gives 22-27 GB/s, the same order as
    3.0 TB/s / 264 blocks = 11.4 GB/s on H100 SXM.
"""

from __future__ import annotations

from typing import Final

from gpusim.hardware.rates import GPURates
from gpusim.kernels.mainloop import CtaTile, MainloopShare, cta_time_s, sm_rates
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.profile import InstructionPath

TOKEN_ID_BYTES: Final = 4
"""Bytes of one token index the combine reads per row (int32)."""
GATE_PROB_BYTES: Final = 4
"""Bytes of one gate probability the combine reads per row (fp32)."""
PERSISTENT_K_ROW_BYTES: Final = 32
"""Bytes of one operand row a persistent GEMM tile's K step consumes (8 TF32 elements)."""
PERSISTENT_STAGES: Final = 4


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def tile_gemm_flops(tile_m: int, tile_n: int, k: int) -> float:
    """MMA work one block issues for a ``tile_m x tile_n`` tile of depth ``k`` (padding
    included): ``2 * tile_m * tile_n * k``."""
    return 2.0 * tile_m * tile_n * k


def persistent_tile(tile_m: int, tile_n: int, dtype: Dtype) -> CtaTile:
    """FlashMoE's block tile for ``dtype``: ``tile_m x tile_n``, a 32-byte K step, a 2 x 2 warp
    grid and 4 ``cp.async`` stages (see the module docstring)."""
    return CtaTile(
        name=f"{tile_m}x{tile_n}_persistent",
        tile_m=tile_m,
        tile_n=tile_n,
        tile_k=PERSISTENT_K_ROW_BYTES // storage_bytes(dtype),
        warps_m=2,
        warps_n=2,
        stages=PERSISTENT_STAGES,
    )


def tile_gemm_time_s(
    rates: GPURates,
    path: InstructionPath,
    dtype: Dtype,
    tile_m: int,
    tile_n: int,
    k: int,
    rows: int,
    share: MainloopShare,
) -> float:
    """Time one processor block takes for a ``[rows <= tile_m] x tile_n`` output tile of depth
    ``k`` while ``share`` describes the blocks beside it (a partial tile pays for the full one).
    See the module docstring."""
    _check_positive(tile_m=tile_m, tile_n=tile_n, k=k, rows=rows)
    if rows > tile_m:
        raise ValueError(f"rows {rows} exceed the tile's {tile_m}")
    tile = persistent_tile(tile_m, tile_n, dtype)
    return cta_time_s(sm_rates(rates, path, dtype), tile, storage_bytes(dtype), share, k, 0.0)


def block_stream_Bps(rates: GPURates, blocks: int) -> float:
    """Rate cap of one block's transfers: achievable HBM bandwidth / resident ``blocks`` (an
    ASSUMPTION, see the module docstring)."""
    _check_positive(blocks=blocks)
    return rates.hbm_achievable_Bps / blocks


def combine_tile_bytes(rows: int, tile_n: int, element_bytes: int, accumulate: bool) -> float:
    """HBM bytes of one combine tile: the ``rows x tile_n`` result tile read, each row's token
    index and gate probability read, and the output written: read-modify-write (atomic add,
    ``accumulate``, top-k > 1) or a plain store (top-k = 1)."""
    _check_positive(rows=rows, tile_n=tile_n, element_bytes=element_bytes)
    tile_B = float(rows * tile_n * element_bytes)
    meta_B = float(rows * (TOKEN_ID_BYTES + GATE_PROB_BYTES))
    out_B = 2.0 * tile_B if accumulate else tile_B
    return tile_B + meta_B + out_B


def combine_tile_time_s(
    rates: GPURates,
    rows: int,
    tile_n: int,
    element_bytes: int,
    active_blocks: int,
    accumulate: bool = True,
) -> float:
    """Closed form of one combine tile while ``active_blocks`` blocks stream from HBM at once:
    :func:`combine_tile_bytes` / (achievable HBM / ``active_blocks``). With ``active_blocks``
    equal to the grid's blocks this is also the time at the :func:`block_stream_Bps` cap, the
    uncontended DES value; under contention the DES shares the HBM resource instead."""
    _check_positive(active_blocks=active_blocks)
    share_Bps = rates.hbm_achievable_Bps / active_blocks
    return combine_tile_bytes(rows, tile_n, element_bytes, accumulate) / share_Bps
