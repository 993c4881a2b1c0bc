"""SpMM cost: Flash-LLM's Load-as-Sparse, Compute-as-Dense kernel, an FP16 sparse weight matrix
``m x k`` in Tiled-CSL times dense activations ``k x n``.

Mechanism (flash_llm.md section 2):

- Tensor work: the tiles run as dense MMAs, ``2 m k n`` FLOP at the achievable tensor rate
  (``peak x tensor_efficiency``), zeros included.
- Loads: the sparse encoding (4 B per nonzero: a 16-bit value and a 16-bit in-tile location) plus
  the dense activations and output, ``4 nnz + 2 (k n + m n)`` bytes, at ``load_Bps``: the rate the
  dense GEMM of the same shape loads its ``2 (m k + k n + m n)`` bytes at (the fitter takes it from
  a measured dense kernel, so the SpMM does not couple to the profile's HBM efficiency).
- Extraction: ``nnz x extract_s_per_nonzero`` spread over the SMs, after the overlapped part:

      time = max(t_tensor, t_load) + nnz x extract_s_per_nonzero / SMs

As a :class:`KernelCost`: ``compute_time_s = t_tensor``, ``hbm_bytes`` the sparse-side bytes at
``hbm_achievable_Bps = load_Bps``, and ``floor_s`` the extraction (the serial term; the launch floor
is already inside the dense reference the load rate comes from).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gpusim.kernels.cost import KernelCost
from gpusim.spec.base import Dtype, storage_bytes

SPARSE_BYTES_PER_NONZERO: Final = 4
"""Tiled-CSL: a 16-bit value and a 16-bit in-tile location per nonzero (flash_llm.md section 2)."""
ELEMENT_BYTES: Final = storage_bytes(Dtype.fp16)
"""Weights, activations and output are FP16."""


@dataclass(frozen=True)
class SpmmShape:
    """A sparse ``m x k`` weight matrix with ``nnz`` nonzeros times dense ``k x n``."""

    m_rows: int
    k_depth: int
    n_cols: int
    nnz: int

    @property
    def dense_bytes(self) -> int:
        """Bytes the dense GEMM of the same shape loads and stores: ``2 (m k + k n + m n)``."""
        m, k, n = self.m_rows, self.k_depth, self.n_cols
        return ELEMENT_BYTES * (m * k + k * n + m * n)

    @property
    def sparse_bytes(self) -> int:
        """Bytes the SpMM loads and stores: ``4 nnz + 2 (k n + m n)``."""
        m, k, n = self.m_rows, self.k_depth, self.n_cols
        return SPARSE_BYTES_PER_NONZERO * self.nnz + ELEMENT_BYTES * (k * n + m * n)

    @property
    def issued_flops(self) -> float:
        """MMA work of the dense tiles, zeros included: ``2 m k n``."""
        return 2.0 * self.m_rows * self.k_depth * self.n_cols

    @property
    def useful_flops(self) -> float:
        """Work on the nonzeros: ``2 nnz n``."""
        return 2.0 * self.nnz * self.n_cols


def dense_load_Bps(shape: SpmmShape, dense_time_s: float) -> float:
    """The load rate of the dense GEMM of ``shape``'s size that took ``dense_time_s``."""
    return shape.dense_bytes / dense_time_s


def spmm_cost(
    shape: SpmmShape,
    *,
    peak_FLOPps: float,
    tensor_efficiency: float,
    load_Bps: float,
    extract_s_per_nonzero: float,
    sms: int,
    hbm_nameplate_Bps: float,
) -> KernelCost:
    """Cost of the SpMM of ``shape`` (see the module docstring). ``peak_FLOPps``: the FP16
    tensor peak; ``load_Bps``: the dense reference's load rate (:func:`dense_load_Bps`);
    ``hbm_nameplate_Bps`` only sets the roofline ``lower_bound_s``."""
    return KernelCost(
        name=f"spmm_{shape.m_rows}x{shape.n_cols}x{shape.k_depth}_nnz{shape.nnz}",
        flops=shape.useful_flops,
        hbm_bytes=float(shape.sparse_bytes),
        blocks=sms,  # one persistent block per SM: the model does not resolve the grid
        sms=sms,
        compute_time_s=shape.issued_flops / (peak_FLOPps * tensor_efficiency),
        floor_s=shape.nnz * extract_s_per_nonzero / sms,
        hbm_achievable_Bps=load_Bps,
        lower_bound_s=max(shape.useful_flops / peak_FLOPps, shape.sparse_bytes / hbm_nameplate_Bps),
    )
