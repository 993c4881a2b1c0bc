"""Megatron-LM's MoE layer (Megatron-Core, alltoall token dispatcher, GroupedMLP experts): a
host-driven chain of PyTorch operators with bulk-synchronous NCCL all-to-alls and no
compute/communication overlap.

The operator chain follows the mid-2024 Megatron-Core code the FlashMoE evaluation ran
(commit f32b2731; what is modelled was read from the stored Megatron-Core sources, see
docs/moe.md): the top-k router with capacity and the switch auxiliary loss, the dispatcher's
count exchange (dropless only), permute, all-to-all, the regrouping of received chunks by
local expert, GroupedMLP (two grouped GEMMs around the activation), the reverse regrouping,
all-to-all back and unpermute. Each operator is one kernel unless noted; sizes come from the
layer geometry, so the kernel count per layer follows from the mechanism.

The ``te`` variant runs the expert GEMMs through Transformer Engine's GroupedLinear: one
operator issuing one cuBLAS GEMM per expert round-robin over TE's compute streams, so small
experts' GEMMs overlap. For the ``cutlass`` variant the grouped GEMM's implementation is a
strategy choice because it differs by GPU generation:
the ``grouped_gemm`` package Megatron uses loops over experts with one ``cublasGemmEx`` each on
sm_90 (``cublas_loop``) and runs one CUTLASS sm_80 grouped kernel (``mma.sync``) when built for
sm_80 (``cutlass_sm80``); ``cutlass_sm90`` is a single wgmma grouped kernel (newer stacks).
"""

from __future__ import annotations

from collections.abc import Sequence

from gpusim.execution.program import Exchange, ExchangeStep, KernelStep, Step
from gpusim.hardware.rates import GPURates
from gpusim.kernels import kernel_cost
from gpusim.kernels.grouped_gemm import grouped_gemm_cost
from gpusim.kernels.operators import Operator, Sizes
from gpusim.spec.base import Dtype
from gpusim.spec.moe import MegatronStrategy
from gpusim.spec.profile import InstructionPath
from gpusim.spec.workload import GemmOp
from gpusim.workloads.moe.hostdriven import (
    Phase,
    count_exchange_steps,
    elementwise,
    expert_rows,
    renamed,
    router_gemm,
    send_matrix,
)
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch
from gpusim.workloads.moe.operators import (
    ID_BYTES,
    INT32_BYTES,
    MEGATRON_CAPACITY,
    MEGATRON_PADDED_PERMUTE,
    MEGATRON_PERMUTE_EPILOGUE,
    MEGATRON_PERMUTE_PROLOGUE,
    MEGATRON_ROUTER,
    MEGATRON_UNPERMUTE,
    SORT_ONESWEEP,
    SWITCH_LOSS,
    layer_sizes,
)

RADIX_DIGIT_BITS = 8
SORT_PASSES = ID_BYTES * 8 // RADIX_DIGIT_BITS
"""A stable argsort of int64 keys with no known range is a radix sort over all their bits: one
onesweep pass per 8-bit digit, after one histogram kernel of 2^8 int32 counters per pass."""
SORT_HISTOGRAM_B = SORT_PASSES * 2**RADIX_DIGIT_BITS * INT32_BYTES


def _ew(
    name: str, read_B: float, write_B: float, rates: GPURates, phase: Phase, new_op: bool = True
) -> KernelStep:
    return KernelStep(elementwise(name, read_B, write_B, rates), phase, new_op=new_op)


def _op_step(op: Operator, sizes: Sizes, rates: GPURates, phase: Phase) -> KernelStep:
    return KernelStep(op.cost(sizes, rates), phase)


def router_ops(g: LayerGeometry, rates: GPURates, dtype: Dtype) -> list[Step]:
    """TopKRouter with aux-loss balancing: gate GEMM, top-k and softmax of the kept scores, the
    dense masks, capacity selection when a capacity factor is set, and the switch loss."""
    sizes = layer_sizes(g, dtype)
    ops = MEGATRON_ROUTER + (MEGATRON_CAPACITY if g.capacity() is not None else ()) + SWITCH_LOSS
    gate: list[Step] = [KernelStep(router_gemm(g, rates, dtype), "gate")]
    return gate + [_op_step(op, sizes, rates, "gate") for op in ops]


def permute_ops(g: LayerGeometry, rates: GPURates, padded: bool) -> list[Step]:
    """Gather each token copy's row into expert order. Padded: the router already produced the
    per-expert index list, one index_select. Otherwise a stable argsort of the expert ids (a
    multi-kernel radix sort), the row gather and the row index computation."""
    sizes = layer_sizes(g, g.dtype)
    if padded:
        return [_op_step(MEGATRON_PADDED_PERMUTE, sizes, rates, "dispatch")]
    ids_B = g.tokens_per_gpu * g.top_k * ID_BYTES
    sort: list[Step] = [_ew("sort_histogram", ids_B, SORT_HISTOGRAM_B, rates, "dispatch")]
    onesweep = SORT_ONESWEEP.cost(sizes, rates)
    sort += [
        KernelStep(renamed(onesweep, f"sort_onesweep_{p}"), "dispatch", new_op=False)
        for p in range(SORT_PASSES)
    ]
    return [
        _op_step(MEGATRON_PERMUTE_PROLOGUE, sizes, rates, "dispatch"),
        *sort,
        *(_op_step(op, sizes, rates, "dispatch") for op in MEGATRON_PERMUTE_EPILOGUE),
    ]


