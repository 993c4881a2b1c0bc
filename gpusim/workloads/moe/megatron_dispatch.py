"""Megatron-Core's two token dispatchers as operator sequences, each step named after the code
it models: megatron/core/transformer/moe/token_dispatcher.py and moe_utils.py of the
Megatron-LM fork the reference harness drives (ZSL98/Megatron-LM, Oct 2024, Megatron-Core
r0.8/r0.9 era; moe_baselines.md sections 1-2).

Checked against the code: the fork's token_dispatcher.py (ZSL98/Megatron-LM, blob at commit
2e0afa918e89971e2b1346fe56d0243aa8e09ff4) and Megatron-Core core_v0.8.0's moe_utils.py
(NVIDIA/Megatron-LM baf94af3c667248865f23df73b9fb8e2395e6fd0: ``permute`` is an argsort and an
``index_select``, ``unpermute`` a ``torch.zeros`` and an ``index_copy_``), which the fork does
not modify; the ATen ops they call as PyTorch implements them (Repeat.h
repeat_interleave_common, SummaryOps.cu _bincount_cuda_template).

Sizes per rank: T tokens, N ranks, E experts, L = E / N local experts, k = top-k, H hidden,
``el`` bytes per element, R rows (token copies) this rank's experts receive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpusim.execution.host_costs import OpKind
from gpusim.execution.program import Exchange
from gpusim.workloads.moe.hostdriven import Phase
from gpusim.workloads.moe.layer import LayerGeometry
from gpusim.workloads.moe.megatron_ops import Program
from gpusim.workloads.moe.operators import ID_BYTES, INT32_BYTES, MASK_BYTES


@dataclass(frozen=True)
class AllGatherExchanges:
    """The allgather dispatcher's collectives, shared by every rank's program."""

    indices: Exchange
    probs: Exchange
    hidden: Exchange
    combine: Exchange

    @classmethod
    def of(cls, g: LayerGeometry, nccl_sms: int) -> AllGatherExchanges:
        """Shards: T*k int64 indices, T*k probs, T*H hidden states; the reduce-scatter's
        input is the whole N*T*H buffer (shard T*H)."""
        n, t, k = g.n_gpus, g.tokens_per_gpu, g.top_k
        ring = Exchange.ring
        return cls(
            ring("allgather_indices", "all_gather", n, t * k * ID_BYTES, nccl_sms),
            ring("allgather_probs", "all_gather", n, t * k * g.element_bytes, nccl_sms),
            ring("allgather_hidden", "all_gather", n, t * g.row_bytes, nccl_sms),
            ring("reducescatter_hidden", "reduce_scatter", n, t * g.row_bytes, nccl_sms),
        )

    def moved_B(self) -> float:
        """Payload bytes over the network (every rank receives N-1 shards of each)."""
        return float(sum(_off_diagonal(ex) for ex in self.all()))

    def all(self) -> tuple[Exchange, ...]:
        """Every exchange."""
        return (self.indices, self.probs, self.hidden, self.combine)


def _off_diagonal(ex: Exchange) -> float:
    return float(ex.send_B.sum() - np.trace(ex.send_B))


def allgather_permutation(p: Program, g: LayerGeometry, ex: AllGatherExchanges, rows: int) -> None:
    """MoEAllGatherTokenDispatcher.token_permutation (expert-parallel branch), R = ``rows``."""
    n, t, k, lx = g.n_gpus, g.tokens_per_gpu, g.top_k, g.local_experts
    el, row_B = g.element_bytes, g.row_bytes
    gk = n * t * k  # global (token, slot) pairs
    ph: Phase = "dispatch"
    p.host(ph)  # MoELayer.forward -> token_dispatcher.token_permutation (Python call)
    p.view(ph)  # hidden_states.view(-1, H)
    # with torch.no_grad(): global_indices = gather_from_sequence_parallel_region_to_moe(max_ind)
    # (tensor_parallel/mappings.py: _GatherFromSequenceParallelRegionToMOE.apply ->
    # torch.distributed._all_gather_base)
    p.host(ph)
    p.collective(ex.indices, ph, grad=False)
    # global_local_mask = (global_indices >= first) & (global_indices <= last)
    p.op("mask_ge", gk * ID_BYTES, gk * MASK_BYTES, ph, grad=False)
    p.op("mask_le", gk * ID_BYTES, gk * MASK_BYTES, ph, grad=False)
    p.op("mask_and", 2 * gk * MASK_BYTES, gk * MASK_BYTES, ph, grad=False)
    # local_indices = global_indices.masked_select(global_local_mask): nonzero + index
    p.nonzero("masked_select_indices", gk * (ID_BYTES + MASK_BYTES), rows * ID_BYTES, ph)
    if k > 1:
        # global_probs = gather_from_sequence_parallel_region_to_moe(max_prob) (records autograd)
        p.host(ph)
        p.collective(ex.probs, ph)
        # self.local_probs = global_probs.masked_select(global_local_mask)
        p.nonzero("masked_select_probs", gk * (el + MASK_BYTES), rows * el, ph, grad=True)
    # global_hidden_states = gather_from_sequence_parallel_region_to_moe(hidden_states,
    # use_global_buffer=True): into Megatron's global memory buffer (no allocation)
    p.host(ph)
    p.collective(ex.hidden, ph)
    # global_local_map = global_local_mask.nonzero()[:, 0]; .view(-1, 1).expand(-1, H)
    p.nonzero("nonzero_mask", gk * MASK_BYTES, 2 * rows * ID_BYTES, ph)
    p.view(ph, 3)
    # local_hidden_states = moe_gather.apply(global_hidden_states, global_local_map)
    # (moe_utils.py moe_gather: torch.gather of R rows)
    p.host(ph)
    p.op("moe_gather_global", rows * (row_B + ID_BYTES), rows * row_B, ph, OpKind.indexing)
    # with torch.no_grad(): self.indices = torch.argsort(local_indices, dim=0)
    p.argsort("argsort_local", rows, ID_BYTES, ph)
    # tokens_per_expert = torch.bincount(local_indices.view(-1), minlength=E)
    p.view(ph)
    p.bincount(rows, g.experts, ph)
    # tokens_per_expert[first:last+1] ; .cpu().to(torch.long)
    p.view(ph)
    p.to_host(lx * ID_BYTES, ph)
    p.view(ph)
    # self.indices.view(-1, 1).expand(-1, H)
    p.view(ph, 2)
    if lx > 1:  # permuted_local_hidden_states = moe_gather.apply(local_hidden_states, indices)
        p.host(ph)
        p.op("moe_gather_local", rows * (row_B + ID_BYTES), rows * row_B, ph, OpKind.indexing)


def allgather_unpermutation(
    p: Program, g: LayerGeometry, ex: AllGatherExchanges, rows: int, after: tuple[int, ...]
) -> None:
    """MoEAllGatherTokenDispatcher.token_unpermutation (expert-parallel branch, no bias)."""
    n, t, k, lx = g.n_gpus, g.tokens_per_gpu, g.top_k, g.local_experts
    el, row_B = g.element_bytes, g.row_bytes
    ph: Phase = "combine"
    p.host(ph)  # token_dispatcher.token_unpermutation (Python call)
    p.view(ph)  # scores = self.local_probs.to(dtype=hidden_states.dtype) (same dtype: no copy)
    if lx > 1:
        # unpermuted_local_hidden = moe_scatter.apply(hidden_states, self.indices):
        # torch.zeros_like, then scatter_add_ of R rows (moe_utils.py moe_scatter.forward)
        p.host(ph)
        p.op("moe_scatter_zeros_local", 0, rows * row_B, ph, after=after)
        after = ()
        p.op("moe_scatter_local", rows * (2 * row_B + ID_BYTES), rows * row_B, ph, OpKind.indexing)
    if k > 1:  # unpermuted_local_hidden * scores.view(-1, 1)
        p.view(ph)
        p.op("scale_by_probs", rows * (row_B + el), rows * row_B, ph, after=after)
        after = ()
    # unpermuted_global_hidden = moe_scatter.apply(unpermuted_local_hidden, global_local_map,
    # [N*T, H]): a zero-filled N*T*H buffer and a scatter_add_ of R rows into it
    p.host(ph)
    p.op("moe_scatter_zeros_global", 0, n * t * row_B, ph, after=after)
    p.op("moe_scatter_global", rows * (2 * row_B + ID_BYTES), rows * row_B, ph, OpKind.indexing)
    # output_total = reduce_scatter_to_sequence_parallel_region_from_moe(unpermuted_global_hidden)
    # (_ReduceScatterToSequenceParallelRegionFromMOE.apply -> _reduce_scatter_base)
    p.host(ph)
    p.collective(ex.combine, ph)
    p.view(ph)  # output_total.view(self.hidden_shape)


def alltoall_counts(p: Program, g: LayerGeometry, counts: Exchange, padded: bool) -> None:
    """MoEAlltoAllTokenDispatcher.preprocess: local histogram, split sizes to the host, the
    all-gather of the per-expert counts; dropless with EP syncs before the all-to-all."""
    n, t, k, lx, e = g.n_gpus, g.tokens_per_gpu, g.top_k, g.local_experts, g.experts
    ph: Phase = "dispatch"
    p.host(ph)  # token_permutation -> self.preprocess(indices)
    p.view(ph)  # indices.view(-1)
    p.bincount(t * k, e, ph)  # num_local_tokens_per_expert = torch.bincount(...)
    if padded:  # drop_and_pad: torch.full of the capacity counts (a CPU tensor)
        p.host(ph, OpKind.elementwise)
        return
    if g.capacity() is not None:
        # token drop without padding: self.num_out_tokens = counts.sum().to("cpu",
        # non_blocking=True); cuda_sync_point "before_permutation_1"
        p.op("num_out_tokens_sum", e * ID_BYTES, ID_BYTES, ph, OpKind.reduction, grad=False)
        p.op("num_out_tokens_d2h", ID_BYTES, ID_BYTES, ph, grad=False)
    # input_splits = counts.reshape(ep, L).sum(axis=1).to("cpu", non_blocking=True).numpy()
    p.view(ph)
    p.op("input_splits_sum", e * ID_BYTES, n * ID_BYTES, ph, OpKind.reduction, grad=False)
    p.op("input_splits_d2h", n * ID_BYTES, n * ID_BYTES, ph, grad=False)
    p.host(ph)
    # num_global_tokens_per_expert = _gather_along_first_dim_expert_parallel(counts)
    p.collective(counts, ph, grad=False)
    p.view(ph, 2)  # .reshape(ep, E); [:, first:last+1]
    # output_splits = ...sum(axis=-1).to("cpu", non_blocking=True).numpy()
    p.op("output_splits_sum", n * lx * ID_BYTES, n * ID_BYTES, ph, OpKind.reduction, grad=False)
    p.op("output_splits_d2h", n * ID_BYTES, n * ID_BYTES, ph, grad=False)
    p.host(ph)
    # num_tokens_per_local_expert = ...sum(axis=0).to("cpu", non_blocking=True)
    p.op("local_counts_sum", n * lx * ID_BYTES, lx * ID_BYTES, ph, OpKind.reduction, grad=False)
    p.op("local_counts_d2h", lx * ID_BYTES, lx * ID_BYTES, ph, grad=False)


def alltoall_permutation(
    p: Program, g: LayerGeometry, dispatch: Exchange, rows: int, sent: int, padded: bool
) -> None:
    """MoEAlltoAllTokenDispatcher.token_permutation after preprocess; ``sent``: the rows this
    rank's permute 1 keeps (T*k dropless, fewer when tokens are dropped)."""
    t, k, lx = g.tokens_per_gpu, g.top_k, g.local_experts
    row_B = g.row_bytes
    ph: Phase = "dispatch"
    dropping = g.capacity() is not None and not padded
    if lx > 1 and not padded:
        # global_input_tokens_local_experts_indices = torch.repeat_interleave(ids, counts.ravel()):
        # the [ep, L] column slice of the gathered counts is not contiguous, so ravel copies
        # it; ATen's repeat_interleave (Repeat.h repeat_interleave_common, no output_size):
        # repeats.cumsum(0), cumsum[-1].item() (a sync), (repeats >= 0).all().item() (two
        # kernels and a second sync), the int64 index kernel, then ids.index_select(0, index)
        # of the int32 ids; cuda_sync_point "no_sync"
        nl = lx * g.n_gpus
        p.op("counts_ravel", nl * ID_BYTES, nl * ID_BYTES, ph, grad=False)
        p.host(ph)  # torch.repeat_interleave
        p.view(ph)  # ids.flatten()
        p.op("repeat_interleave_cumsum", nl * ID_BYTES, nl * ID_BYTES, ph, OpKind.reduction)
        p.view(ph)  # cumsum[-1]
        p.to_host(ID_BYTES, ph, OpKind.reduction)
        p.op("repeat_interleave_ge", nl * ID_BYTES, nl * MASK_BYTES, ph, grad=False)
        p.op("repeat_interleave_all", nl * MASK_BYTES, MASK_BYTES, ph, OpKind.reduction)
        p.to_host(MASK_BYTES, ph, OpKind.reduction)
        p.op("repeat_interleave", nl * ID_BYTES, rows * ID_BYTES, ph, grad=False, new_op=False)
        p.op(
            "repeat_interleave_index_select",
            rows * (ID_BYTES + INT32_BYTES),
            rows * INT32_BYTES,
            ph,
            OpKind.indexing,
            grad=False,
        )
    if lx == 1 and dropping:  # cuda_sync_point "before_permutation_1"
        p.stream_sync(ph)
    # permute(hidden_states, indices, num_out_tokens) (moe_utils.py permute): argsort of the
    # flattened ids, [:num_out_tokens] (a CPU tensor's value: no device sync), // topk,
    # index_select of the kept rows (``sent``; T*k when dropless)
    # (padded: permute_with_padded_tokens, one index_select of the E*capacity rows the
    # [E, capacity] indices name, no sort)
    p.host(ph)  # permute
    p.view(ph)
    if not padded:
        p.argsort("permute1_argsort", t * k, ID_BYTES, ph)
        if dropping:
            p.view(ph)  # sorted_indices[:num_out_tokens]
        p.op("permute1_div", sent * ID_BYTES, sent * ID_BYTES, ph, grad=False)
    p.op("permute1_index_select", sent * (row_B + ID_BYTES), sent * row_B, ph, OpKind.indexing)
    if lx == 1 and not padded and not dropping:  # cuda_sync_point "before_ep_alltoall"
        p.stream_sync(ph)
    # tensor_parallel.all_to_all (mappings.py _AllToAll.apply -> all_to_all_single)
    p.host(ph)
    p.collective(dispatch, ph)
    if lx > 1:
        if padded:  # reshape, transpose, reshape, contiguous
            p.view(ph, 3)
            p.op("sort_chunks_contiguous", rows * row_B, rows * row_B, ph)
        else:  # permute(global_input_tokens, global_input_tokens_local_experts_indices)
            p.view(ph)
            p.argsort("permute2_argsort", rows, INT32_BYTES, ph)
            p.op("permute2_div", rows * ID_BYTES, rows * ID_BYTES, ph, grad=False)
            p.op(
                "permute2_index_select",
                rows * (row_B + ID_BYTES),
                rows * row_B,
                ph,
                OpKind.indexing,
            )


