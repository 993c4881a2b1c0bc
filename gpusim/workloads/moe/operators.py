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
