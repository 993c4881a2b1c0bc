"""The baselines of Flash-LLM's kernel evaluation, each by its own mechanism (flash_llm.md
section 4; how ``kernel_benchmark/spmm_test.cu`` of the Flash-LLM repository calls them;
``docs/sparse.md``).

- ``cublas``: the dense FP16 GEMM on the tensor cores (:func:`gpusim.kernels.gemm.gemm_cost`).
- ``sputnik``: CSR SpMM on the CUDA cores. FP16 values with 16-bit column indices (``half2`` /
  ``short2``), each row's nonzeros padded to a multiple of 4, a row-swizzle index per row; the
  activations row-major (``B_Transposed``), so one nonzero gathers its ``n`` activations as one
  contiguous run; FP32 accumulation (FMA on the CUDA cores).
- ``cusparse``: ``cusparseSpMM`` CSR with 32-bit indices, ``CUSPARSE_SPMM_CSR_ALG1`` on
  column-major activations (the benchmark's first cuSPARSE variant): the ``n`` activations of a
  nonzero lie ``k`` elements apart, one 32-byte sector each.
- ``sparta``: W split into a 2:4 part (the first two nonzeros of every group of four, run by
  cuSPARSELt on the sparse tensor cores: the MMA work and value bytes of a dense GEMM of depth
  ``k / 2``, which is what the doubled sparse peak buys, plus 2 bits of metadata per kept value)
  and the remainder (Sputnik), then a kernel adding the two outputs.

A CSR kernel's time is the slowest of (:func:`csr_cost`): its HBM bytes (the memory term of the
:class:`KernelCost`), the activation gathers through L1 (every gather is an L1 request of whole
32-byte sectors, at the SM's 128 B/clk L1/shared data path), the gathers that miss L1 at the L2
rate (the hit fraction is the L1 left beside the kernel's shared memory over the activations'
sector footprint, capped at 1; each SM also misses the footprint once), and the FMAs at the CUDA
cores' FP32 rate (``cuda_core_peak x cuda_core_efficiency``). Grids are many small blocks, so no
wave quantisation is modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from gpusim.arith import ceil_div
from gpusim.errors import SimulationError
from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.elementwise import elementwise_cost
from gpusim.kernels.gemm import gemm_cost
from gpusim.kernels.names import SPMM_KERNEL_PREFIX
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.profile import native_tensor_path
from gpusim.spec.workload import ElementwiseOp, GemmOp, SpmmOp
from gpusim.units import KiB

SECTOR_BYTES: Final = 32
"""Granularity of L1 and L2 accesses (CUDA C++ Best Practices Guide, coalesced access)."""
ELEMENT_BYTES: Final = storage_bytes(Dtype.fp16)
ROW_OFFSET_BYTES: Final = 4
GROUP: Final = 4
"""2:4 sparsity: two values kept in every group of four."""
METADATA_BITS_PER_VALUE: Final = 2
"""cuSPARSELt's 2:4 metadata: the 2-bit position of each kept value."""


@dataclass(frozen=True)
class CsrKernel:
    """What distinguishes one CSR SpMM implementation."""

    name: str
    index_bytes: int
    """Bytes of one column index."""
    row_pad: int
    """Each row's nonzeros are padded to a multiple of this (1: none)."""
    row_swizzle: bool
    """An int32 row-order index per row (Sputnik's load balancing)."""
    contiguous_gather: bool
    """A nonzero's ``n`` activations are contiguous (row-major) or one sector each
    (column-major)."""


SPUTNIK: Final = CsrKernel("sputnik", 2, 4, True, True)
CUSPARSE: Final = CsrKernel("cusparse", 4, 1, False, False)


def expected_nnz(op: SpmmOp) -> float:
    """Nonzeros of the weights: ``(1 - sparsity) m k``."""
    return (1.0 - op.sparsity) * op.m * op.k


def two_four_remainder_fraction(density: float) -> float:
    """Fraction of all weights left over after keeping the first two nonzeros of every group of
    four, for independently placed nonzeros: ``E[max(0, X - 2)] / 4`` with X ~ Binomial(4, d)."""
    d = density
    p3 = 4 * d**3 * (1 - d)
    p4 = d**4
    return (p3 + 2 * p4) / GROUP


