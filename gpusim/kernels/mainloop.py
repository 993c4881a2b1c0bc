"""The tensor-core mainloop of one thread block (CTA): what limits each K step of a tiled GEMM.

A tiled GEMM (a cuBLAS/CUTLASS kernel, a grouped GEMM, a persistent kernel's tile task) gives each
CTA a ``tile_m x tile_n`` output tile and walks K in steps of ``tile_k``. Every step the CTA

1. brings the step's operand slices, ``(tile_m x tile_k)`` of A and ``(tile_k x tile_n)`` of B,
   from the L2 into shared memory (``cp.async`` on the SM80 path, TMA on SM90; with a TMA
   *multicast* cluster of ``cluster_m`` CTAs along M, one load of the B slice feeds all of them);
2. reads them from shared memory into the tensor cores (each warp its own fragments:
   ``warps_n`` copies of the A slice and ``warps_m`` copies of the B slice for a
   ``warps_m x warps_n`` warp grid; ``wgmma`` warpgroups read shared memory the same way);
3. issues ``2 * tile_m * tile_n * tile_k`` FLOP of MMA instructions.

A multi-stage pipeline overlaps the three, so a step takes the slowest of them
(:func:`k_step_time_s`):

- MMA: the step's FLOP at the CTA's share of the SM's MMA issue rate (tensor peak x the profile's
  ``tensor_efficiency[path][dtype]`` / SMs, split evenly between the co-resident CTAs that compute;
  a SIMT GEMM on a GPU without tensor cores for the dtype: the CUDA-core peak x
  ``cuda_core_efficiency`` / SMs, its FMAs taking the place of the MMAs);
- L2: the step's operand bytes at the CTA's share of the L2 read bandwidth (the device's L2 rate
  split evenly between the CTAs streaming at once), but no more than the CTA's own loads in flight
  allow (Little's law: ``stages x step bytes / L2 hit latency``), which is what a CTA alone gets;
- shared memory: the bytes written by the operand loads plus the fragment reads, at the CTA's
  share of the SM's shared-memory bandwidth (``shared_mem_bytes_per_clk x clock``).

A CTA's time is then ``fill + steps x step + epilogue`` (:func:`cta_time_s`): ``fill`` is one HBM
load latency (the first stage's operands come from HBM), the epilogue the store of the output
tile at the CTA's share of HBM bandwidth.

Which L2 rate applies (:meth:`SmRates.l2_read_Bps`): the L2 of H100 (and A100) is built as two
partitions; an SM reads lines of the far partition through the partition crossbar, and Hopper
keeps a near copy of re-read lines. Chips and Cheese measured above 5.5 TB/s while the data read
fits the near partition and 3.8 TB/s over the whole 50 MB (hardware.md §5). A mainloop's hot data
is the operand slices of its resident CTAs' pipeline stages (megabytes at most), which fits a
partition, so the near rate applies; a footprint larger than one partition falls back to the
whole-L2 rate. Both rates are calibration-profile parameters (``memory_hierarchy``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpusim.arith import ceil_div
from gpusim.hardware.rates import GPURates
from gpusim.spec.base import Dtype
from gpusim.spec.profile import InstructionPath


@dataclass(frozen=True)
class CtaTile:
    """One CTA's tile and pipeline: the library configuration a GEMM kernel was built with."""

    name: str
    """The configuration as its library names it (e.g. ``128x256x64_2x1x1``)."""
    tile_m: int
    tile_n: int
    tile_k: int
    """K elements per mainloop step."""
    warps_m: int
    """Warps (``wgmma``: consumer warpgroups) along M; each reads the B slice from shared memory."""
    warps_n: int
    """Warps along N; each reads the A slice from shared memory."""
    stages: int
    """Shared-memory pipeline stages (operand slices in flight per CTA)."""
    cluster_m: int = 1
    """CTAs of a TMA multicast cluster along M that share one load of the B slice."""

    def __post_init__(self) -> None:
        for field in ("tile_m", "tile_n", "tile_k", "warps_m", "warps_n", "stages", "cluster_m"):
            if getattr(self, field) < 1:
                raise ValueError(f"CtaTile {self.name}: {field} must be >= 1")

    def step_flops(self) -> float:
        """MMA work of one K step: ``2 * tile_m * tile_n * tile_k``."""
        return 2.0 * self.tile_m * self.tile_n * self.tile_k

    def l2_step_bytes(self, element_bytes: int) -> float:
        """Operand bytes one CTA reads from L2 per K step (the B slice shared by its cluster)."""
        return (self.tile_m + self.tile_n / self.cluster_m) * self.tile_k * element_bytes

    def smem_step_bytes(self, element_bytes: int) -> float:
        """Shared-memory traffic of one K step: the operand slices written, then read by every
        warp that needs them (``warps_n`` copies of A, ``warps_m`` of B)."""
        written = (self.tile_m + self.tile_n) * self.tile_k
        read = (self.warps_n * self.tile_m + self.warps_m * self.tile_n) * self.tile_k
        return float((written + read) * element_bytes)

    def steps(self, k_depth: int) -> int:
        """K steps for depth ``k_depth`` (the last one padded)."""
        return ceil_div(k_depth, self.tile_k)


