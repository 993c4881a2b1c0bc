"""Megatron-Core's MoE layer (MoELayer: TopKRouter, a token dispatcher, an expert back end) as
the host runs it: a chain of PyTorch operators (each with its op kind, autograd bookkeeping in
a training-mode forward, and runtime call), host-only steps (views, Python module calls), host
syncs and torch.distributed NCCL collectives, with no compute/communication overlap.

The code modelled is the Megatron-LM fork the reference harness drives (ZSL98/Megatron-LM,
Oct 2024; moe_baselines.md section 1): megatron/core/transformer/moe/moe_layer.py
(MoELayer.forward), router.py (TopKRouter), moe_utils.py (topk_softmax_with_capacity,
permute, unpermute, moe_gather, moe_scatter), token_dispatcher.py (both dispatchers:
:mod:`gpusim.workloads.moe.megatron_dispatch`) and experts.py (GroupedMLP, TEGroupedMLP,
SequentialMLP). Each step names the code it models in a comment. Sizes come from the layer
geometry, so the number of launches and syncs follows from the mechanism.

Expert back ends: ``grouped_gemm`` (GroupedMLP: ``gg.ops.gmm``; the grouped_gemm package runs one
``cublasGemmEx`` per expert on sm_90, ``cublas_loop``, and one CUTLASS sm_80 grouped kernel
when built for sm_80, ``cutlass_sm80``; ``cutlass_sm90`` is a single wgmma grouped kernel of
newer stacks), ``te`` (TEGroupedMLP: Transformer Engine's GroupedLinear, one cuBLAS GEMM per
expert round-robin over its compute streams) and ``sequential`` (SequentialMLP: a Python loop
of expert MLP modules, each linear a framework op).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from gpusim.execution.host_costs import OpKind, RuntimeCall
from gpusim.execution.program import Exchange, Step
from gpusim.hardware.rates import GPURates
from gpusim.kernels import kernel_cost
from gpusim.kernels.grouped_gemm import grouped_gemm_cost
from gpusim.spec.base import storage_bytes
from gpusim.spec.moe import MegatronStrategy
from gpusim.spec.profile import InstructionPath
from gpusim.spec.workload import GemmOp
from gpusim.workloads.moe.hostdriven import (
    Phase,
    expert_rows,
    renamed,
    send_matrix,
)
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch
from gpusim.workloads.moe.megatron_dispatch import (
    AllGatherExchanges,
    allgather_permutation,
    allgather_unpermutation,
    alltoall_counts,
    alltoall_permutation,
    alltoall_unpermutation,
)
from gpusim.workloads.moe.megatron_ops import Program
from gpusim.workloads.moe.operators import ID_BYTES, MASK_BYTES, PROB_BYTES


def router(p: Program, g: LayerGeometry, strategy: MegatronStrategy) -> None:
    """TopKRouter.forward: gating (a linear), then routing (topk_softmax_with_capacity, the
    load-balancing type's extra operators).

    Checked against the code: the fork's router.py (ZSL98/Megatron-LM, blob at commit
    6a633089a467e8534830f4cde450c9504e9f1449: TopKRouter without ``deterministic_mode``, the
    TP>1 logits gather, i.e. Megatron-Core r0.8.0) and Megatron-Core core_v0.8.0's moe_utils.py
    (NVIDIA/Megatron-LM baf94af3c667248865f23df73b9fb8e2395e6fd0: topk_softmax_with_capacity,
    switch_load_balancing_loss_func, save_to_aux_losses_tracker), which the fork does not
    modify."""
    t, e, k = g.tokens_per_gpu, g.experts, g.top_k
    el = storage_bytes(strategy.dtype)
    te_B, tk_B = t * e, t * k
    ph: Phase = "gate"
    p.host(ph, count=2)  # MoELayer.forward -> self.router(hidden_states) (module call, forward)
    # TopKRouter.gating: torch.nn.functional.linear(input, self.weight)
    gate = kernel_cost(GemmOp(m=t, n=e, k=g.hidden, dtype=strategy.dtype), p.rates)
    p.kernel(renamed(gate, "router_gemm"), ph, call=RuntimeCall.cublas)
    # TopKRouter.forward: apply_input_jitter (eps None: returns its input), gating, then
    # logits.view(-1, E); routing(logits): logits.view(-1, E) again, apply_z_loss (coeff None:
    # returns logits), the load-balancing type's method, topk_softmax_with_capacity
    p.host(ph, count=2)  # apply_input_jitter, gating (Python calls around the linear)
    p.view(ph, 2, grad=True)  # logits.view(-1, E) in forward and again in routing
    aux = strategy.load_balancing == "aux_loss"
    p.host(ph, count=4 if aux else 3)  # routing, apply_z_loss, [aux_loss_load_balancing], topk_...
    # moe_utils.topk_softmax_with_capacity: scores, top_indices = torch.topk(logits, k);
    # probs = torch.softmax(scores, dim=-1, dtype=torch.float32).type_as(logits)
    p.op("topk", te_B * el, tk_B * (el + ID_BYTES), ph, OpKind.reduction)
    p.op("softmax_topk", tk_B * el, tk_B * PROB_BYTES, ph, OpKind.reduction)
    p.op("cast_probs", tk_B * PROB_BYTES, tk_B * el, ph)
    cap = g.capacity()
    if cap is None:  # tokens_per_expert = torch.histc(top_indices, bins=E, min=0, max=E)
        p.op("histc", tk_B * ID_BYTES, e * PROB_BYTES, ph, OpKind.reduction, grad=False)
    else:  # the capacity branch: dense masks, top-capacity per expert, the exceed mask
        # get_capacity (Python math); each ``torch.zeros_like(logits).scatter(...)`` is a fill
        # kernel, then the out-of-place scatter: ATen's structured scatter copies ``self``
        # into its output (a T*E copy kernel) before the scatter kernel
        ce = cap * e
        p.host(ph)
        p.op("zeros_gates", 0, te_B * el, ph)
        p.op("scatter_gates_copy", te_B * el, te_B * el, ph)
        p.op("scatter_gates", tk_B * (el + ID_BYTES), tk_B * el, ph, OpKind.indexing, new_op=False)
        p.op("zeros_mask", 0, te_B * el, ph, grad=False)
        p.op("scatter_mask_copy", te_B * el, te_B * el, ph, grad=False)
        p.op(
            "scatter_mask",
            tk_B * ID_BYTES,
            tk_B * el,
            ph,
            OpKind.indexing,
            grad=False,
            new_op=False,
        )
        # drop_policy "probs" (the default): torch.topk(topk_masked_gates, k=capacity, dim=0,
        # sorted=False); capacity_mask = torch.zeros_like(logits).scatter(0, indices, 1)
        p.op("capacity_topk", te_B * el, ce * (el + ID_BYTES), ph, OpKind.reduction)
        p.op("zeros_capacity_mask", 0, te_B * el, ph, grad=False)
        p.op("scatter_capacity_mask_copy", te_B * el, te_B * el, ph, grad=False)
        p.op(
            "scatter_capacity_mask",
            ce * ID_BYTES,
            ce * el,
            ph,
            OpKind.indexing,
            grad=False,
            new_op=False,
        )
        if strategy.pad_to_capacity:  # capacity_probs.T.contiguous(), capacity_indices.T...
            p.view(ph, 2)
            p.op("transpose_probs", ce * el, ce * el, ph)
            p.op("transpose_indices", ce * ID_BYTES, ce * ID_BYTES, ph, grad=False)
        else:
            p.op("and_masks", 2 * te_B * el, te_B * MASK_BYTES, ph, grad=False)
            p.op("not_mask", te_B * MASK_BYTES, te_B * MASK_BYTES, ph, grad=False)
            gather_B = tk_B * ID_BYTES + te_B * MASK_BYTES
            p.op("gather_exceed", gather_B, tk_B * MASK_BYTES, ph, OpKind.indexing, grad=False)
            p.op("not_exceed", tk_B * MASK_BYTES, tk_B * MASK_BYTES, ph, grad=False)
            p.op("mask_probs", tk_B * (el + MASK_BYTES), tk_B * el, ph)
            p.op("clone_indices", tk_B * ID_BYTES, tk_B * ID_BYTES, ph, grad=False)
            p.op("mask_indices", tk_B * (ID_BYTES + MASK_BYTES), tk_B * ID_BYTES, ph, grad=False)
        p.op("tokens_per_expert", te_B * el, e * el, ph, OpKind.reduction, grad=False)
    if aux:  # TopKRouter.aux_loss_load_balancing (training): scores = torch.softmax(logits)
        p.op("softmax_all", te_B * el, te_B * PROB_BYTES, ph, OpKind.reduction)
        # apply_load_balancing_loss -> switch_load_balancing_loss_func: probs.sum(dim=0),
        # torch.sum(aggregated * tokens_per_expert) * (Python scalar). Its all_reduce of
        # tokens_per_expert runs over the tensor-and-context (allgather) or context (alltoall)
        # group, a one-rank group at TP = CP = 1: not modelled (no inter-GPU traffic).
        p.host(ph, count=2)  # apply_load_balancing_loss, switch_load_balancing_loss_func
        p.op("probs_per_expert", te_B * PROB_BYTES, e * PROB_BYTES, ph, OpKind.reduction)
        p.op("loss_mul", e * (PROB_BYTES + ID_BYTES), e * PROB_BYTES, ph)
        p.op("loss_sum", e * PROB_BYTES, PROB_BYTES, ph, OpKind.reduction)
        p.op("loss_scale", PROB_BYTES, PROB_BYTES, ph)
        # save_to_aux_losses_tracker: aux_loss / coeff; values[layer_number - 1] (a view)
        # += loss.detach() (a view, then an in-place add)
        p.host(ph)
        p.op("tracker_div", PROB_BYTES, PROB_BYTES, ph)
        p.view(ph, 2)
        p.op("tracker_add", 2 * PROB_BYTES, PROB_BYTES, ph, grad=False)
        # MoEAuxLossAutoScaler.apply(activation, aux_loss): a custom autograd Function whose
        # forward saves aux_loss and returns its input, launching nothing
        p.host(ph)
        p.view(ph, grad=True)


def _gemm_steps(
    p: Program,
    name: str,
    rows: Sequence[int],
    n: int,
    k: int,
    strategy: MegatronStrategy,
    te: bool,
) -> tuple[int, ...]:
    """One grouped GEMM operator: one cuBLAS GEMM per non-empty expert on the calling stream
    (the grouped_gemm package on sm_90: csrc/grouped_gemm.cu CublasGroupedGemm) or round-robin
    over TE's compute streams (nvte_multi_stream_cublas_gemm), or one grouped kernel. Returns
    the steps the next operator on the main stream must wait for."""
    dtype = strategy.dtype
    if te or strategy.grouped_gemm == "cublas_loop":
        last = p.last_launch
        prior = (last,) if te and last is not None else ()
        first = len(p.steps)
        for m in (m for m in rows if m > 0):
            cost = renamed(kernel_cost(GemmOp(m=m, n=n, k=k, dtype=dtype), p.rates), name)
            i = len(p.steps) - first
            stream = 1 + i % strategy.te_compute_streams if te else 0
            p.kernel(
                cost, "gemm", after=prior, stream=stream, new_op=i == 0, call=RuntimeCall.cublas
            )
        return tuple(range(first, len(p.steps))) if te else ()
    path = (
        InstructionPath.mma_sync
        if strategy.grouped_gemm == "cutlass_sm80"
        else InstructionPath.wgmma
    )
    cost = grouped_gemm_cost(list(rows), n, k, dtype, path, p.rates, name)
    p.kernel(cost, "gemm")
    return ()


def experts(
    p: Program, g: LayerGeometry, rows: Sequence[int], strategy: MegatronStrategy
) -> tuple[int, ...]:
    """The expert back end's forward; returns the steps the combine must wait for."""
    received = sum(rows)
    act_B = received * g.intermediate * g.element_bytes
    ph: Phase = "gemm"
    p.host(ph, count=2)  # MoELayer.forward -> self.experts(...) (module call, forward)
    backend = strategy.expert_backend
    if backend == "grouped_gemm":
        # experts.py GroupedMLP.forward: w1/w2 views, gg.ops.gmm (GroupedGemm.apply), activation
        p.view(ph, 2, grad=True)
        p.host(ph)
        _gemm_steps(p, "gemm0", rows, g.intermediate, g.hidden, strategy, te=False)
        p.op("activation", act_B, act_B, ph)
        p.host(ph)
        return _gemm_steps(p, "gemm1", rows, g.hidden, g.intermediate, strategy, te=False)
    if backend == "te":
        # experts.py TEGroupedMLP.forward: tokens_per_expert.tolist(), then linear_fc1 /
        # activation / linear_fc2 (TE GroupedLinear: module call, _GroupedLinear.apply,
        # torch.split into L views, general_grouped_gemm on the compute streams)
        p.host(ph)
        p.host(ph, count=2)
        p.view(ph, g.local_experts, grad=True)
        join = _gemm_steps(p, "gemm0", rows, g.intermediate, g.hidden, strategy, te=True)
        p.op("activation", act_B, act_B, ph, after=join)
        p.host(ph, count=2)
        p.view(ph, g.local_experts, grad=True)
        return _gemm_steps(p, "gemm1", rows, g.hidden, g.intermediate, strategy, te=True)
    # experts.py SequentialMLP.forward: output_local = torch.zeros_like(...); cumsum and cat of
    # the (CPU) tokens_per_expert; a Python loop over the local expert modules
    row_B = g.row_bytes
    p.op("zeros_output", 0, received * row_B, ph)
    p.host(ph, OpKind.reduction, 3)  # torch.cumsum, torch.zeros, torch.cat on CPU tensors
    for m in rows:
        p.host(ph)  # loop body
        p.host(ph, OpKind.indexing, 2)  # start/end = cumsum_num_tokens[i], [i + 1] (CPU)
        p.view(ph, grad=True)  # permuted_local_hidden_states[start:end]
        p.host(ph, count=3)  # expert(hidden): MLP module call; linear_fc1 module call
        if m > 0:
            fc1 = GemmOp(m=m, n=g.intermediate, k=g.hidden, dtype=strategy.dtype)
            p.kernel(renamed(kernel_cost(fc1, p.rates), "fc1"), ph, call=RuntimeCall.cublas)
            a_B = m * g.intermediate * g.element_bytes
            p.op("activation", a_B, a_B, ph)
        p.host(ph)  # linear_fc2 module call
        if m > 0:
            fc2 = GemmOp(m=m, n=g.hidden, k=g.intermediate, dtype=strategy.dtype)
            p.kernel(renamed(kernel_cost(fc2, p.rates), "fc2"), ph, call=RuntimeCall.cublas)
            p.view(ph, grad=True)  # output_local[start:end] = output
            p.op("copy_output", m * row_B, m * row_B, ph)
    return ()