def csr_cost(kernel: CsrKernel, op: SpmmOp, rates: GPURates, nnz: float) -> KernelCost:
    """One CSR SpMM kernel of ``nnz`` nonzeros (see the module docstring)."""
    m, k, n = op.m, op.k, op.n
    l1_KiB = rates.spec.l1_shared_per_sm_KiB
    if l1_KiB is None:
        raise SimulationError(
            f"GPU '{rates.spec.name}' has no l1_shared_per_sm_KiB (the L1 a CSR SpMM gathers in)"
        )
    stored = nnz + (m * (kernel.row_pad - 1) / 2.0 if kernel.row_pad > 1 else 0.0)
    index_B = ROW_OFFSET_BYTES * (m + 1) + (ROW_OFFSET_BYTES * m if kernel.row_swizzle else 0)
    x_B = k * n * ELEMENT_BYTES
    out_B = m * n * ELEMENT_BYTES
    hbm_B = stored * (ELEMENT_BYTES + kernel.index_bytes) + index_B + x_B + out_B
    if kernel.contiguous_gather:
        per_nonzero_B = ceil_div(n * ELEMENT_BYTES, SECTOR_BYTES) * SECTOR_BYTES
        footprint_B = k * per_nonzero_B
    else:
        per_nonzero_B = n * SECTOR_BYTES
        footprint_B = ceil_div(x_B, SECTOR_BYTES) * SECTOR_BYTES
    gather_B = stored * per_nonzero_B
    hit = min(1.0, l1_KiB * KiB / footprint_B)
    sms = rates.sm_count
    l2_B = gather_B * (1.0 - hit) + sms * min(float(footprint_B), gather_B / sms)
    l1_s = gather_B / (sms * rates.shared_mem_Bps_per_sm)
    l2_s = l2_B / rates.l2_whole_Bps
    flops = 2.0 * nnz * n
    fma_s = 2.0 * stored * n / (rates.cuda_core_peak_FLOPps(Dtype.fp32) * _cuda_core_eff(rates))
    return KernelCost(
        name=f"{SPMM_KERNEL_PREFIX}{kernel.name}_{m}x{n}x{k}",
        flops=flops,
        hbm_bytes=hbm_B,
        blocks=sms,
        sms=sms,
        compute_time_s=max(l1_s, l2_s, fma_s),
        floor_s=rates.kernel_floor_s,
        hbm_achievable_Bps=rates.hbm_achievable_Bps,
        lower_bound_s=max(
            flops / rates.cuda_core_peak_FLOPps(Dtype.fp32), hbm_B / rates.hbm_nameplate_Bps
        ),
        l2_bytes=l2_B,
    )


def _cuda_core_eff(rates: GPURates) -> float:
    return rates.profile.cuda_core_efficiency.value


def dense_gemm(op: SpmmOp, k_depth: int, rates: GPURates) -> GemmOp:
    """The dense FP16 GEMM of ``op``'s shape at depth ``k_depth`` on the GPU's native path."""
    path = native_tensor_path(rates.spec.compute_capability)
    return GemmOp(m=op.m, n=op.n, k=k_depth, dtype=Dtype.fp16, path=path)


def sparta_costs(op: SpmmOp, rates: GPURates) -> tuple[KernelCost, ...]:
    """SparTA's three kernels: the 2:4 part, the Sputnik remainder and the sum."""
    structured = gemm_cost(dense_gemm(op, op.k // 2, rates), rates)
    metadata_B = op.m * op.k / 2 * METADATA_BITS_PER_VALUE / 8
    structured = replace(
        structured,
        name=f"{SPMM_KERNEL_PREFIX}sparta_2to4_{op.m}x{op.n}x{op.k}",
        hbm_bytes=structured.hbm_bytes + metadata_B,
    )
    remainder = two_four_remainder_fraction(1.0 - op.sparsity) * op.m * op.k
    rest = replace(
        csr_cost(SPUTNIK, op, rates, remainder), name=f"{SPMM_KERNEL_PREFIX}sparta_remainder"
    )
    out_B = op.m * op.n * ELEMENT_BYTES
    add = elementwise_cost(ElementwiseOp(bytes_read=2 * out_B, bytes_written=out_B), rates)
    return structured, rest, replace(add, name=f"{SPMM_KERNEL_PREFIX}sparta_add")


def baseline_costs(op: SpmmOp, rates: GPURates) -> tuple[KernelCost, ...]:
    """The kernels of the baseline ``op.impl`` (not ``flash_llm``)."""
    if op.impl == "cublas":
        return (gemm_cost(dense_gemm(op, op.k, rates), rates),)
    if op.impl == "sputnik":
        return (csr_cost(SPUTNIK, op, rates, expected_nnz(op)),)
    if op.impl == "cusparse":
        return (csr_cost(CUSPARSE, op, rates, expected_nnz(op)),)
    if op.impl == "sparta":
        return sparta_costs(op, rates)
    raise ValueError(f"{op.impl} is not a baseline")
