"""Pieces every host-driven MoE strategy shares: the family's phases, the router operators, the
count exchange, the send matrices and the expert FFN kernels."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from gpusim.execution.program import Exchange, ExchangeStep, KernelStep, Step, SyncStep
from gpusim.hardware.rates import GPURates
from gpusim.kernels import kernel_cost
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.grouped_gemm import grouped_gemm_cost
from gpusim.spec.base import Dtype
from gpusim.spec.profile import InstructionPath
from gpusim.spec.workload import ElementwiseOp, GemmOp
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch
from gpusim.workloads.moe.operators import (
    ID_BYTES,
    PERMUTE,
    ROUTER,
    UNPERMUTE,
    layer_sizes,
)

Phase = Literal["gate", "dispatch", "gemm", "combine"]
"""The MoE family's phases: every step of a host-driven MoE program is in one of them."""
PHASES: tuple[Phase, ...] = ("gate", "dispatch", "gemm", "combine")
"""The MoE phases in the order metrics list them (``{phase}_s`` per GPU)."""


def elementwise(name: str, read_B: float, write_B: float, rates: GPURates) -> KernelCost:
    """A memory-bound operator's kernel."""
    op = ElementwiseOp(bytes_read=int(read_B), bytes_written=int(write_B))
    cost = kernel_cost(op, rates)
    return renamed(cost, name)


def renamed(cost: KernelCost, name: str) -> KernelCost:
    """The same cost under another kernel name."""
    return replace(cost, name=name)


def router_gemm(g: LayerGeometry, rates: GPURates, dtype: Dtype) -> KernelCost:
    """The gate GEMM: tokens x hidden times hidden x experts."""
    gate = GemmOp(m=g.tokens_per_gpu, n=g.experts, k=g.hidden, dtype=dtype)
    return renamed(kernel_cost(gate, rates), "router_gemm")


def router_steps(g: LayerGeometry, rates: GPURates, dtype: Dtype) -> list[Step]:
    """Gate GEMM, softmax, top-k and the per-expert histogram (the router of every baseline)."""
    sizes = layer_sizes(g, dtype)
    phase: Phase = "gate"
    gate = KernelStep(router_gemm(g, rates, dtype), phase)
    return [gate, *(KernelStep(op.cost(sizes, rates), phase) for op in ROUTER)]


def count_exchange_steps(g: LayerGeometry, nccl_sms: int) -> list[Step]:
    """Tokens-per-expert to the host, all-to-all of the counts, and the host reading the
    receive counts: the two synchronisations that size a dropless all-to-all."""
    per_pair = np.full((g.n_gpus, g.n_gpus), float(g.local_experts * ID_BYTES))
    return [
        SyncStep(g.experts * ID_BYTES, "gate"),
        _exchange_step(Exchange("count_alltoall", per_pair, "nccl", nccl_sms), "gate"),
        SyncStep(g.n_gpus * g.local_experts * ID_BYTES, "gate"),
    ]


def _exchange_step(ex: Exchange, phase: Phase, stream: int = 0) -> Step:
    return ExchangeStep(ex, phase, stream)


def send_matrix(g: LayerGeometry, batch: RoutedBatch, pad_to_capacity: bool) -> np.ndarray:
    """Dispatch bytes ``[src, dst]``: routed rows (or every local expert's full capacity when
    padding) times the row size."""
    if pad_to_capacity and g.capacity() is not None:
        rows = np.full((g.n_gpus, g.n_gpus), float(g.local_experts * (g.capacity() or 0)))
    else:
        rows = g.tokens_to_gpu(batch).astype(float)
    out: np.ndarray = rows * g.row_bytes
    return out


def expert_rows(
    g: LayerGeometry, batch: RoutedBatch, rank: int, pad_to_capacity: bool
) -> list[int]:
    """Rows each local expert of ``rank`` computes."""
    lx = g.local_experts
    experts = range(rank * lx, (rank + 1) * lx)
    if pad_to_capacity and g.capacity() is not None:
        return [g.n_gpus * (g.capacity() or 0) for _ in experts]
    return [int(batch.counts[:, e].sum()) for e in experts]


@dataclass(frozen=True)
class ExpertFFN:
    """The expert FFN's kernels for one rank: GEMM0, activation, GEMM1."""

    gemm0: list[KernelCost]
    activation: KernelCost
    gemm1: list[KernelCost]


def expert_ffn(
    g: LayerGeometry,
    rows: list[int],
    rates: GPURates,
    dtype: Dtype,
    grouped: bool,
    sms: int | None = None,
) -> ExpertFFN:
    """Grouped GEMMs (one kernel each, CUTLASS) or one GEMM launch per expert (TE)."""
    path = InstructionPath.wgmma
    if grouped:
        g0 = [
            grouped_gemm_cost(
                rows, g.intermediate, g.hidden, dtype, path, rates, "grouped_gemm0", sms
            )
        ]
        g1 = [
            grouped_gemm_cost(
                rows, g.hidden, g.intermediate, dtype, path, rates, "grouped_gemm1", sms
            )
        ]
    else:
        g0 = [
            renamed(
                kernel_cost(GemmOp(m=m, n=g.intermediate, k=g.hidden, dtype=dtype), rates), "gemm0"
            )
            for m in rows
            if m > 0
        ]
        g1 = [
            renamed(
                kernel_cost(GemmOp(m=m, n=g.hidden, k=g.intermediate, dtype=dtype), rates), "gemm1"
            )
            for m in rows
            if m > 0
        ]
    total = sum(rows) * g.intermediate * g.element_bytes
    return ExpertFFN(g0, elementwise("activation", total, total, rates), g1)


def permute_steps(g: LayerGeometry, rates: GPURates) -> list[Step]:
    """Sort token copies by expert and gather their rows."""
    sizes = layer_sizes(g, g.dtype)
    return [KernelStep(op.cost(sizes, rates), "dispatch") for op in PERMUTE]


def unpermute_step(g: LayerGeometry, rates: GPURates, after: tuple[int, ...] = ()) -> Step:
    """Scatter rows back to token order, scale by the gate and sum the k copies."""
    return KernelStep(UNPERMUTE.cost(layer_sizes(g, g.dtype), rates), "combine", after=after)