def alltoall_unpermutation(
    p: Program,
    g: LayerGeometry,
    combine: Exchange,
    rows: int,
    sent: int,
    padded: bool,
    after: tuple[int, ...],
) -> None:
    """MoEAlltoAllTokenDispatcher.token_unpermutation; ``sent`` as for the permutation."""
    t, k, lx = g.tokens_per_gpu, g.top_k, g.local_experts
    row_B, el = g.row_bytes, g.element_bytes
    ph: Phase = "combine"
    p.host(ph)  # token_dispatcher.token_unpermutation (Python call)
    if lx > 1:
        if padded:
            p.view(ph, 3)
            p.op("restore_chunks_contiguous", rows * row_B, rows * row_B, ph, after=after)
        else:  # unpermute(hidden, reversed_global_input_permutation_mapping) (moe_utils.py)
            p.op("unpermute2_zeros", 0, rows * row_B, ph, after=after)
            p.op(
                "unpermute2_index_copy",
                rows * (row_B + ID_BYTES),
                rows * row_B,
                ph,
                OpKind.indexing,
            )
            p.view(ph)
            p.op("unpermute2_sum", rows * row_B, rows * row_B, ph, OpKind.reduction)
        after = ()
    p.host(ph)
    p.collective(combine, ph, after=after)
    # unpermute(tokens, reversed_local_input_permutation_mapping, probs=self.probs)
    p.host(ph)  # unpermute
    if padded:
        # unpermute_with_padded_tokens: probs.view(-1).unsqueeze(-1), indices.view(-1, 1)
        # .expand(-1, H), probs * tokens over the E*capacity rows, torch.zeros(restore_shape),
        # torch.scatter_add of those rows into the T token rows
        p.view(ph, 4)
        p.op("unpermute1_scale", sent * (row_B + el), sent * row_B, ph)
        p.op("unpermute1_zeros", 0, t * row_B, ph)
        p.op("unpermute1_scatter_add_copy", t * row_B, t * row_B, ph)
        scatter_B = sent * (2 * row_B + ID_BYTES)
        p.op("unpermute1_scatter_add", scatter_B, sent * row_B, ph, OpKind.indexing, new_op=False)
    else:
        # torch.zeros of T*k rows (probs.numel()), index_copy_ of the ``sent`` kept rows,
        # reshape(-1, topk, H), * probs.unsqueeze(-1), sum(dim=1)
        n_ids = t * k
        p.op("unpermute1_zeros", 0, n_ids * row_B, ph)
        copy_B = sent * (row_B + ID_BYTES)
        p.op("unpermute1_index_copy", copy_B, sent * row_B, ph, OpKind.indexing)
        p.view(ph, 2)  # reshape(-1, topk, H); probs.unsqueeze(-1)
        p.op("unpermute1_scale", n_ids * (row_B + el), n_ids * row_B, ph)
        p.op("unpermute1_sum_topk", n_ids * row_B, t * row_B, ph, OpKind.reduction)
    p.view(ph)  # output.view(self.hidden_shape)
