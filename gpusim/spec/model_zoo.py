"""Transformer model descriptions: the model zoo (``models/*.json``), a spec kind of its own.

A description holds what decides the kernels an eager implementation launches and their sizes:
layer count, hidden size, attention heads and key/value heads, FFN width, vocabulary, the
activation, the normalisation and where it sits, the positional encoding, whether the QKV
projection is one fused linear, linear biases and tied embeddings. Every shipped file cites the
model card or configuration file its numbers come from (``source``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gpusim.spec.base import NonNegativeInt, PositiveInt, Sourced

Activation = Literal["silu", "gelu", "gelu_new", "relu"]
"""MLP activations: SiLU (Llama, gated), GELU (``F.gelu``: BERT, XLM-R), GPT-2's tanh GELU
written out in Python (HF ``NewGELUActivation``), ReLU (OPT)."""


class TransformerModel(Sourced):
    """One transformer language model's shape, from its public model card or config."""

    name: str = Field(min_length=1, description="The model's published name.")
    description: str = ""
    architecture: Literal["decoder", "encoder"] = Field(
        description="Causal decoder (generates tokens) or bidirectional encoder (prefill only)."
    )
    layers: PositiveInt
    hidden: PositiveInt
    heads: PositiveInt = Field(description="Query heads.")
    kv_heads: PositiveInt = Field(description="Key/value heads (fewer than heads: GQA).")
    head_dim: PositiveInt | None = Field(
        default=None, description="Per-head size; hidden / heads when absent."
    )
    ffn: PositiveInt = Field(description="MLP intermediate width.")
    vocab: PositiveInt
    max_positions: PositiveInt = Field(description="Longest sequence the positions cover.")
    token_types: NonNegativeInt = Field(
        default=0, description="Token-type (segment) embeddings (BERT: 2); 0: none."
    )
    activation: Activation
    gated_mlp: bool = Field(description="Gate and up projections, act(gate) * up (SwiGLU).")
    norm: Literal["rmsnorm", "layernorm"]
    norm_position: Literal["pre", "post"] = Field(
        description="pre: a norm before attention and MLP and a final one (GPT-2, Llama, "
        "OPT); post: after each residual add and on the embeddings (BERT, XLM-R)."
    )
    positional: Literal["rope", "learned"] = Field(
        description="Rotary embeddings applied in every layer, or learned absolute positions "
        "added to the token embeddings."
    )
    fused_qkv: bool = Field(
        default=False, description="One linear computes Q, K and V (GPT-2's c_attn)."
    )
    linear_bias: bool = Field(description="Linear layers carry a bias (addmm).")
    tied_embeddings: bool = Field(description="The LM head reuses the token embedding matrix.")

    @model_validator(mode="after")
    def _heads_divide(self) -> TransformerModel:
        if self.heads % self.kv_heads:
            raise ValueError(f"kv_heads {self.kv_heads} does not divide heads {self.heads}")
        if self.head_dim is None and self.hidden % self.heads:
            raise ValueError(f"heads {self.heads} does not divide hidden {self.hidden}")
        return self

    @property
    def head_size(self) -> int:
        """Per-head size."""
        return self.head_dim if self.head_dim is not None else self.hidden // self.heads

    @property
    def q_width(self) -> int:
        """Width of the query projection's output (heads x head size)."""
        return self.heads * self.head_size

    @property
    def kv_width(self) -> int:
        """Width of the key (or value) projection's output (KV heads x head size)."""
        return self.kv_heads * self.head_size

    def parameters(self) -> int:
        """Parameter count (embeddings, attention and MLP linears with their biases, norms, LM
        head unless tied)."""
        h, f = self.hidden, self.ffn
        bias = 1 if self.linear_bias else 0
        attn = h * (self.q_width + 2 * self.kv_width) + self.q_width * h
        attn += bias * (self.q_width + 2 * self.kv_width + h)
        mlp_in = 2 if self.gated_mlp else 1
        mlp = mlp_in * h * f + f * h + bias * (mlp_in * f + h)
        norm = h if self.norm == "rmsnorm" else 2 * h
        per_layer = attn + mlp + 2 * norm
        emb = self.vocab * h + self.token_types * h
        if self.positional == "learned":
            emb += self.max_positions * h
        final = norm  # the final norm (pre) or the embedding norm (post)
        head = 0 if self.tied_embeddings or self.architecture == "encoder" else self.vocab * h
        return self.layers * per_layer + emb + final + head


def linear_shapes(
    model: TransformerModel, tensor_parallel: int = 1, *, fused_qkv: bool = False
) -> list[tuple[int, int]]:
    """``(outputs, inputs)`` of each linear weight of one layer on one tensor-parallel rank, in
    the order a forward runs them: Q, K, V (or one QKV), the attention output, then gate and up
    (or fc1) and down. Column-parallel layers split their outputs, row-parallel ones (attention
    output, down) their inputs."""
    tp, h = tensor_parallel, model.hidden
    qw, kvw, f = model.q_width // tp, model.kv_width // tp, model.ffn // tp
    qkv = [(qw + 2 * kvw, h)] if fused_qkv else [(qw, h), (kvw, h), (kvw, h)]
    mlp_in = [(f, h), (f, h)] if model.gated_mlp else [(f, h)]
    return [*qkv, (h, qw), *mlp_in, (h, f)]
