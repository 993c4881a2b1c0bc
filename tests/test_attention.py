"""Prefill and decode attention costs against their closed forms (gpusim/kernels/attention.py)."""

from __future__ import annotations

import math

import pytest
from conftest import make_profile, make_star_topology

from gpusim.hardware.platform import Platform
from gpusim.kernels.attention import (
    AttentionShape,
    attention_cost,
    decode_attention_cost,
    prefill_attention_cost,
)
from gpusim.spec.base import Dtype

RATES = Platform.of(make_star_topology(1), make_profile()).gpu_rates("gpu0")


def test_causal_prefill_flops_count_the_lower_triangle() -> None:
    # 2 sequences of 1024 tokens, 32 heads of 64: each query i sees i + 1 keys
    cost = prefill_attention_cost(RATES, 2, 1024, 32, 8, 64)
    pairs = 1024 * 1025 / 2
    assert cost.flops == 4 * 2 * 32 * 64 * pairs
    full = prefill_attention_cost(RATES, 2, 1024, 32, 8, 64, causal=False)
    assert full.flops == 4 * 2 * 32 * 64 * 1024 * 1024


def test_prefill_bytes_read_q_k_v_once_and_write_o() -> None:
    # Llama-3.1-8B shapes: 32 query heads, 8 KV heads of 128, bf16
    cost = prefill_attention_cost(RATES, 4, 512, 32, 8, 128)
    q = 4 * 512 * 32 * 128 * 2
    kv = 2 * 4 * 512 * 8 * 128 * 2
    assert cost.hbm_bytes == 2 * q + kv


def test_decode_reads_the_kv_cache() -> None:
    # one query per sequence against 4096 cached tokens: K and V of 8 heads of 128, bf16
    cost = decode_attention_cost(RATES, 16, 4096, 32, 8, 128)
    kv = 2 * 16 * 4096 * 8 * 128 * 2
    assert cost.hbm_bytes == kv + 2 * 16 * 32 * 128 * 2
    assert cost.flops == 4 * 16 * 32 * 128 * 4096
    # memory-bound: the body is the bytes at achievable bandwidth
    assert cost.time_s == pytest.approx(cost.floor_s + cost.hbm_bytes / RATES.hbm_achievable_Bps)
    # one more cached token adds its K and V: 2 x 8 x 128 x 2 bytes per sequence
    longer = decode_attention_cost(RATES, 16, 4097, 32, 8, 128)
    assert longer.hbm_bytes - cost.hbm_bytes == 16 * 2 * 8 * 128 * 2


def test_compute_term_is_waves_of_ctas_at_the_sm_rate() -> None:
    shape = AttentionShape(8, 2048, 2048, 32, 32, 128, causal=False, dtype=Dtype.bf16)
    cost = attention_cost(shape, RATES)
    ctas = 8 * 32 * math.ceil(2048 / 128)
    assert cost.blocks == ctas
    rate = 989.4e12 * 0.75 * 0.6 / 132  # fixture: bf16 peak x wgmma 0.75 x mma_sync 0.6 / SMs
    waves = math.ceil(ctas / RATES.sm_count)
    assert cost.compute_time_s == pytest.approx(waves * (shape.flops / ctas) / rate, rel=1e-12)
    assert cost.sms == RATES.sm_count
    assert cost.lower_bound_s <= cost.time_s
    # compute-bound at this size: the body is the compute term
    assert cost.body_time_s == cost.compute_time_s


def test_small_grid_uses_only_its_ctas() -> None:
    cost = decode_attention_cost(RATES, 1, 64, 4, 4, 64)
    assert cost.blocks == cost.sms == 4


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("batch", 0, "batch must be >= 1"),
        ("q_tokens", 9, "more queries than keys"),
        ("kv_heads", 3, "kv_heads must divide heads"),
    ],
)
def test_bad_shapes_are_refused(field: str, value: int, reason: str) -> None:
    kw = {"batch": 1, "q_tokens": 8, "kv_tokens": 8, "heads": 4, "kv_heads": 2, "head_dim": 64}
    kw[field] = value
    with pytest.raises(ValueError, match=reason):
        AttentionShape(
            kw["batch"], kw["q_tokens"], kw["kv_tokens"], kw["heads"], kw["kv_heads"], 64, True
        )