@dataclass(frozen=True)
class MainloopShare:
    """How many CTAs share what while a mainloop runs."""

    ctas_per_sm: int
    """CTAs computing on the same SM (they split its MMA issue rate and shared memory)."""
    streaming_ctas: int
    """CTAs of the GPU reading operands from L2 at the same time (they split its L2 rate)."""

    def __post_init__(self) -> None:
        if self.ctas_per_sm < 1 or self.streaming_ctas < 1:
            raise ValueError("a mainloop share needs at least one CTA")


@dataclass(frozen=True)
class SmRates:
    """What one SM's mainloop draws on, for one instruction path and dtype (SI units)."""

    mma_FLOPps: float
    """MMA issue rate of one SM: tensor peak x ``tensor_efficiency[path][dtype]`` / SMs (a
    CUDA-core GEMM: CUDA-core peak x ``cuda_core_efficiency`` / SMs)."""
    l2_near_Bps: float
    l2_whole_Bps: float
    l2_partition_B: float
    """Capacity of one L2 partition."""
    l2_hit_latency_s: float
    shared_mem_Bps: float
    """Shared-memory bandwidth of one SM."""
    hbm_load_latency_s: float
    hbm_Bps: float
    """Achievable HBM bandwidth of the GPU (the epilogue's stores share it)."""

    def l2_read_Bps(self, hot_bytes: float) -> float:
        """The device's L2 read rate for a working set of ``hot_bytes``: the near-partition rate
        while it fits one partition, else the whole-L2 rate (see the module docstring)."""
        return self.l2_near_Bps if hot_bytes <= self.l2_partition_B else self.l2_whole_Bps


def sm_rates(rates: GPURates, path: InstructionPath, dtype: Dtype) -> SmRates:
    """The :class:`SmRates` of the GPU of ``rates`` for ``path`` and ``dtype``: the MMA rate on
    the path the GPU runs it on (:meth:`GPURates.matmul_path`: the tensor peak times its
    ``tensor_efficiency``, or on the CUDA cores their peak times ``cuda_core_efficiency``)."""
    return SmRates(
        mma_FLOPps=rates.matmul_peak_FLOPps(path, dtype)
        * rates.matmul_efficiency(path, dtype)
        / rates.sm_count,
        l2_near_Bps=rates.l2_near_Bps,
        l2_whole_Bps=rates.l2_whole_Bps,
        l2_partition_B=rates.l2_bytes / rates.spec.l2_partitions,
        l2_hit_latency_s=rates.l2_hit_latency_s,
        shared_mem_Bps=rates.shared_mem_Bps_per_sm,
        hbm_load_latency_s=rates.hbm_load_latency_s,
        hbm_Bps=rates.hbm_achievable_Bps,
    )


def k_step_terms_s(
    sm: SmRates, tile: CtaTile, element_bytes: int, share: MainloopShare
) -> tuple[float, float, float]:
    """The three bounds of one K step of one CTA: its MMA issue, its L2 operand reads and its
    shared-memory traffic (see the module docstring)."""
    mma_s = tile.step_flops() * share.ctas_per_sm / sm.mma_FLOPps
    step_B = tile.l2_step_bytes(element_bytes)
    hot_B = share.streaming_ctas * tile.stages * step_B
    fair_Bps = sm.l2_read_Bps(hot_B) / share.streaming_ctas
    in_flight_Bps = tile.stages * step_B / sm.l2_hit_latency_s
    l2_s = step_B / min(fair_Bps, in_flight_Bps)
    smem_s = tile.smem_step_bytes(element_bytes) * share.ctas_per_sm / sm.shared_mem_Bps
    return mma_s, l2_s, smem_s


def k_step_time_s(sm: SmRates, tile: CtaTile, element_bytes: int, share: MainloopShare) -> float:
    """Time of one K step of one CTA: the slowest of :func:`k_step_terms_s`."""
    return max(k_step_terms_s(sm, tile, element_bytes, share))


def cta_time_s(
    sm: SmRates,
    tile: CtaTile,
    element_bytes: int,
    share: MainloopShare,
    k_depth: int,
    epilogue_bytes: float,
) -> float:
    """One CTA from start to finish: an HBM load latency to fill the pipeline, ``steps(k)`` K
    steps, and the store of ``epilogue_bytes`` at the CTA's share of achievable HBM bandwidth."""
    body_s = tile.steps(k_depth) * k_step_time_s(sm, tile, element_bytes, share)
    store_s = epilogue_bytes * share.streaming_ctas / sm.hbm_Bps
    return sm.hbm_load_latency_s + body_s + store_s
