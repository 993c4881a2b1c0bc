"""Encoder-decoder (T5 / mT5) models of the zoo: the parameter count of both stacks by hand, the
decoder-pass share a generation step uses, the fields' validation, and llm_inference's refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gpusim.errors import SpecError
from gpusim.spec.loading import load_scenario, load_transformer
from gpusim.spec.model_zoo import TransformerModel


def tiny_t5(**kw: Any) -> TransformerModel:
    """A T5-shaped model small enough to count by hand; heads x head_dim (6) != hidden (8)."""
    base: dict[str, Any] = {
        "name": "tiny-t5",
        "source": "test fixture",
        "architecture": "encoder_decoder",
        "layers": 2,
        "encoder_layers": 3,
        "hidden": 8,
        "heads": 2,
        "kv_heads": 2,
        "head_dim": 3,
        "ffn": 5,
        "vocab": 11,
        "max_positions": 64,
        "activation": "gelu_new",
        "gated_mlp": True,
        "norm": "rmsnorm",
        "norm_position": "pre",
        "positional": "relative",
        "relative_attention_buckets": 4,
        "relative_attention_max_distance": 8,
        "linear_bias": False,
        "tied_embeddings": False,
    }
    return TransformerModel.model_validate(base | kw)


def test_tiny_t5_parameters_by_hand() -> None:
    """HF's T5: per encoder layer q, k, v (8 -> 6), o (6 -> 8), wi_0, wi_1 (8 -> 5), wo (5 -> 8)
    and two T5LayerNorm weights (RMS, no bias: h each); per decoder layer a second attention and
    a third norm; one shared embedding, an untied lm_head, a final norm and a 4 x 2 bias table
    per stack."""
    m = tiny_t5()
    attn, mlp, norm = 4 * 8 * 6, 3 * 8 * 5, 8
    encoder_layer = attn + mlp + 2 * norm
    decoder_layer = 2 * attn + mlp + 3 * norm
    assert m.decoder_layer_parameters() == decoder_layer == 528
    emb = head = 11 * 8
    tables = 2 * 4 * 2
    total = 3 * encoder_layer + 2 * decoder_layer + emb + head + 2 * norm + tables
    assert m.parameters() == total == 2248
    # a generation step: decoder layers without the cross K/V projections (the encoder output's
    # K/V are cached at the first step), embedding, the decoder's final norm and table, lm_head
    cross_kv = 2 * 8 * 6
    assert m.pass_parameters() == 2 * (decoder_layer - cross_kv) + emb + norm + 8 + head == 1056
    tied = tiny_t5(tied_embeddings=True)
    assert tied.parameters() == total - head
    assert tied.pass_parameters() == 1056 - head


def test_mt5_parameters_closed_form() -> None:
    """mT5-small and mT5-Large from their config.json fields (d_kv 64: 6 x 64 != 512)."""
    small, large = load_transformer("mt5-small"), load_transformer("mt5-large")
    assert small.q_width == 384 and small.head_size == 64
    assert small.parameters() == 300_176_768
    assert large.parameters() == 1_229_581_312
    # a step uses far less than the whole model: no encoder, no cross K/V projections
    assert large.pass_parameters() < 0.75 * large.parameters()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"encoder_layers": None}, "needs encoder_layers"),
        ({"relative_attention_buckets": None}, "needs relative_attention_buckets"),
        ({"relative_attention_buckets": 2}, "must be at least 4"),
        ({"relative_attention_max_distance": 2}, "above half of it"),
        ({"positional": "learned"}, "relative_attention_buckets and"),
        ({"norm": "layernorm"}, "needs norm 'rmsnorm'"),
        ({"kv_heads": 1}, "kv_heads = heads"),
    ],
)
def test_encoder_decoder_fields_are_validated(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        tiny_t5(**change)


def test_decoder_fields_refuse_the_t5_fields() -> None:
    llama = load_transformer("llama-3.2-1b").model_dump()
    with pytest.raises(ValidationError, match="encoder_layers is for architecture"):
        TransformerModel.model_validate(llama | {"encoder_layers": 2})
    with pytest.raises(ValidationError, match="are for positional 'relative'"):
        TransformerModel.model_validate(llama | {"relative_attention_buckets": 32})
    with pytest.raises(ValidationError, match="goes with architecture 'encoder_decoder'"):
        TransformerModel.model_validate(
            llama
            | {
                "positional": "relative",
                "relative_attention_buckets": 32,
                "relative_attention_max_distance": 128,
            }
        )


def test_llm_inference_refuses_an_encoder_decoder_in_one_line(tmp_path: Path) -> None:
    doc = {
        "name": "t5",
        "topology": "h100_pcie_1gpu",
        "workload": {"kind": "llm_inference", "model": "mt5-small", "batch": 1, "prompt_tokens": 8},
    }
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as err:
        load_scenario(path)
    text = str(err.value)
    assert "\n" not in text
    assert "is an encoder-decoder: llm_inference does not model its encoder pass" in text
