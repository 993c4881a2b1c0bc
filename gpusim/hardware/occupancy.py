"""Theoretical occupancy: how many blocks of a kernel can be resident on one SM at once.

This follows the logic of NVIDIA's occupancy calculator (``cuda_occupancy.h`` and the occupancy
spreadsheet) for compute capability 8.x/9.x. Each of four resources bounds the resident blocks:

- ``threads``: resident warps per SM. A block occupies ``ceil(threads / warp_size)`` warps, and an
  SM holds at most ``max_threads_per_sm / warp_size`` warps.
- ``blocks``: the architectural cap ``max_blocks_per_sm``.
- ``registers``: registers are allocated per warp, ``regs_per_thread * warp_size`` rounded up to
  ``register_alloc_unit``, out of the register file of one SM sub-partition (the file is split
  evenly over ``sm_subpartitions`` warp schedulers, and a warp's registers live in one of them).
  So the SM holds ``floor((registers_per_sm / subpartitions) / regs_per_warp) * subpartitions``
  warps, i.e. ``floor(that / warps_per_block)`` blocks.
- ``shared_memory``: each block takes its shared memory plus the per-block system reservation,
  rounded up to ``shared_mem_alloc_unit_bytes``, out of the SM's maximum carveout
  (``shared_mem_per_sm_KiB``; the carveout preference is assumed to grant the maximum).

The resident blocks are the minimum of the four. Requests the hardware would refuse to launch
(a block over any per-block limit, or one that does not fit on an SM at all) raise ``ValueError``.

The register check per block uses ``registers_per_sm`` as the per-block register limit
(``cudaDeviceProp.regsPerBlock``, equal to the per-SM file on every 8.x/9.x part), including the
hardware's check that assumes a block's warps are rounded up to a multiple of the sub-partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from gpusim.arith import ceil_div, round_up
from gpusim.spec.hardware import GPUSpec
from gpusim.spec.resources import KernelResources
from gpusim.units import KiB

LimitingFactor = Literal["threads", "blocks", "registers", "shared_memory"]

# When several resources give the same (minimal) block count, the one reported first is the
# architectural cap, then the thread (warp) slots, then the allocatable resources.
_PRIORITY: Final[tuple[LimitingFactor, ...]] = ("blocks", "threads", "registers", "shared_memory")


@dataclass(frozen=True)
class Occupancy:
    """Resident blocks and warps of one kernel configuration on one SM."""

    blocks_per_sm: int
    limiting_factor: LimitingFactor
    """The resource that bounds ``blocks_per_sm`` (the first of ``limiting_factors``)."""
    limiting_factors: tuple[LimitingFactor, ...]
    """Every resource whose bound equals ``blocks_per_sm`` (ties happen often)."""
    warps_per_block: int
    warps_per_sm: int
    """Active warps per SM: ``blocks_per_sm * warps_per_block``."""
    max_warps_per_sm: int
    occupancy: float
    """Active warps / maximum warps per SM, in (0, 1]."""
    regs_per_warp: int
    """Registers allocated to one warp, after rounding to the allocation unit."""
    shared_mem_per_block_bytes: int
    """Shared memory allocated to one block, reservation and rounding included."""


def _kib_to_bytes(size_KiB: float) -> int:
    return round(size_KiB * KiB)


def occupancy(
    gpu: GPUSpec,
    threads_per_block: int,
    registers_per_thread: int,
    shared_mem_per_block_bytes: int,
) -> Occupancy:
    """Theoretical occupancy of a kernel with this launch configuration on ``gpu``.

    ``threads_per_block`` and ``registers_per_thread`` must be positive;
    ``shared_mem_per_block_bytes`` (static plus dynamic, excluding the system reservation) may be
    zero. Raises ``ValueError`` for a configuration the GPU cannot launch.
    """
    for _, reason in gpu.launch_limit_problems(
        threads_per_block, registers_per_thread, shared_mem_per_block_bytes
    ):
        raise ValueError(reason)

    warp = gpu.warp_size
    subparts = gpu.sm_subpartitions
    warps_per_block = ceil_div(threads_per_block, warp)
    max_warps_per_sm = gpu.max_threads_per_sm // warp

    # Threads (warp slots).
    limit_threads = max_warps_per_sm // warps_per_block

    # Blocks.
    limit_blocks = gpu.max_blocks_per_sm

    # Registers: allocated per warp, out of one sub-partition's share of the register file
    # (a block needing more than the whole file was refused above).
    regs_per_warp = round_up(registers_per_thread * warp, gpu.register_alloc_unit)
    warps_per_subpartition = (gpu.registers_per_sm // subparts) // regs_per_warp
    limit_registers = (warps_per_subpartition * subparts) // warps_per_block

    # Shared memory: request plus reservation, rounded to the allocation unit.
    smem_per_block = round_up(
        shared_mem_per_block_bytes + _kib_to_bytes(gpu.shared_mem_reserved_per_block_KiB),
        gpu.shared_mem_alloc_unit_bytes,
    )
    smem_per_sm = _kib_to_bytes(gpu.shared_mem_per_sm_KiB)
    limit_smem = smem_per_sm // smem_per_block if smem_per_block > 0 else limit_blocks

    limits: dict[LimitingFactor, int] = {
        "blocks": limit_blocks,
        "threads": limit_threads,
        "registers": limit_registers,
        "shared_memory": limit_smem,
    }
    blocks = min(limits.values())
    if blocks <= 0:
        zero = [name for name in _PRIORITY if limits[name] == 0]
        raise ValueError(
            f"no block of {threads_per_block} threads, {registers_per_thread} registers/thread and "
            f"{shared_mem_per_block_bytes} B shared memory fits on an SM of {gpu.name} "
            f"(out of: {', '.join(zero)})"
        )
    tied = tuple(name for name in _PRIORITY if limits[name] == blocks)
    warps_per_sm = blocks * warps_per_block
    return Occupancy(
        blocks_per_sm=blocks,
        limiting_factor=tied[0],
        limiting_factors=tied,
        warps_per_block=warps_per_block,
        warps_per_sm=warps_per_sm,
        max_warps_per_sm=max_warps_per_sm,
        occupancy=warps_per_sm / max_warps_per_sm,
        regs_per_warp=regs_per_warp,
        shared_mem_per_block_bytes=smem_per_block,
    )


def occupancy_of(gpu: GPUSpec, resources: KernelResources) -> Occupancy:
    """:func:`occupancy` of a kernel whose block resources are ``resources`` (declared, or read
    from a ptxas resource report)."""
    return occupancy(
        gpu,
        resources.threads_per_block,
        resources.registers_per_thread,
        resources.shared_mem_per_block_bytes,
    )
