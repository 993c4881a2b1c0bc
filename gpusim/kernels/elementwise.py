"""Costs of memory-bound elementwise kernels and of the empty kernel."""

from __future__ import annotations

from typing import Final

from gpusim.arith import ceil_div
from gpusim.hardware.occupancy import occupancy
from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import BlockShape, KernelCost, occupied_sms
from gpusim.spec.base import Dtype
from gpusim.spec.workload import ElementwiseOp

THREADS_PER_BLOCK: Final = 256
BYTES_PER_THREAD: Final = 16
"""One 128-bit access per thread (4 FP32 elements) of the larger of the read and write streams."""
REGISTERS_PER_THREAD: Final = 32
"""Assumed register use of an elementwise kernel, for the resident-block count."""
ELEMENTWISE_BLOCK: Final = BlockShape(THREADS_PER_BLOCK, REGISTERS_PER_THREAD, 0)


def elementwise_blocks(op: ElementwiseOp, rates: GPURates) -> int:
    """Grid size: one block of 256 threads per 4 KiB (256 x 16 B) of the larger stream, at least
    one, and at most one full wave of resident blocks (beyond that the kernel loops grid-stride)."""
    per_block = THREADS_PER_BLOCK * BYTES_PER_THREAD
    wanted = max(1, ceil_div(max(op.bytes_read, op.bytes_written), per_block))
    resident = occupancy(
        rates.spec, ELEMENTWISE_BLOCK.threads, ELEMENTWISE_BLOCK.registers_per_thread, 0
    ).blocks_per_sm
    return min(wanted, resident * rates.sm_count)


def elementwise_cost(op: ElementwiseOp, rates: GPURates) -> KernelCost:
    """Cost of a memory-bound kernel: ``bytes_read + bytes_written`` of HBM traffic, and
    ``flops`` on the CUDA cores at the FP32 peak times ``profile.cuda_core_efficiency``."""
    peak = rates.cuda_core_peak_FLOPps(Dtype.fp32)
    achievable = peak * rates.profile.cuda_core_efficiency.value
    hbm_bytes = float(op.bytes_read + op.bytes_written)
    return KernelCost(
        name=f"elementwise_r{op.bytes_read}_w{op.bytes_written}",
        flops=op.flops,
        hbm_bytes=hbm_bytes,
        blocks=(blocks := elementwise_blocks(op, rates)),
        sms=occupied_sms(blocks, ELEMENTWISE_BLOCK, rates.spec),
        compute_time_s=op.flops / achievable,
        floor_s=rates.kernel_floor_s,
        hbm_achievable_Bps=rates.hbm_achievable_Bps,
        lower_bound_s=max(op.flops / peak, hbm_bytes / rates.hbm_nameplate_Bps),
    )


def null_cost(rates: GPURates) -> KernelCost:
    """Cost of an empty kernel: the floor only."""
    return KernelCost(
        name="null",
        flops=0.0,
        hbm_bytes=0.0,
        blocks=1,
        sms=1,
        compute_time_s=0.0,
        floor_s=rates.kernel_floor_s,
        hbm_achievable_Bps=rates.hbm_achievable_Bps,
        lower_bound_s=0.0,
    )
