"""The cost of one kernel on one GPU: the closed form that the DES reproduces when uncontended."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpusim.arith import ceil_div
from gpusim.hardware.occupancy import occupancy
from gpusim.spec.hardware import GPUSpec


@dataclass(frozen=True)
class BlockShape:
    """The resources one thread block declares: what the occupancy calculation needs."""

    threads: int
    registers_per_thread: int
    shared_mem_bytes: int


def occupied_sms(blocks: int, block: BlockShape, gpu: GPUSpec) -> int:
    """SMs a grid of ``blocks`` occupies at once: ``ceil(blocks / resident blocks per SM)``,
    at most every SM (the rest of the grid runs in later waves on the same SMs)."""
    per_sm = occupancy(gpu, block.threads, block.registers_per_thread, block.shared_mem_bytes)
    return max(1, min(gpu.sm_count, ceil_div(blocks, per_sm.blocks_per_sm)))


@dataclass(frozen=True)
class KernelCost:
    """What one kernel needs from one GPU, and how long it takes alone on it (SI units).

    The uncontended duration is ``time_s = floor_s + max(compute_time_s, hbm_bytes /
    hbm_achievable_Bps)``: a fixed floor (the duration of an empty kernel), then the body, which is
    either compute-bound or bound by achievable HBM bandwidth.

    The DES reproduces ``time_s`` exactly for a kernel running alone by holding the GPU for
    ``floor_s`` and then running one HBM flow of ``hbm_bytes`` whose rate is capped at
    ``hbm_flow_cap_Bps = hbm_bytes / compute_time_s``: the flow's rate is then
    ``min(hbm_achievable_Bps, cap)``, so it lasts ``max(compute_time_s, hbm_bytes /
    hbm_achievable_Bps)``. Under contention the same flow shares HBM with others and slows down,
    while the cap keeps a compute-bound kernel from finishing faster than its compute allows. A
    kernel with ``hbm_bytes == 0`` must still hold the GPU for ``compute_time_s`` (a zero-byte flow
    lasts no time), and one with ``compute_time_s == 0`` has an unbounded cap.
    """

    name: str
    flops: float
    """Useful floating-point operations (e.g. ``2*m*n*k`` for a GEMM, padding excluded)."""
    hbm_bytes: float
    """Bytes read from plus written to HBM."""
    blocks: int
    """Grid size (thread blocks launched)."""
    sms: int
    """SMs the kernel occupies while it runs (:func:`occupied_sms`)."""
    compute_time_s: float
    """Time the SMs need for the kernel body at the achievable rate on the SMs used, excluding
    the memory-bound term (wave quantisation included)."""
    floor_s: float
    """Fixed per-kernel floor: the duration of an empty kernel (``GPURates.kernel_floor_s``)."""
    hbm_achievable_Bps: float
    """Achievable HBM bandwidth the memory term of ``time_s`` uses."""
    lower_bound_s: float
    """Roofline at nameplate peaks: ``max(flops / peak, compulsory bytes / hbm_nameplate_Bps)``,
    no floor. Always at most ``time_s``."""
    l2_bytes: float = 0.0
    """Bytes the kernel's CTAs read from L2 beyond its HBM traffic (a tiled GEMM's operand
    re-reads; docs/memory.md). Their time is part of ``compute_time_s``."""

    def __post_init__(self) -> None:
        for field in (
            "flops",
            "hbm_bytes",
            "compute_time_s",
            "floor_s",
            "lower_bound_s",
            "l2_bytes",
        ):
            value = getattr(self, field)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(
                    f"KernelCost {self.name!r}: {field} must be finite and >= 0, got {value}"
                )
        if self.blocks < 1:
            raise ValueError(f"KernelCost {self.name!r}: blocks must be >= 1, got {self.blocks}")
        if self.sms < 1:
            raise ValueError(f"KernelCost {self.name!r}: sms must be >= 1, got {self.sms}")
        if not (math.isfinite(self.hbm_achievable_Bps) and self.hbm_achievable_Bps > 0):
            raise ValueError(
                f"KernelCost {self.name!r}: hbm_achievable_Bps must be finite and > 0, "
                f"got {self.hbm_achievable_Bps}"
            )

    @property
    def memory_time_s(self) -> float:
        """Time the HBM traffic alone needs at achievable bandwidth."""
        return self.hbm_bytes / self.hbm_achievable_Bps

    @property
    def body_time_s(self) -> float:
        """Uncontended duration after the floor: ``max(compute_time_s, memory_time_s)``."""
        return max(self.compute_time_s, self.memory_time_s)

    @property
    def time_s(self) -> float:
        """Uncontended duration:
        ``floor_s + max(compute_time_s, hbm_bytes / hbm_achievable_Bps)``."""
        return self.floor_s + self.body_time_s

    @property
    def hbm_flow_cap_Bps(self) -> float:
        """Rate cap of the kernel's HBM flow in the DES: ``hbm_bytes / compute_time_s``
        (``inf`` when ``compute_time_s`` is zero)."""
        if self.compute_time_s == 0:
            return math.inf
        return self.hbm_bytes / self.compute_time_s