def regroup_op(
    name: str,
    rows: int,
    g: LayerGeometry,
    rates: GPURates,
    phase: Phase,
    after: tuple[int, ...] = (),
) -> KernelStep:
    """Received chunks (source-major) reordered to expert-major or back: one copy kernel
    (torch.cat of the split chunks, or a transposed contiguous copy when padded)."""
    size_B = rows * g.row_bytes
    return KernelStep(elementwise(name, size_B, size_B, rates), phase, after=after)


def grouped_gemm(
    name: str,
    rows: Sequence[int],
    n: int,
    k: int,
    strategy: MegatronStrategy,
    rates: GPURates,
    first_index: int,
) -> tuple[list[Step], tuple[int, ...]]:
    """One grouped GEMM operator in the strategy's implementation, its steps starting at index
    ``first_index`` of the rank's program, and the steps the next operator on the main stream
    must wait for (the compute streams' GEMMs, for te; none when everything is on one stream)."""
    dtype = strategy.dtype
    te = strategy.variant == "te"
    if te or strategy.grouped_gemm == "cublas_loop":
        # One operator issuing one cuBLAS GEMM per expert: on the calling stream (the
        # grouped_gemm package's loop), or round-robin over TE's compute streams, each waiting
        # for the work already on the calling stream.
        prior = (first_index - 1,) if te and first_index > 0 else ()
        steps: list[Step] = []
        for m in (m for m in rows if m > 0):
            cost = renamed(kernel_cost(GemmOp(m=m, n=n, k=k, dtype=dtype), rates), name)
            stream = 1 + len(steps) % strategy.te_compute_streams if te else 0
            steps.append(KernelStep(cost, "gemm", stream=stream, after=prior, new_op=not steps))
        join = tuple(range(first_index, first_index + len(steps))) if te else ()
        return steps, join
    path = (
        InstructionPath.mma_sync
        if strategy.grouped_gemm == "cutlass_sm80"
        else InstructionPath.wgmma
    )
    cost = grouped_gemm_cost(list(rows), n, k, dtype, path, rates, name)
    return [KernelStep(cost, "gemm")], ()


def unpermute_ops(g: LayerGeometry, rates: GPURates) -> list[Step]:
    """Scatter expert outputs back to token order, weight by the gate and sum the k copies."""
    sizes = layer_sizes(g, g.dtype)
    return [_op_step(op, sizes, rates, "combine") for op in MEGATRON_UNPERMUTE]


def build(
    g: LayerGeometry,
    batch: RoutedBatch,
    strategy: MegatronStrategy,
    rates: Sequence[GPURates],
    nccl_sms: int,
) -> tuple[list[list[Step]], float]:
    """Every rank's program and the bytes the all-to-alls move between GPUs."""
    padded = strategy.pad_to_capacity and g.capacity() is not None
    send = send_matrix(g, batch, padded)
    dispatch = Exchange("dispatch_alltoall", send, "nccl", nccl_sms)
    combine = Exchange("combine_alltoall", send.T.copy(), "nccl", nccl_sms)
    counts = count_exchange_steps(g, nccl_sms)  # one exchange every rank takes part in
    programs: list[list[Step]] = []
    for r in range(g.n_gpus):
        rows = expert_rows(g, batch, r, padded)
        received = sum(rows)
        steps: list[Step] = [*router_ops(g, rates[r], strategy.dtype)]
        if not padded:  # split sizes of a dropless all-to-all need the counts on the host
            steps += counts
        steps += permute_ops(g, rates[r], padded)
        steps.append(ExchangeStep(dispatch, "dispatch"))
        if g.local_experts > 1:
            steps.append(regroup_op("sort_chunks", received, g, rates[r], "dispatch"))
        gemm0, join = grouped_gemm(
            "gemm0", rows, g.intermediate, g.hidden, strategy, rates[r], len(steps)
        )
        steps += gemm0
        act_B = received * g.intermediate * g.element_bytes
        activation = elementwise("activation", act_B, act_B, rates[r])
        steps.append(KernelStep(activation, "gemm", after=join))
        gemm1, join = grouped_gemm(
            "gemm1", rows, g.hidden, g.intermediate, strategy, rates[r], len(steps)
        )
        steps += gemm1
        if g.local_experts > 1:
            steps.append(regroup_op("restore_chunks", received, g, rates[r], "combine", join))
            join = ()
        steps.append(ExchangeStep(combine, "combine", after=join))
        steps += unpermute_ops(g, rates[r])
        programs.append(steps)
    moved = float(send.sum() - send.trace()) * 2
    return programs, moved
