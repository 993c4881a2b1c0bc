"""The decoder pass of an encoder-decoder (mT5) model: it reads the decoder's weights about once,
never gets cheaper with a longer source, keeps the encoder output's K/V cached after the first
step, is one layer repeated, and leaves decoder-only models' passes as they were."""

from __future__ import annotations

import pytest

from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import GPURates
from gpusim.spec.base import Dtype
from gpusim.spec.loading import load_profile, load_topology, load_transformer
from gpusim.spec.refs import data_root
from gpusim.workloads.llm.forward import ForwardShape, forward_ops, one_layer_ops
from gpusim.workloads.llm.ops import Kernel, Op, OpList

ROOT = data_root()
TOPO = load_topology(ROOT / "topologies" / "h100_pcie_1gpu.json")
PROFILE = load_profile(ROOT / "topologies" / "profiles" / "h100_pcie.json")
LARGE = load_transformer("mt5-large")
SMALL = load_transformer("mt5-small")


def rates() -> GPURates:
    return Platform.of(TOPO, PROFILE).gpu_rates(TOPO.gpus()[0].id)


def kernels(
    q: int, past: int, encoder: int, *, model: str = "mt5-large", dtype: Dtype = Dtype.fp16
) -> list[Kernel]:
    ops = OpList(rates(), dtype, {})
    shape = ForwardShape(1, q, past, static_cache=True, encoder_tokens=encoder)
    forward_ops(load_transformer(model), shape, ops)
    return [op for op in ops.ops if isinstance(op, Kernel)]


def test_a_one_token_step_reads_the_decoder_weights_about_once() -> None:
    """The kernels' HBM bytes at one token are the weights the step multiplies by, plus a little
    (activations, the KV caches, the bias arithmetic): the decoder-pass parameters less the
    embedding table, of which the gather reads one row."""
    hbm = sum(k.cost.hbm_bytes for k in kernels(1, 32, 64))
    weights_B = 2 * (LARGE.pass_parameters() - LARGE.vocab * LARGE.hidden)
    assert hbm == pytest.approx(weights_B, rel=0.04)
    assert hbm > weights_B


@pytest.mark.parametrize("model", ["mt5-small", "mt5-large"])
def test_a_longer_source_never_makes_a_pass_cheaper(model: str) -> None:
    last_s, last_B = 0.0, 0.0
    for encoder in (1, 8, 64, 256, 1024):
        ks = kernels(1, 16, encoder, model=model)
        time_s, hbm = sum(k.cost.time_s for k in ks), sum(k.cost.hbm_bytes for k in ks)
        assert time_s >= last_s and hbm > last_B
        last_s, last_B = time_s, hbm


def test_the_encoder_outputs_kv_is_projected_in_the_first_step_only() -> None:
    """Step 1 (empty self-attention cache) projects the encoder output's K and V in every layer,
    over its ``encoder_tokens`` rows; later steps read them from the cache."""
    first = [k.kind for k in kernels(1, 0, 48)]
    later = [k.kind for k in kernels(1, 5, 48)]
    for kind in ("gemm_cross_k", "gemm_cross_v"):
        assert first.count(kind) == LARGE.layers
        assert kind not in later
    for kind in ("gemm_q", "gemm_k", "gemm_v", "gemm_o", "gemm_cross_q", "gemm_cross_o"):
        assert later.count(kind) == LARGE.layers
    cross_k = next(k for k in kernels(1, 0, 48) if k.kind == "gemm_cross_k")
    assert cross_k.cost.flops == 2 * 48 * LARGE.q_width * LARGE.hidden


def test_attention_is_by_hand_with_batched_gemms() -> None:
    """No SDPA: per layer two batched GEMMs for the self-attention and two for the cross one, a
    float32 softmax each; the scores GEMM's FLOPs are 2 x heads x keys x head_dim."""
    ks = kernels(1, 31, 40)
    kinds = [k.kind for k in ks]
    assert not any(k.startswith("flash_attn") for k in kinds)
    assert kinds.count("bmm_scores") == kinds.count("bmm_context") == 2 * LARGE.layers
    assert kinds.count("softmax_fp32") == 2 * LARGE.layers
    scores = [k for k in ks if k.kind == "bmm_scores"]
    self_keys, cross_keys = 32, 40
    assert scores[0].cost.flops == 2 * LARGE.heads * self_keys * LARGE.head_size
    assert scores[1].cost.flops == 2 * LARGE.heads * cross_keys * LARGE.head_size


def test_the_position_bias_is_computed_once_per_pass() -> None:
    """One ``relative_attention_bias`` gather per pass (not per layer), plus the token one."""
    kinds = [k.kind for k in kernels(1, 9, 16)]
    assert kinds.count("embedding_fp16") == 2
    assert kinds.count("log_fp32") == 1


def test_fp16_clamps_each_sublayer_and_bf16_does_not() -> None:
    fp16 = [k.kind for k in kernels(1, 4, 16)]
    bf16 = [k.kind for k in kernels(1, 4, 16, dtype=Dtype.bf16)]
    assert fp16.count("clamp_fp16") == 3 * LARGE.layers
    assert not any(k.startswith("clamp") for k in bf16)


def test_the_lm_head_runs_on_every_decoder_position() -> None:
    """modeling_t5 has no ``logits_to_keep``: a verification of 8 tokens has 8 rows of logits."""
    head = next(k for k in kernels(8, 4, 16) if k.kind == "gemm_lm_head")
    assert head.cost.flops == 2 * 8 * LARGE.vocab * LARGE.hidden


def test_an_encoder_decoder_pass_needs_the_source_length() -> None:
    with pytest.raises(ValueError, match="needs encoder_tokens >= 1"):
        kernels(1, 4, 0)


def _issued(op: Op) -> object:
    """What of an op reaches a program step: all but the tensor ids."""
    if isinstance(op, Kernel):
        return (op.kind, op.cost, op.op_kind, op.call, op.memory_bound)
    return op


@pytest.mark.parametrize("past", [0, 17])
@pytest.mark.parametrize("q", [1, 5])
def test_one_layer_repeated_is_the_whole_decoder_pass(past: int, q: int) -> None:
    for static in (False, True):
        shape = ForwardShape(2, q, past, static_cache=static, encoder_tokens=24)
        whole = OpList(rates(), Dtype.fp16, {})
        forward_ops(SMALL, shape, whole)
        once = OpList(rates(), whole.dtype, whole.cache)
        a, b = one_layer_ops(SMALL, shape, once)
        composed = once.ops[:a] + once.ops[a:b] * SMALL.layers + once.ops[b:]
        assert [_issued(o) for o in composed] == [_issued(o) for o in whole.ops]


@pytest.mark.parametrize("name", ["llama-3.2-1b", "gpt2", "bert-base"])
def test_a_decoder_only_pass_ignores_encoder_tokens(name: str) -> None:
    model = load_transformer(name)
    plain, with_source = OpList(rates(), Dtype.bf16, {}), OpList(rates(), Dtype.bf16, {})
    forward_ops(model, ForwardShape(1, 1, 8), plain)
    forward_ops(model, ForwardShape(1, 1, 8, encoder_tokens=64), with_source)
    assert plain.ops == with_source.ops
