"""The MoE layer's framework operators as data (router, permute, unpermute, loss), shared by the
strategies that run them; bytes follow from the layer's shape (:func:`layer_sizes`).

Symbols: ``t`` tokens per GPU, ``e`` experts, ``k`` top-k, ``n`` GPUs, ``c`` capacity per
(source, expert) pair (0 when dropless). Element sizes: ``el`` the activation dtype, ``row`` one
token's activation row (H elements), ``id`` int64 indices and counts (as PyTorch keeps them),
``prob`` FP32 router probabilities, ``i32`` int32, ``mask`` torch.bool.
"""

from __future__ import annotations

from typing import Final

from gpusim.kernels.operators import Operator, Sizes, operator
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.workloads.moe.layer import LayerGeometry

ID_BYTES: Final = 8
PROB_BYTES: Final = 4
INT32_BYTES: Final = 4
MASK_BYTES: Final = 1


def layer_sizes(g: LayerGeometry, dtype: Dtype) -> Sizes:
    """Every symbol of the tables for layer ``g`` with activations in ``dtype``."""
    return {
        "t": g.tokens_per_gpu,
        "e": g.experts,
        "k": g.top_k,
        "n": g.n_gpus,
        "c": g.capacity() or 0,
        "el": storage_bytes(dtype),
        "row": g.row_bytes,
        "id": ID_BYTES,
        "prob": PROB_BYTES,
        "i32": INT32_BYTES,
        "mask": MASK_BYTES,
    }


# -- the router every host-driven baseline shares (after its gate GEMM) -----------------------

ROUTER: Final[tuple[Operator, ...]] = (
    operator("softmax", reads="t e prob", writes="t e prob"),
    operator("topk", reads="t e prob", writes="t k prob, t k id"),
    operator("histogram", reads="t k id", writes="e id"),
)
PERMUTE: Final[tuple[Operator, ...]] = (
    operator("argsort", reads="t k id", writes="t k id"),
    operator("permute", reads="t k row", writes="t k row"),
)
UNPERMUTE: Final = operator("unpermute", reads="t k row", writes="t row")
"""Scatter rows back to token order, scale by the gate and sum the k copies: one kernel."""
DEEPEP_LAYOUT: Final = operator("get_dispatch_layout", reads="t k id", writes="e n i32")


# -- Megatron-Core's TopKRouter, token permutation and unpermutation --------------------------

MEGATRON_ROUTER: Final[tuple[Operator, ...]] = (
    operator("topk", reads="t e el", writes="t k el, t k id"),
    operator("softmax_topk", reads="t k el", writes="t k prob"),
    operator("cast_probs", reads="t k prob", writes="t k el"),
    operator("zeros_gates", writes="t e el"),
    operator("scatter_gates", reads="t k el, t k id", writes="t k el"),
    operator("zeros_map", writes="t e i32"),
    operator("scatter_map", reads="t k id", writes="t k i32"),
    operator("map_to_bool", reads="t e i32", writes="t e mask"),
    operator("tokens_per_expert", reads="t e mask", writes="e id"),
)
MEGATRON_CAPACITY: Final[tuple[Operator, ...]] = (
    operator("capacity_topk", reads="t e el", writes="c e el, c e id"),
    operator("zeros_capacity_mask", writes="t e el"),
    operator("scatter_capacity_mask", reads="c e id", writes="c e el"),
    operator("and_masks", reads="t e mask, t e el", writes="t e mask"),
    operator("not_mask", reads="t e mask", writes="t e mask"),
    operator("gather_exceed", reads="t k id, t e mask", writes="t k mask"),
    operator("not_exceed", reads="t k mask", writes="t k mask"),
    operator("mask_probs", reads="t k el, t k mask", writes="t k el"),
    operator("clone_indices", reads="t k id", writes="t k id"),
    operator("mask_indices", reads="t k id, t k mask", writes="t k id"),
)
"""Capacity selection, when a capacity factor is set."""
SWITCH_LOSS: Final[tuple[Operator, ...]] = (
    operator("softmax_all", reads="t e el", writes="t e prob"),
    operator("probs_per_expert", reads="t e prob", writes="e prob"),
    operator("loss_mul", reads="e prob, e id", writes="e prob"),
    operator("loss_sum", reads="e prob", writes="prob"),
    operator("loss_scale", reads="prob", writes="prob"),
    operator("loss_tracker_add", reads="prob, prob", writes="prob"),
)
"""The switch load-balancing loss on the full softmax."""
MEGATRON_PADDED_PERMUTE: Final = operator("index_select", reads="c e row, c e id", writes="c e row")
"""Padded: the router already produced the per-expert index list, one index_select."""
MEGATRON_PERMUTE_PROLOGUE: Final = operator("arange", writes="t k id")
SORT_ONESWEEP: Final = operator("sort_onesweep", reads="t k id, t k id", writes="t k id, t k id")
"""One digit pass of the radix sort: keys and values read and written."""
MEGATRON_PERMUTE_EPILOGUE: Final[tuple[Operator, ...]] = (
    operator("row_index", reads="t k id", writes="t k id"),
    operator("index_select", reads="t k row, t k id", writes="t k row"),
)
MEGATRON_UNPERMUTE: Final[tuple[Operator, ...]] = (
    operator("zeros_unpermuted", writes="t k row"),
    operator("index_copy", reads="t k row, t k id", writes="t k row"),
    operator("scale_by_probs", reads="t k row, t k prob", writes="t k row"),
    operator("sum_topk", reads="t k row", writes="t row"),
)