def build(
    g: LayerGeometry,
    batch: RoutedBatch,
    strategy: MegatronStrategy,
    rates: Sequence[GPURates],
    nccl_sms: int,
) -> tuple[list[list[Step]], float]:
    """Every rank's program (MoELayer.forward) and the bytes its collectives move between
    GPUs. A dropless strategy runs on a dropless routed batch (the workload's per-rank view)."""
    if strategy.capacity == "dropless":  # moe_expert_capacity_factor None
        g = replace(g, capacity_factor=None)
    padded = strategy.pad_to_capacity and g.capacity() is not None
    training = strategy.records_graph
    programs: list[list[Step]] = []
    if strategy.dispatcher == "allgather":
        ag = AllGatherExchanges.of(g, nccl_sms)
        for r in range(g.n_gpus):
            rows = expert_rows(g, batch, r, False)
            p = Program(rates[r], training, nccl_sms)
            router(p, g, strategy)
            allgather_permutation(p, g, ag, sum(rows))
            join = experts(p, g, rows, strategy)
            allgather_unpermutation(p, g, ag, sum(rows), join)
            programs.append(p.steps)
        return programs, ag.moved_B()
    send = send_matrix(g, batch, padded)
    dispatch = Exchange("dispatch_alltoall", send, "nccl", nccl_sms)
    combine = Exchange("combine_alltoall", send.T.copy(), "nccl", nccl_sms)
    counts = Exchange.ring(
        "allgather_counts", "all_gather", g.n_gpus, g.experts * ID_BYTES, nccl_sms
    )
    for r in range(g.n_gpus):
        rows = expert_rows(g, batch, r, padded)
        p = Program(rates[r], training, nccl_sms)
        router(p, g, strategy)
        alltoall_counts(p, g, counts, padded)
        sent = round(float(send[r].sum()) / g.row_bytes)  # rows permute 1 keeps
        alltoall_permutation(p, g, dispatch, sum(rows), sent, padded)
        join = experts(p, g, rows, strategy)
        alltoall_unpermutation(p, g, combine, sum(rows), sent, padded, join)
        programs.append(p.steps)
    moved = float(send.sum() - np.trace(send)) * 2
    if not padded:
        moved += float(counts.send_B.sum())
    return programs, moved


__all__ = ["build", "experts", "router"]
