"""Transformer model descriptions: the model zoo (``models/*.json``), a spec kind of its own.

A description holds what decides the kernels an eager implementation launches and their sizes:
layer count, hidden size, attention heads and key/value heads, FFN width, vocabulary, the
activation, the normalisation and where it sits, the positional encoding, whether the QKV
projection is one fused linear, linear biases and tied embeddings. Every shipped file cites the
model card or configuration file its numbers come from (``source``).

Encoder-decoder models are T5's (mT5): ``layers`` decoder layers (self-attention,
cross-attention over the encoder's output, gated FFN) and ``encoder_layers`` encoder layers,
T5LayerNorm (RMS, weight only) before each sublayer and after each stack, one embedding shared by
both stacks and bucketed relative position biases (``positional: "relative"``: one
``relative_attention_buckets x heads`` table per stack, the first layer of each stack computes
the bias, every layer adds it to its attention scores).
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
    architecture: Literal["decoder", "encoder", "encoder_decoder"] = Field(
        description="Causal decoder (generates tokens), bidirectional encoder (prefill only), or "
        "T5's encoder-decoder (the decoder generates, cross-attending to the encoder's output)."
    )
    layers: PositiveInt = Field(description="Layers (of the decoder, for an encoder-decoder).")
    encoder_layers: PositiveInt | None = Field(
        default=None,
        description="encoder_decoder only (required there): the encoder stack's layers.",
    )
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
    positional: Literal["rope", "learned", "relative"] = Field(
        description="Rotary embeddings applied in every layer, learned absolute positions "
        "added to the token embeddings, or T5's bucketed relative position bias added to the "
        "attention scores (encoder_decoder only)."
    )
    relative_attention_buckets: PositiveInt | None = Field(
        default=None,
        description="positional 'relative' only (required there): buckets of the relative "
        "position bias (T5's relative_attention_num_buckets).",
    )
    relative_attention_max_distance: PositiveInt | None = Field(
        default=None,
        description="positional 'relative' only (required there): the distance from which "
        "relative positions share the last bucket (T5's relative_attention_max_distance).",
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

    @model_validator(mode="after")
    def _encoder_decoder_fields(self) -> TransformerModel:
        seq2seq = self.architecture == "encoder_decoder"
        if seq2seq and self.encoder_layers is None:
            raise ValueError("architecture 'encoder_decoder' needs encoder_layers")
        if not seq2seq and self.encoder_layers is not None:
            raise ValueError(
                f"encoder_layers is for architecture 'encoder_decoder', not '{self.architecture}'"
            )
        relative = self.positional == "relative"
        buckets = (self.relative_attention_buckets, self.relative_attention_max_distance)
        if relative and None in buckets:
            raise ValueError(
                "positional 'relative' needs relative_attention_buckets and "
                "relative_attention_max_distance"
            )
        if not relative and buckets != (None, None):
            raise ValueError(
                "relative_attention_buckets and relative_attention_max_distance are for "
                f"positional 'relative', not '{self.positional}'"
            )
        if relative != seq2seq:
            raise ValueError(
                "positional 'relative' goes with architecture 'encoder_decoder' (T5) and only "
                f"with it: got positional '{self.positional}', architecture "
                f"'{self.architecture}'"
            )
        if seq2seq and (self.norm, self.norm_position) != ("rmsnorm", "pre"):
            raise ValueError("architecture 'encoder_decoder' (T5) needs norm 'rmsnorm', 'pre'")
        if seq2seq and (self.fused_qkv or self.kv_heads != self.heads):
            raise ValueError(
                "architecture 'encoder_decoder' (T5) has separate Q, K, V linears and kv_heads "
                "= heads"
            )
        b, d = self.relative_attention_buckets, self.relative_attention_max_distance
        if b is not None and d is not None and (b < 4 or d <= b // 2):
            # the encoder's bidirectional buckets halve b, and log(d / max_exact) must be > 0
            raise ValueError(
                f"relative_attention_buckets {b} must be at least 4 and "
                f"relative_attention_max_distance {d} above half of it"
            )
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

    def _attention_mlp_norm(self) -> tuple[int, int, int]:
        """Parameters of one attention block (Q, K, V, O with their biases), one MLP and one
        norm (RMSNorm: its weight; LayerNorm: weight and bias)."""
        h, f = self.hidden, self.ffn
        bias = 1 if self.linear_bias else 0
        attn = h * (self.q_width + 2 * self.kv_width) + self.q_width * h
        attn += bias * (self.q_width + 2 * self.kv_width + h)
        mlp_in = 2 if self.gated_mlp else 1
        mlp = mlp_in * h * f + f * h + bias * (mlp_in * f + h)
        norm = h if self.norm == "rmsnorm" else 2 * h
        return attn, mlp, norm

    def _relative_bias(self) -> int:
        """Parameters of one stack's relative position bias table (0 without one)."""
        return (self.relative_attention_buckets or 0) * self.heads

    def _cross_kv(self) -> int:
        """Parameters of one decoder layer's cross-attention K and V projections."""
        bias = 1 if self.linear_bias else 0
        return 2 * (self.hidden + bias) * self.kv_width

    def decoder_layer_parameters(self) -> int:
        """Parameters of one decoder layer of an encoder-decoder model: self-attention,
        cross-attention, MLP and three norms."""
        attn, mlp, norm = self._attention_mlp_norm()
        return 2 * attn + mlp + 3 * norm

    def pass_parameters(self) -> int:
        """Parameters one forward pass uses: every parameter, except for an encoder-decoder
        model, whose generation step runs its decoder only: the decoder layers less their
        cross-attention K and V projections (they project the encoder's output once, in the
        first step, into the cross-attention cache; later steps read the cache), the shared
        embedding, the decoder's final norm and relative bias table, the LM head unless tied."""
        if self.architecture != "encoder_decoder":
            return self.parameters()
        _, _, norm = self._attention_mlp_norm()
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        emb = self.vocab * self.hidden
        return (
            self.layers * (self.decoder_layer_parameters() - self._cross_kv())
            + emb
            + norm
            + self._relative_bias()
            + head
        )

    def parameters(self) -> int:
        """Parameter count (embeddings, attention and MLP linears with their biases, norms, LM
        head unless tied). An encoder-decoder model counts both stacks as HF's T5 does: encoder
        layers (self-attention, MLP, two norms), decoder layers
        (:meth:`decoder_layer_parameters`), one shared embedding, a final norm and a relative
        bias table per stack, the LM head unless tied."""
        h = self.hidden
        attn, mlp, norm = self._attention_mlp_norm()
        per_layer = attn + mlp + 2 * norm
        if self.architecture == "encoder_decoder":
            encoder = (self.encoder_layers or 0) * per_layer + norm + self._relative_bias()
            return encoder + self.pass_parameters() + self.layers * self._cross_kv()
        emb = self.vocab * h + self.token_types * h
        if self.positional == "learned":
            emb += self.max_positions * h
        final = norm  # the final norm (pre) or the embedding norm (post)
        head = 0 if self.tied_embeddings or self.architecture == "encoder" else self.vocab * h
        return self.layers * per_layer + emb + final + head


def issues_fused_qkv(model: TransformerModel, cpp_runtime: bool) -> bool:
    """Whether a forward computes Q, K and V by one GEMM: the model does (GPT-2's ``c_attn``),
    or a C++ engine concatenates the three weights (FasterTransformer)."""
    return model.fused_qkv or cpp_runtime


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
