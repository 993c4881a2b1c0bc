"""Cost of one fused attention kernel (FlashAttention-2 style, as PyTorch's scaled-dot-product
attention runs it): S = Q K^T, softmax, O = S V per head, with the scores kept on chip.

Prefill: every sequence's ``q_tokens`` queries against its ``kv_tokens`` keys (causal: each query
sees the keys up to its own position). Decode: one query per sequence against the whole KV cache
(``q_tokens`` = 1), which makes the kernel a read of the cache.

- FLOPs: two GEMM-like products of ``2 x head_dim`` FLOPs per (query, key) pair and query head:
  ``4 x batch x heads x head_dim x pairs``, with ``pairs`` = ``q x kv`` (not causal) or
  ``q x (kv - q) + q (q + 1) / 2`` (causal, the queries being the last ``q`` positions).
- HBM bytes (compulsory): Q read and O written (``batch x q x heads x head_dim`` elements each),
  K and V read once (``2 x batch x kv x kv_heads x head_dim``); grouped-query heads share their
  K/V head (SDPA's ``enable_gqa``; nothing is materialised per query head).
- Grid: one CTA per (sequence, query head, block of :data:`BLOCK_Q` queries), one CTA per SM at
  a time; the body runs at the SM's MMA issue rate on the ``mma_sync`` path (FA2 uses mma.sync
  on every architecture; :func:`gpusim.kernels.mainloop.sm_rates`) in waves:
  ``ceil(ctas / SMs) x (flops / ctas) / rate per SM``. ASSUMPTION: the softmax's exponentials
  and rescaling hide under the MMAs, and K/V tiles reach the SM without the mainloop's L2 bound
  (a CTA reuses its Q tile over every K/V tile), so this is a lower bound of the compute term;
  the memory term is the bytes at achievable HBM bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gpusim.arith import ceil_div
from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.mainloop import sm_rates
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.profile import InstructionPath

BLOCK_Q: Final = 128
"""Queries per CTA: FlashAttention-2's forward tile (kBlockM = 128 for head sizes up to 128,
flash_fwd_launch_template.h)."""


@dataclass(frozen=True)
class AttentionShape:
    """One attention call: ``batch`` sequences of ``q_tokens`` queries over ``kv_tokens`` keys."""

    batch: int
    q_tokens: int
    kv_tokens: int
    heads: int
    kv_heads: int
    head_dim: int
    causal: bool
    dtype: Dtype = Dtype.bf16

    def __post_init__(self) -> None:
        for name in ("batch", "q_tokens", "kv_tokens", "heads", "kv_heads", "head_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"AttentionShape: {name} must be >= 1")
        if self.q_tokens > self.kv_tokens:
            raise ValueError("AttentionShape: more queries than keys")
        if self.heads % self.kv_heads:
            raise ValueError("AttentionShape: kv_heads must divide heads")

    @property
    def pairs(self) -> float:
        """(query, key) pairs scored per sequence and head."""
        q, kv = self.q_tokens, self.kv_tokens
        if not self.causal:
            return float(q * kv)
        return q * (kv - q) + q * (q + 1) / 2

    @property
    def flops(self) -> float:
        """Useful FLOPs: ``4 x batch x heads x head_dim x pairs``."""
        return 4.0 * self.batch * self.heads * self.head_dim * self.pairs

    @property
    def q_bytes(self) -> float:
        """Bytes of Q (and of O): one element per query token, query head and dimension."""
        return float(self.batch * self.q_tokens * self.heads * self.head_dim) * storage_bytes(
            self.dtype
        )

    @property
    def kv_bytes(self) -> float:
        """Bytes of K and V read: ``2 x batch x kv_tokens x kv_heads x head_dim`` elements."""
        elements = 2 * self.batch * self.kv_tokens * self.kv_heads * self.head_dim
        return float(elements) * storage_bytes(self.dtype)

    @property
    def hbm_bytes(self) -> float:
        """Compulsory traffic: Q read, O written, K and V read once."""
        return 2 * self.q_bytes + self.kv_bytes

    @property
    def ctas(self) -> int:
        """Grid size: one CTA per sequence, query head and block of queries."""
        return self.batch * self.heads * ceil_div(self.q_tokens, BLOCK_Q)


def attention_cost(shape: AttentionShape, rates: GPURates, name: str = "attention") -> KernelCost:
    """Cost of one fused attention kernel of ``shape`` on the GPU of ``rates`` (see the module
    docstring: FLOPs and bytes are the closed forms; time = floor + max(compute, memory))."""
    ctas = shape.ctas
    sms = min(ctas, rates.sm_count)
    rate = sm_rates(rates, InstructionPath.mma_sync, shape.dtype).mma_FLOPps
    waves = ceil_div(ctas, rates.sm_count)
    compute_s = waves * (shape.flops / ctas) / rate
    flops, hbm = shape.flops, shape.hbm_bytes
    return KernelCost(
        name=name,
        flops=flops,
        hbm_bytes=hbm,
        blocks=ctas,
        sms=sms,
        compute_time_s=compute_s,
        floor_s=rates.kernel_floor_s,
        hbm_achievable_Bps=rates.hbm_achievable_Bps,
        lower_bound_s=max(
            flops / rates.matmul_peak_FLOPps(InstructionPath.mma_sync, shape.dtype),
            hbm / rates.hbm_nameplate_Bps,
        ),
    )


def prefill_attention_cost(
    rates: GPURates,
    batch: int,
    tokens: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    *,
    causal: bool = True,
    dtype: Dtype = Dtype.bf16,
) -> KernelCost:
    """Flash-attention prefill: ``tokens`` queries over the same ``tokens`` keys per sequence."""
    shape = AttentionShape(batch, tokens, tokens, heads, kv_heads, head_dim, causal, dtype)
    return attention_cost(shape, rates, "flash_attn_fwd")


def decode_attention_cost(
    rates: GPURates,
    batch: int,
    context_tokens: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    *,
    dtype: Dtype = Dtype.bf16,
) -> KernelCost:
    """Decode attention: one new query per sequence over ``context_tokens`` cached keys (the new
    token's included): a read of the KV cache."""
    shape = AttentionShape(batch, 1, context_tokens, heads, kv_heads, head_dim, True, dtype)
    return attention_cost(shape, rates, "flash_attn_decode")
