"""Flash-LLM's SpMM: the Load-as-Sparse, Compute-as-Dense (LSCD) kernel on Tiled-CSL weights, as
a per-K-step pipeline of each thread block, in waves over the SMs (``docs/sparse.md``).

``C[m, n] = W[m, k] @ X[k, n]``, W FP16 and sparse in Tiled-CSL (:mod:`gpusim.kernels.tiled_csl`),
X and C FP16 (flash_llm.md sections 2-3). Every block (4 warps) owns a ``tile_m x tile_n`` output
tile and ``k / 64 / split_k`` K steps of 64. In step ``i`` it

1. issues the loads of step ``i + 1``: 128-bit global loads of the step's sparse vectors into
   registers (one step in flight: the encoding's bytes of its ``tile_m / 128`` format tiles),
   ``cp.async`` of the activation slice ``tile_n x 64`` (from L2: every block reads the same X)
   and a ``cp.async`` zero-fill of the next dense A tile in shared memory;
2. runs the MMAs of step ``i`` on the tensor cores (``mma.sync`` m16n8k16, FP32 accumulate);
3. waits for the loads, then *extracts*: every thread scatters the nonzeros it holds into the
   zero-filled tile (two ``__syncthreads`` around it). Nothing of this block is in flight then.

So a step takes ``max(load, shared memory, MMA) + extraction`` (:func:`lscd_step_terms_s`):

- load: the step's sparse bytes at the block's fair share of achievable HBM bandwidth (the
  blocks streaming at once split it), but never less than one HBM load latency (one step in
  flight per block: Little's law);
- shared memory: zero-fill (``tile_m x 64 x 2`` B), the scatter (one 4-byte bank slot per
  nonzero), the activation slice written and the MMA fragment reads (the A tile by each of
  ``warps_n`` warps, the B slice by each of ``warps_m``), at the block's share of the SM's
  shared-memory bandwidth;
- MMA: ``2 x tile_m x mma_n x 64`` FLOP at the block's share of the SM's ``mma.sync`` FP16 issue
  rate (the N = 8 configuration computes 16 columns);
- extraction: ``nnz of the step / 128 threads x extract_cycles_per_nonzero`` cycles of each warp's
  scheduler, the co-resident blocks' warps sharing the SM's schedulers. The cycles per nonzero are
  the calibrated parameter (``sparse.extract_cycles_per_nonzero``, ``docs/calibration.md``).

A block takes one HBM load latency to fill, its steps, and the store of its output tile
(:func:`lscd_block_time_s`). Blocks run ``blocks_per_sm`` to an SM (occupancy from the
configuration's shared memory), in waves; a wave lasts as long as its block with the most
nonzeros (the nonzeros per tile are drawn, :func:`gpusim.kernels.tiled_csl.encode_counts`). With
``split_k > 1`` the blocks write FP16 partials and a second kernel (``SplitK_Reduction``) reads
``split_k x m x n`` of them and writes ``m x n``: an op of two kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from gpusim.arith import ceil_div
from gpusim.errors import SimulationError
from gpusim.hardware.occupancy import occupancy
from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.elementwise import elementwise_cost
from gpusim.kernels.mainloop import SmRates, sm_rates
from gpusim.kernels.names import SPLITK_REDUCTION_NAME, SPMM_KERNEL_PREFIX
from gpusim.kernels.tiled_csl import BYTES_PER_NONZERO, OFFSET_BYTES, TiledCsl, encode_counts
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.hardware import GPUSpec
from gpusim.spec.profile import InstructionPath
from gpusim.spec.sparse import TILE_COLS, TILE_ROWS
from gpusim.spec.workload import ElementwiseOp, SpmmOp
from gpusim.units import MHz_to_Hz

ELEMENT_BYTES: Final = storage_bytes(Dtype.fp16)
"""Weights, activations, partials and output are FP16."""
THREADS_PER_BLOCK: Final = 128
"""Four warps per block in every configuration (flash_llm.md section 3)."""
REGISTERS_PER_THREAD: Final = 128
"""ASSUMPTION (the reference gives only the sparse-data registers, 32-64 per thread): 64 for the
sparse vectors plus accumulators and addresses. It sets occupancy only where shared memory does
not bind first, which it does in every configuration on A100 and H100."""


@dataclass(frozen=True)
class LscdConfig:
    """One tiling configuration of ``SpMM_Kernel`` (flash_llm.md section 3 table)."""

    name: str
    tile_m: int
    """Output rows per block: ``tile_m / 128`` Tiled-CSL tiles per K step."""
    tile_n: int
    """Output columns per block (activation columns loaded per step)."""
    mma_n: int
    """Columns the MMAs compute (16 for the N = 8 configuration)."""
    warps_m: int
    warps_n: int
    smem_bytes: int
    """Dynamic shared memory per block."""


FLASH_LLM_CONFIGS: Final = (
    LscdConfig("4x1x1_N8", 256, 8, 16, 4, 1, 69_632),
    LscdConfig("4x1x1", 256, 16, 16, 4, 1, 69_632),
    LscdConfig("4x1x2", 256, 32, 32, 4, 1, 73_728),
    LscdConfig("2x2x2", 128, 64, 64, 2, 2, 49_152),
    LscdConfig("2x2x4", 128, 128, 128, 2, 2, 67_584),
)

SPLIT_K_BY_M: Final = {
    # benchmark.sh and the FasterTransformer patch, keyed by M (flash_llm.md section 3)
    21504: 5, 7168: 7, 28672: 7, 27648: 2, 9216: 6, 36864: 3, 12288: 9, 49152: 9,
    # tensor-parallel shards
    10752: 5, 14336: 7, 13824: 4, 18432: 3, 24576: 9, 5376: 10, 6912: 8,
}  # fmt: skip
MAX_SPLIT_K: Final = 16
"""Largest split tried for an M the table does not list."""


def flash_llm_config(n_cols: int) -> LscdConfig:
    """The configuration ``SpMM_SplitK_API`` picks for ``n`` activation columns: the first whose
    ``tile_n`` covers ``n``, else 128-column tiles."""
    for config in FLASH_LLM_CONFIGS:
        if n_cols <= config.tile_n:
            return config
    return FLASH_LLM_CONFIGS[-1]


@dataclass(frozen=True)
class LscdPlan:
    """How the model runs one LSCD SpMM."""

    config: LscdConfig
    split_k: int
    blocks: int
    blocks_per_sm: int
    steps: int
    """K steps of one block."""
    compute_time_s: float
    """The waves of block times (the load term included)."""


def lscd_step_terms_s(
    sm: SmRates,
    config: LscdConfig,
    nnz_step: float,
    *,
    ctas_per_sm: int,
    streaming_ctas: int,
    extract_s_per_nonzero: float,
) -> tuple[float, float, float, float]:
    """The four terms of one K step of one block holding ``nnz_step`` nonzero words (padding
    included): load, shared memory, MMA and extraction (see the module docstring). The step takes
    ``max(load, shared memory, MMA) + extraction``."""
    tiles_step = config.tile_m // TILE_ROWS
    sparse_B = BYTES_PER_NONZERO * nnz_step + OFFSET_BYTES * tiles_step
    load_s = max(sparse_B * streaming_ctas / sm.hbm_Bps, sm.hbm_load_latency_s)
    a_tile_B = config.tile_m * TILE_COLS * ELEMENT_BYTES
    b_slice_B = config.tile_n * TILE_COLS * ELEMENT_BYTES
    smem_B = (
        a_tile_B  # zero-fill
        + BYTES_PER_NONZERO * nnz_step  # scatter: one bank slot per nonzero
        + b_slice_B
        + config.warps_n * a_tile_B
        + config.warps_m * config.mma_n * TILE_COLS * ELEMENT_BYTES
    )
    smem_s = smem_B * ctas_per_sm / sm.shared_mem_Bps
    mma_s = 2.0 * config.tile_m * config.mma_n * TILE_COLS * ctas_per_sm / sm.mma_FLOPps
    extract_s = ctas_per_sm * nnz_step / THREADS_PER_BLOCK * extract_s_per_nonzero
    return load_s, smem_s, mma_s, extract_s


def lscd_block_time_s(
    sm: SmRates,
    config: LscdConfig,
    nnz_block: float,
    steps: int,
    *,
    ctas_per_sm: int,
    streaming_ctas: int,
    extract_s_per_nonzero: float,
) -> float:
    """One block from start to finish: an HBM load latency to fill, ``steps`` K steps holding
    ``nnz_block / steps`` nonzero words each, and the store of its FP16 output tile at its share
    of HBM bandwidth."""
    load_s, smem_s, mma_s, extract_s = lscd_step_terms_s(
        sm,
        config,
        nnz_block / steps,
        ctas_per_sm=ctas_per_sm,
        streaming_ctas=streaming_ctas,
        extract_s_per_nonzero=extract_s_per_nonzero,
    )
    store_s = config.tile_m * config.tile_n * ELEMENT_BYTES * streaming_ctas / sm.hbm_Bps
    return sm.hbm_load_latency_s + steps * (max(load_s, smem_s, mma_s) + extract_s) + store_s


def extract_s_per_nonzero(rates: GPURates) -> float:
    """Seconds of one warp scheduler per nonzero a thread scatters: the profile's
    ``sparse.extract_cycles_per_nonzero`` at the SM clock."""
    sparse = rates.profile.sparse
    if sparse is None:
        raise SimulationError(
            f"profile '{rates.profile.id}' has no sparse.extract_cycles_per_nonzero (the LSCD "
            "SpMM's extraction cost; docs/calibration.md)"
        )
    return sparse.extract_cycles_per_nonzero.value / MHz_to_Hz(rates.spec.clock_MHz)


def _block_nnz(encoding: TiledCsl, config: LscdConfig, split_k: int, col_blocks: int) -> np.ndarray:
    """Padded nonzero words of every block, in launch order (column blocks fastest, then
    row blocks, then splits within a row block)."""
    rows = config.tile_m // TILE_ROWS
    padded = encoding.padded_counts
    row_tiles, k_tiles = padded.shape
    steps = ceil_div(k_tiles, split_k)
    if steps * split_k != k_tiles:  # the last split is short: zero tiles pad it
        padded = np.pad(padded, ((0, 0), (0, steps * split_k - k_tiles)))
    per_block = padded.reshape(row_tiles // rows, rows, split_k, steps).sum(axis=(1, 3))
    return np.repeat(per_block.reshape(-1), col_blocks)


def _waves_time_s(
    sm: SmRates,
    config: LscdConfig,
    block_nnz: np.ndarray,
    steps: int,
    blocks_per_sm: int,
    sms: int,
    extract_s: float,
) -> float:
    slots = blocks_per_sm * sms
    total = 0.0
    for first in range(0, block_nnz.size, slots):
        wave = block_nnz[first : first + slots]
        ctas = int(wave.size)
        total += lscd_block_time_s(
            sm,
            config,
            float(wave.max()),
            steps,
            ctas_per_sm=ceil_div(ctas, sms),
            streaming_ctas=ctas,
            extract_s_per_nonzero=extract_s,
        )
    return total


def _split_candidates(m_rows: int, k_tiles: int) -> tuple[int, ...]:
    listed = SPLIT_K_BY_M.get(m_rows)
    if listed is not None:
        return (min(listed, k_tiles),)
    return tuple(range(1, min(MAX_SPLIT_K, k_tiles) + 1))


def lscd_plan(
    op: SpmmOp,
    sm: SmRates,
    gpu: GPUSpec,
    extract_s: float,
    *,
    config: LscdConfig | None = None,
    split_k: int | None = None,
) -> LscdPlan:
    """The configuration, split-K, occupancy and waves of ``op`` on ``gpu`` whose SM draws on
    ``sm`` (``extract_s``: seconds per nonzero a thread scatters, :func:`extract_s_per_nonzero`).
    The configuration is Flash-LLM's for ``n`` unless given; the split is ``split_k`` if given,
    else ``SPLIT_K_BY_M``'s where it lists ``m``, else the one of least modelled time (a split
    that does not divide the K tiles leaves the last split short)."""
    config = flash_llm_config(op.n) if config is None else config
    if op.m % config.tile_m:
        raise SimulationError(
            f"Flash-LLM's {config.name} tiling needs m a multiple of {config.tile_m}, got {op.m}"
        )
    encoding = _encoding(op)
    occ = occupancy(gpu, THREADS_PER_BLOCK, REGISTERS_PER_THREAD, config.smem_bytes)
    col_blocks = ceil_div(op.n, config.tile_n)
    k_tiles = op.k // TILE_COLS
    splits = _split_candidates(op.m, k_tiles) if split_k is None else (split_k,)
    best: LscdPlan | None = None
    for split in splits:
        block_nnz = _block_nnz(encoding, config, split, col_blocks)
        steps = ceil_div(k_tiles, split)
        time_s = _waves_time_s(
            sm, config, block_nnz, steps, occ.blocks_per_sm, gpu.sm_count, extract_s
        )
        if best is None or time_s < best.compute_time_s:
            best = LscdPlan(config, split, int(block_nnz.size), occ.blocks_per_sm, steps, time_s)
    assert best is not None  # at least one split
    return best


def _encoding(op: SpmmOp) -> TiledCsl:
    return encode_counts(
        op.m, op.k, op.sparsity, op.pattern, row_density_cv=op.row_density_cv, seed=op.seed
    )


def lscd_hbm_bytes(op: SpmmOp, plan: LscdPlan) -> float:
    """HBM bytes of the LSCD kernel: the Tiled-CSL encoding, the activations once and the
    output (``split_k`` FP16 partials when it splits)."""
    x_B = op.k * op.n * ELEMENT_BYTES
    return float(_encoding(op).storage_bytes + x_B + plan.split_k * op.m * op.n * ELEMENT_BYTES)


def splitk_reduction(op: SpmmOp, plan: LscdPlan) -> ElementwiseOp | None:
    """``SplitK_Reduction``: reads the ``split_k`` partials of every output, writes the output
    (one add per partial); ``None`` without a split."""
    if plan.split_k == 1:
        return None
    partials_B = plan.split_k * op.m * op.n * ELEMENT_BYTES
    out_B = op.m * op.n * ELEMENT_BYTES
    return ElementwiseOp(
        bytes_read=partials_B, bytes_written=out_B, flops=float(partials_B // ELEMENT_BYTES)
    )


def spmm_costs(op: SpmmOp, rates: GPURates) -> tuple[KernelCost, ...]:
    """The kernels of ``op`` run by Flash-LLM on the GPU of ``rates``: the LSCD kernel, then the
    split-K reduction when it splits K. Other ``impl`` values are the baselines
    (:func:`gpusim.kernels.sparse_baselines.baseline_costs`)."""
    if op.impl != "flash_llm":
        from gpusim.kernels.sparse_baselines import baseline_costs

        return baseline_costs(op, rates)
    return lscd_costs(op, rates)


def lscd_costs(
    op: SpmmOp, rates: GPURates, *, extract_s: float | None = None
) -> tuple[KernelCost, ...]:
    """The LSCD kernel of ``op`` and, when it splits K, its reduction kernel (see the module
    docstring). ``extract_s`` overrides the profile's extraction cost."""
    per_nz = extract_s_per_nonzero(rates) if extract_s is None else extract_s
    sm = sm_rates(rates, InstructionPath.mma_sync, Dtype.fp16)
    plan = lscd_plan(op, sm, rates.spec, per_nz)
    hbm_B = lscd_hbm_bytes(op, plan)
    useful = 2.0 * _encoding(op).nnz * op.n
    main = KernelCost(
        name=f"{SPMM_KERNEL_PREFIX}lscd_{op.m}x{op.n}x{op.k}_{plan.config.name}_split{plan.split_k}",
        flops=useful,
        hbm_bytes=hbm_B,
        blocks=plan.blocks,
        sms=min(rates.sm_count, plan.blocks),
        compute_time_s=plan.compute_time_s,
        floor_s=rates.kernel_floor_s,
        hbm_achievable_Bps=rates.hbm_achievable_Bps,
        lower_bound_s=max(
            useful / rates.tensor_peak_FLOPps(Dtype.fp16), hbm_B / rates.hbm_nameplate_Bps
        ),
        l2_bytes=float(plan.blocks * plan.steps * plan.config.tile_n * TILE_COLS * ELEMENT_BYTES),
    )
    reduction = splitk_reduction(op, plan)
    if reduction is None:
        return (main,)
    cost = elementwise_cost(reduction, rates)
    return main, replace(cost, name=f"{SPLITK_REDUCTION_NAME}_{plan.split_k}")
