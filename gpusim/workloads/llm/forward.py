"""One forward pass of a zoo model as Hugging Face transformers runs it in eager PyTorch (SDPA
attention, no padding mask), and the greedy-generation epilogue around it: the operations one
rank's host issues, in order (:mod:`gpusim.workloads.llm.ops`).

Modelled code (transformers 4.4x-4.5x, ``modeling_llama.py``, ``modeling_gpt2.py``,
``modeling_bert.py`` / ``modeling_xlm_roberta.py``, ``modeling_opt.py``, ``generation/utils.py``):

- ``LlamaRMSNorm.forward``: ``to(float32)``, ``pow(2)``, ``mean(-1)``, ``+ eps``, ``rsqrt``,
  ``*``, ``to(input_dtype)``, ``weight *``: eight kernels. ``nn.LayerNorm``: one kernel.
- ``LlamaRotaryEmbedding.forward`` (once per forward): position ids to float, the
  ``inv_freq @ position_ids`` product, ``cat``, ``cos``/``sin``, the attention scaling and the
  casts; ``apply_rotary_pos_emb`` per layer: ``q * cos + rotate_half(q) * sin`` (mul, neg, cat,
  mul, add) for Q and for K.
- KV cache: ``DynamicCache.update`` concatenates the past and new keys and values (one ``cat``
  each per layer when the cache holds tokens); CUDA graphs need a static cache, updated in place
  (``index_copy_``).
- ``scaled_dot_product_attention`` (one fused kernel, :mod:`gpusim.kernels.attention`), then
  ``transpose(1, 2).contiguous()`` (a copy).
- Linears are cuBLAS GEMMs (``addmm`` with a bias); GPT-2's ``c_attn`` is one GEMM for Q, K, V.
- MLP: ``act(gate) * up`` then down (gated, Llama), or fc1, activation, fc2; GPT-2's
  ``NewGELUActivation`` is written out in Python: eight kernels.
- Tensor parallelism (Megatron-style): column-parallel QKV / gate / up / LM head, row-parallel
  output and down projections followed by an all-reduce; norms and embeddings replicated; the
  LM head's logits all-gathered.
- ``generate`` (greedy): the LM head on the last position only (``logits_to_keep=1``), the
  logits cast to float32, argmax, the finished-sequence arithmetic, ``input_ids`` and attention
  mask concatenation, the stopping criteria (max length, EOS) and ``unfinished_sequences.max() ==
  0`` read by the host: one host sync per generated token.
- Every ``nn.Module.__call__`` and generate helper is one Python step (``host.python_step_us``).

Kernel kinds name the CUDA kernel a profiler shows: the op, ``_scalar`` for a tensor-scalar
op (PyTorch launches a different functor, hence a different symbol, than for tensor-tensor),
and the dtypes.

Not modelled: the attention-mask preparation kernels (no padding: SDPA's causal path), dropout
(eval), BERT's pooler and MLM head, OPT's position ids from the mask's ``cumsum`` (an ``arange``
as GPT-2's), logits processors (greedy decoding without temperature or top-p).

Encoder-decoder models (T5 / mT5, ``modeling_t5.py`` / ``modeling_mt5.py`` of transformers
4.4x, :class:`T5DecoderForward`): one *decoder* pass, a generation step over ``q_tokens`` new
decoder tokens whose self-attention cache holds ``past_tokens`` and whose cross-attention reads
the ``encoder_tokens`` positions of the encoder's output. The encoder pass (the source's
encoding, once per request) is not modelled. Per step:

- ``T5Stack`` (decoder): ``embed_tokens`` (one gather, no positions), ``cache_position``
  (``arange``), the decoder attention mask (``torch.ones``: generate passes none) and
  ``_prepare_4d_causal_attention_mask_with_cache_position`` (``full``, ``triu`` for more than one
  query, ``arange > cache_position`` and the in-place multiply, ``clone``, the padding add,
  ``== 0``, ``masked_fill`` and its slice assignment) on ``batch x q x context`` elements,
  ``invert_attention_mask`` of the encoder mask (cast, ``1 - m``, ``* finfo.min``).
- The position biases, computed by the first layer in HF and reused by every layer, issued
  here before that layer (a pass is one layer repeated; only their place moves, ahead of the
  first layer's Q/K/V projections): the self-attention's ``compute_bias`` (``arange``, the
  ``memory - context`` subtraction, ``_relative_position_bucket``'s causal branch: ``zeros_like``,
  ``min``, ``neg``, ``< max_exact``, to float, ``/ max_exact``, ``log``, ``/ log(...)``,
  ``* (buckets - max_exact)``, to long, ``+ max_exact``, ``full_like``, ``min``, ``where``,
  ``0 +``: 15 kernels on ``q x context`` elements), the ``relative_attention_bias`` gather,
  ``permute``/``unsqueeze`` views and ``+ causal_mask``; the cross-attention's bias, zeros of
  ``heads x (past + q) x encoder_tokens`` (``query_length=cache_position[-1] + 1``: the size is
  a device scalar, read by the host) plus the inverted encoder mask.
- Per ``T5Block``: ``cache_position[-1] + 1`` (one kernel); ``T5LayerSelfAttention``:
  ``T5LayerNorm`` (``to(float32)``, ``pow``, ``mean``, ``+ eps``, ``rsqrt``, the input times the
  fp32 ``rsqrt``, the cast back, ``weight *``: eight kernels), ``T5Attention`` by hand (no SDPA):
  Q, K, V linears without bias, views, the cache update (as for decoders), ``matmul(q, k^T)`` (a
  batched GEMM, :meth:`OpList.bmm`; T5 does not scale the scores), ``scores += position_bias``,
  ``softmax(scores.float()).type_as(scores)`` (cast, softmax, cast), dropout (eval: no kernel),
  ``matmul(weights, v)``, ``transpose(1, 2).contiguous()``, the O linear, the residual add;
  ``T5LayerCrossAttention``: norm, the Q linear, the encoder output's K and V from the cache
  (their linears run in the first step only, ``past_tokens`` = 0), the two batched GEMMs over
  ``encoder_tokens`` keys, softmax and casts as above, O, the residual add; ``T5LayerFF``: norm,
  ``T5DenseGatedActDense`` (``wi_0``, ``gelu_new`` written out, ``wi_1``, mul, ``wo``), the
  residual add. In fp16 each sublayer ends with ``T5Block``'s clamp of infinities
  (``isinf`` = ``abs`` and ``== inf``, ``any``, ``where``, ``neg``, ``clamp``: six kernels).
- The decoder's final norm, then ``lm_head`` on every decoder position (``modeling_t5`` has no
  ``logits_to_keep``; a verification pass needs them all) without the tied-embedding
  ``d_model ** -0.5`` rescale (mT5's head is untied; a tied T5 adds one ``mul``).

Not modelled for T5: HF's ``_keep_in_fp32_modules = ["wo"]`` (loaded in fp16, ``wo`` stays fp32:
its GEMM in fp32 and a cast before it; here every linear runs in the run's dtype), the cross
K/V cache's first-step update kernels, and the encoder pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpusim.execution.host_costs import OpKind, RuntimeCall
from gpusim.kernels.attention import AttentionShape
from gpusim.spec.base import Dtype
from gpusim.spec.model_zoo import TransformerModel
from gpusim.workloads.llm.ops import Collective, OpList, TensorUse, ToHost

INT64_B = 8
FP32_B = 4
BOOL_B = 1


@dataclass(frozen=True)
class ForwardShape:
    """One forward pass: ``q_tokens`` new tokens for each of ``batch`` sequences whose KV cache
    already holds ``past_tokens``; ``tp`` ranks; ``static_cache``: updated in place (graphs)."""

    batch: int
    q_tokens: int
    past_tokens: int
    tp: int = 1
    static_cache: bool = False
    fused_qkv: bool = False
    """Q, K and V by one GEMM (:attr:`LlmInferenceWorkload.fuses_qkv`)."""
    encoder_tokens: int = 0
    """Encoder-decoder models only (required there, at least 1): the source positions of the
    encoder's output that the cross-attention reads."""

    @property
    def rows(self) -> int:
        """Token rows the linears see: batch x new tokens."""
        return self.batch * self.q_tokens

    @property
    def context(self) -> int:
        """Keys each sequence's new queries attend to."""
        return self.past_tokens + self.q_tokens


class Forward:
    """Appends one forward pass of ``model`` to ``ops`` (see the module docstring)."""

    def __init__(self, model: TransformerModel, shape: ForwardShape, ops: OpList) -> None:
        self.m, self.s, self.o = model, shape, ops
        self.el = float(ops.dtype_bytes)
        self.dt = ops.dtype.value
        self.act_B = shape.rows * model.hidden * self.el
        """Bytes of one hidden-state activation (rows x hidden)."""

    # -- building blocks -------------------------------------------------------------------

    def norm(self, name: str, x: str, out: str) -> None:
        """An ``nn.LayerNorm`` (one kernel) or ``LlamaRMSNorm`` (eight kernels)."""
        o, rows, h, a = self.o, self.s.rows, self.m.hidden, self.act_B
        o.modules()
        w = (f"{name}.weight", h * self.el)
        if self.m.norm == "layernorm":
            stats = (f"{name}.stats", rows * 2 * FP32_B)
            o.ew(f"layer_norm_{self.dt}", ((x, a), w), ((out, a), stats))
            return
        self.rms_norm(name, x, out, scale_input=False)

    def rms_norm(self, name: str, x: str, out: str, *, scale_input: bool) -> None:
        """The eight kernels of an RMS norm computing its variance in fp32: ``LlamaRMSNorm``
        multiplies the fp32 copy by ``rsqrt`` (``scale_input`` False), ``T5LayerNorm`` the input
        itself (a mixed-dtype ``mul``)."""
        o, rows, h, a = self.o, self.s.rows, self.m.hidden, self.act_B
        w = (f"{name}.weight", h * self.el)
        a32, r32 = rows * h * FP32_B, rows * FP32_B
        p, dt = name, self.dt
        o.ew(f"copy_{dt}_fp32", ((x, a),), ((f"{p}.x32", a32),))
        o.ew("pow_scalar_fp32", ((f"{p}.x32", a32),), ((f"{p}.sq", a32),))
        o.ew("mean_fp32", ((f"{p}.sq", a32),), ((f"{p}.var", r32),), OpKind.reduction)
        o.ew("add_scalar_fp32", ((f"{p}.var", r32),), ((f"{p}.ve", r32),))
        o.ew("rsqrt_fp32", ((f"{p}.ve", r32),), ((f"{p}.rs", r32),))
        if scale_input:
            o.ew(f"mul_{dt}_fp32", ((x, a), (f"{p}.rs", r32)), ((f"{p}.n32", a32),))
        else:
            o.ew("mul_fp32", ((f"{p}.x32", a32), (f"{p}.rs", r32)), ((f"{p}.n32", a32),))
        o.ew(f"copy_fp32_{dt}", ((f"{p}.n32", a32),), ((f"{p}.n", a),))
        o.ew(f"mul_{dt}", (w, (f"{p}.n", a)), ((out, a),))

    def linear(self, name: str, n: int, k: int, x: str, out: str) -> None:
        """An ``nn.Linear`` of ``k`` inputs and ``n`` outputs on every row (its module call)."""
        self.o.modules()
        self.o.linear(f"gemm_{name}", self.s.rows, n, k, x, out)

    def add(self, a: str, b: str, out: str) -> None:
        """A residual add of two hidden states."""
        self.o.ew(f"add_{self.dt}", ((a, self.act_B), (b, self.act_B)), ((out, self.act_B),))

    def all_reduce(self, name: str) -> None:
        """The all-reduce after a row-parallel linear (tensor parallelism only)."""
        if self.s.tp > 1:
            self.o.ops.append(Collective(name, "all_reduce", self.act_B))

    # -- the model -------------------------------------------------------------------------

    def embeddings(self) -> str:
        """Token (and position, token-type) embeddings; returns the hidden state's id."""
        o, m, s, a, dt = self.o, self.m, self.s, self.act_B, self.dt
        ids = ("input_ids", s.rows * INT64_B)
        o.modules(2)  # the model's and the base model's __call__
        o.ew("arange_int64", (), (("cache_position", s.q_tokens * INT64_B),))
        o.views()  # position_ids = cache_position.unsqueeze(0)
        o.modules()
        o.ew(f"embedding_{dt}", (ids, ("wte", a)), (("emb", a),), OpKind.indexing)
        x = "emb"
        if m.positional == "learned":
            o.modules()
            pos = (("cache_position", s.q_tokens * INT64_B), ("wpe", a))
            o.ew(f"embedding_{dt}", pos, (("pos_emb", a),), OpKind.indexing)
            self.add(x, "pos_emb", "emb_pos")
            x = "emb_pos"
        if m.token_types:
            o.views()  # the buffered token_type_ids expanded
            o.modules()
            o.ew(f"embedding_{dt}", (ids, ("wtt", a)), (("tt_emb", a),), OpKind.indexing)
            self.add(x, "tt_emb", "emb_tt")
            x = "emb_tt"
        if m.norm_position == "post":
            self.norm("emb_norm", x, "emb_n")
            x = "emb_n"
        return x

    def rotary_setup(self) -> None:
        """``LlamaRotaryEmbedding.forward``: cos and sin for this forward's positions."""
        o, q, d, dt = self.o, self.s.q_tokens, self.m.head_size, self.dt
        o.modules()
        o.views(2)  # inv_freq[None, :, None].expand, position_ids[:, None, :]
        half, full = q * d // 2 * FP32_B, q * d * FP32_B
        o.ew("copy_int64_fp32", (("cache_position", q * INT64_B),), (("posf", q * FP32_B),))
        inv = ("inv_freq", d // 2 * FP32_B)
        o.ew("bmm_fp32", (inv, ("posf", q * FP32_B)), (("freqs", half),), call=RuntimeCall.cublas)
        o.views()  # transpose(1, 2)
        o.ew("cat_fp32", (("freqs", half),), (("rope_emb", full),))
        for f in ("cos", "sin"):
            o.ew(f"{f}_fp32", (("rope_emb", full),), ((f"{f}32", full),))
            o.ew("mul_scalar_fp32", ((f"{f}32", full),), ((f"{f}s", full),))  # attention_scaling
            o.ew(f"copy_fp32_{dt}", ((f"{f}s", full),), ((f, q * d * self.el),))

    def rotary(self, t: str, width: int) -> str:
        """``apply_rotary_pos_emb`` on one of Q or K: ``t * cos + rotate_half(t) * sin``."""
        o, dt = self.o, self.dt
        b = self.s.rows * width * self.el
        cs = self.s.q_tokens * self.m.head_size * self.el
        o.views(2)  # x[..., :d/2], x[..., d/2:]
        o.ew(f"mul_{dt}", ((t, b), ("cos", cs)), ((f"{t}.c", b),))
        o.ew(f"neg_{dt}", ((t, b / 2),), ((f"{t}.n", b / 2),))
        o.ew(f"cat_{dt}", ((f"{t}.n", b / 2), (t, b / 2)), ((f"{t}.r", b),))
        o.ew(f"mul_{dt}", ((f"{t}.r", b), ("sin", cs)), ((f"{t}.s", b),))
        o.ew(f"add_{dt}", ((f"{t}.c", b), (f"{t}.s", b)), ((f"{t}.e", b),))
        return f"{t}.e"

    def cache_update(self, layer: int, k: str, v: str, kv_width: int) -> str:
        """Store this step's keys and values; returns the id of the K/V the attention reads."""
        o, s, dt = self.o, self.s, self.dt
        new_B = s.rows * kv_width * self.el
        cache = f"{layer}.kv"
        if s.static_cache:
            for t in (k, v):
                o.ew(f"index_copy_{dt}", ((t, new_B),), ((cache, new_B),), OpKind.indexing)
            return cache
        if s.past_tokens == 0:
            return k  # DynamicCache keeps the new tensors: no kernel
        past_B = s.batch * s.past_tokens * kv_width * self.el
        for t in (k, v):
            o.ew(f"cat_{dt}", ((f"{cache}.past", past_B), (t, new_B)), ((cache, past_B + new_B),))
        return cache

    def attention(self, i: int, x: str) -> str:
        """Self-attention of layer ``i`` on the normed input ``x``; returns its output's id."""
        o, m, s, tp = self.o, self.m, self.s, self.s.tp
        h, qw, kvw = m.hidden, m.q_width // tp, m.kv_width // tp
        o.modules()  # self_attn
        p = f"{i}.attn"
        if s.fused_qkv:
            self.linear("qkv", qw + 2 * kvw, h, x, f"{p}.qkv")
            o.views(7)  # split, then view + permute of each of Q, K, V
            q, k, v = f"{p}.qkv", f"{p}.qkv", f"{p}.qkv"
        else:
            q, k, v = f"{p}.q", f"{p}.k", f"{p}.v"
            self.linear("q", qw, h, x, q)
            self.linear("k", kvw, h, x, k)
            self.linear("v", kvw, h, x, v)
            o.views(6)  # view + transpose of each
        if m.positional == "rope":
            o.views(2)  # cos.unsqueeze, sin.unsqueeze
            q, k = self.rotary(q, qw), self.rotary(k, kvw)
        kv = self.cache_update(i, k, v, kvw)
        shape = AttentionShape(
            s.batch,
            s.q_tokens,
            s.context,
            m.heads // tp,
            m.kv_heads // tp,
            m.head_size,
            m.architecture == "decoder",
            o.dtype,
        )
        o.attention(shape, q, kv, f"{p}.sdpa")
        o.views()  # transpose(1, 2)
        b = s.rows * qw * self.el
        o.ew(f"copy_{self.dt}", ((f"{p}.sdpa", b),), ((f"{p}.ctx", b),))  # .contiguous()
        o.views()  # reshape
        self.linear("o", h, qw, f"{p}.ctx", f"{p}.out")
        self.all_reduce(f"{i}.attn_all_reduce")
        return f"{p}.out"

    def activation(self, x: str, out: str, width: int) -> None:
        """The MLP activation on ``x`` (rows x ``width``)."""
        o, dt, m = self.o, self.dt, self.m
        b = self.s.rows * width * self.el
        o.modules()
        if m.activation != "gelu_new":
            o.ew(f"{m.activation}_{dt}", ((x, b),), ((out, b),))
            return
        # NewGELUActivation: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
        steps = (
            "pow_scalar",
            "mul_scalar",
            "add",
            "mul_scalar",
            "tanh",
            "add_scalar",
            "mul_scalar",
        )
        prev = x
        for n, op in enumerate(steps):
            reads = ((prev, b), (x, b)) if n == 2 else ((prev, b),)
            if n == 6:
                reads = ((x, b),)  # 0.5 * x
            o.ew(f"{op}_{dt}", reads, ((f"{x}.g{n}", b),))
            prev = f"{x}.g{n}"
        o.ew(f"mul_{dt}", ((f"{x}.g6", b), (f"{x}.g5", b)), ((out, b),))

    def mlp(self, i: int, x: str) -> str:
        """The MLP of layer ``i`` on the normed input ``x``; returns its output's id."""
        o, m, tp = self.o, self.m, self.s.tp
        h, f = m.hidden, m.ffn // tp
        p = f"{i}.mlp"
        o.modules()
        b = self.s.rows * f * self.el
        if m.gated_mlp:
            self.linear("gate", f, h, x, f"{p}.gate")
            self.linear("up", f, h, x, f"{p}.up")
            self.activation(f"{p}.gate", f"{p}.act", f)
            reads: tuple[TensorUse, ...] = ((f"{p}.act", b), (f"{p}.up", b))
            o.ew(f"mul_{self.dt}", reads, ((f"{p}.hid", b),))
        else:
            self.linear("fc1", f, h, x, f"{p}.fc1")
            self.activation(f"{p}.fc1", f"{p}.hid", f)
        self.linear("down", h, f, f"{p}.hid", f"{p}.out")
        self.all_reduce(f"{i}.mlp_all_reduce")
        return f"{p}.out"

    def layer(self, i: int, x: str) -> str:
        """Decoder or encoder layer ``i`` on the hidden state ``x``; returns its output's id.
        Only tensor ids may depend on ``i``: :func:`one_layer_ops` repeats layer 0 (held by
        ``test_one_layer_repeated_is_the_whole_forward``)."""
        self.o.modules()
        if self.m.norm_position == "pre":
            self.norm(f"{i}.ln1", x, f"{i}.xn")
            a = self.attention(i, f"{i}.xn")
            self.add(x, a, f"{i}.h1")
            self.norm(f"{i}.ln2", f"{i}.h1", f"{i}.hn")
            mo = self.mlp(i, f"{i}.hn")
            self.add(f"{i}.h1", mo, f"{i}.out")
            return f"{i}.out"
        a = self.attention(i, x)
        self.add(x, a, f"{i}.h1r")
        self.norm(f"{i}.ln1", f"{i}.h1r", f"{i}.h1")
        mo = self.mlp(i, f"{i}.h1")
        self.add(f"{i}.h1", mo, f"{i}.outr")
        self.norm(f"{i}.ln2", f"{i}.outr", f"{i}.out")
        return f"{i}.out"

    def build(self) -> str:
        """The whole forward (embeddings, layers, final norm, LM head on the last position);
        returns the id of the logits (or of the encoder's last hidden state)."""
        x = self.begin()
        for i in range(self.m.layers):
            x = self.layer(i, x)
        return self.end(x)

    def begin(self) -> str:
        """What runs before the first layer (embeddings, the rotary setup); returns the hidden
        state's id."""
        x = self.embeddings()
        if self.m.positional == "rope":
            self.rotary_setup()
        return x

    def end(self, x: str) -> str:
        """What runs after the last layer, whose output is ``x`` (final norm, LM head); returns
        the id of the logits (or of the encoder's last hidden state)."""
        if self.m.norm_position == "pre":
            self.norm("final_norm", x, "final")
            x = "final"
        if self.m.architecture == "encoder":
            return x
        return self.lm_head(x)

    def lm_head(self, x: str) -> str:
        """``lm_head`` on each sequence's last position (``logits_to_keep=1``), gathered over
        the tensor-parallel ranks."""
        o, m, s = self.o, self.m, self.s
        vocab = -(-m.vocab // s.tp)
        o.views()  # hidden_states[:, -1:, :]
        o.modules()
        o.gemm("gemm_lm_head", s.batch, vocab, m.hidden, x, "logits")
        if s.tp > 1:
            o.ops.append(
                Collective("lm_head_all_gather", "all_gather", s.batch * m.vocab * self.el)
            )
        return "logits"


def _forward(model: TransformerModel, shape: ForwardShape, ops: OpList) -> Forward:
    """The forward of ``model``: its decoder's for an encoder-decoder model."""
    if model.architecture == "encoder_decoder":
        return T5DecoderForward(model, shape, ops)
    return Forward(model, shape, ops)


def forward_ops(model: TransformerModel, shape: ForwardShape, ops: OpList) -> None:
    """Append one forward pass of ``model`` of ``shape`` to ``ops`` (of an encoder-decoder
    model: one pass of its decoder)."""
    _forward(model, shape, ops).build()


def one_layer_ops(model: TransformerModel, shape: ForwardShape, ops: OpList) -> tuple[int, int]:
    """Append the forward pass of ``model`` with its first layer only; returns the indices in
    ``ops.ops`` where that layer's operations begin and end. Layers differ only in the ids of
    their tensors, so with ``a, b`` returned, ``ops[:a] + ops[a:b] * model.layers + ops[b:]``
    issues what :func:`forward_ops` does but for those ids (what fusion, and nothing else,
    reads)."""
    fwd = _forward(model, shape, ops)
    x = fwd.begin()
    first = len(ops.ops)
    x = fwd.layer(0, x)
    last = len(ops.ops)
    fwd.end(x)
    return first, last


class T5DecoderForward(Forward):
    """One decoder pass of an encoder-decoder (T5 / mT5) model: a generation step (see the
    module docstring). ``shape.encoder_tokens`` (at least 1) is the length of the encoder output
    the cross-attention reads; ``shape.fused_qkv`` does not apply (T5 has separate linears)."""

    def __init__(self, model: TransformerModel, shape: ForwardShape, ops: OpList) -> None:
        if model.architecture != "encoder_decoder":
            raise ValueError(f"model '{model.name}' is not an encoder-decoder")
        if shape.encoder_tokens < 1:
            raise ValueError(
                f"a decoder pass of encoder-decoder model '{model.name}' needs encoder_tokens "
                f">= 1, got {shape.encoder_tokens}"
            )
        super().__init__(model, shape, ops)
        self.heads = model.heads // shape.tp
        self.qw = model.q_width // shape.tp

    # -- building blocks -------------------------------------------------------------------

    def norm(self, name: str, x: str, out: str) -> None:
        """``T5LayerNorm``: eight kernels, the fp32 ``rsqrt`` multiplying the input itself."""
        self.o.modules()
        self.rms_norm(name, x, out, scale_input=True)

    def clamp(self, x: str) -> str:
        """``T5Block``'s clamp of infinities after a sublayer, in fp16 only; returns the id of
        the hidden state after it."""
        if self.o.dtype != Dtype.fp16:
            return x
        o, a, dt = self.o, self.act_B, self.dt
        flags = self.s.rows * self.m.hidden * BOOL_B
        o.ew(f"abs_{dt}", ((x, a),), ((f"{x}.abs", a),))
        o.ew(f"eq_scalar_{dt}", ((f"{x}.abs", a),), ((f"{x}.inf", flags),))
        o.ew("any_bool", ((f"{x}.inf", flags),), ((f"{x}.any", BOOL_B),), OpKind.reduction)
        o.ew("where_fp32", ((f"{x}.any", BOOL_B),), ((f"{x}.cv", FP32_B),))
        o.ew("neg_fp32", ((f"{x}.cv", FP32_B),), ((f"{x}.ncv", FP32_B),))
        reads: tuple[TensorUse, ...] = ((x, a), (f"{x}.cv", FP32_B), (f"{x}.ncv", FP32_B))
        o.ew(f"clamp_{dt}", reads, ((f"{x}.c", a),))
        return f"{x}.c"

    def attend(self, p: str, q: str, kv: str, keys: int, bias: str, o_name: str) -> str:
        """``T5Attention`` after its projections: ``matmul(q, k^T)``, ``+= position_bias``, the
        fp32 softmax and its casts, ``matmul(weights, v)``, the transposed copy and the output
        linear ``o_name``; ``keys`` per sequence. Returns the output's id."""
        o, s, dt, el, d = self.o, self.s, self.dt, self.el, self.m.head_size
        bh = s.batch * self.heads
        sc_B = bh * s.q_tokens * keys * el
        s32_B = sc_B / el * FP32_B
        o.views()  # key_states.transpose(3, 2)
        o.bmm("bmm_scores", bh, s.q_tokens, keys, d, q, kv, f"{p}.scores")
        scores = ((f"{p}.scores", sc_B), (bias, sc_B))
        o.ew(f"add_{dt}", scores, ((f"{p}.biased", sc_B),))  # scores += position_bias
        o.ew(f"copy_{dt}_fp32", ((f"{p}.biased", sc_B),), ((f"{p}.s32", s32_B),))
        o.ew("softmax_fp32", ((f"{p}.s32", s32_B),), ((f"{p}.p32", s32_B),), OpKind.reduction)
        o.ew(f"copy_fp32_{dt}", ((f"{p}.p32", s32_B),), ((f"{p}.probs", sc_B),))
        o.bmm("bmm_context", bh, s.q_tokens, d, keys, f"{p}.probs", kv, f"{p}.ctx4")
        o.views()  # transpose(1, 2)
        b = s.rows * self.qw * el
        o.ew(f"copy_{dt}", ((f"{p}.ctx4", b),), ((f"{p}.ctx", b),))  # .contiguous()
        o.views()  # view(batch, -1, inner_dim)
        self.linear(o_name, self.m.hidden, self.qw, f"{p}.ctx", f"{p}.out")
        self.all_reduce(f"{p}_all_reduce")
        return f"{p}.out"

    def attention(self, i: int, x: str) -> str:
        """The self-attention (``T5Attention`` without SDPA) of layer ``i`` on the normed ``x``."""
        o, h, qw = self.o, self.m.hidden, self.qw
        o.modules()  # SelfAttention
        p = f"{i}.attn"
        q, k, v = f"{p}.q", f"{p}.k", f"{p}.v"
        self.linear("q", qw, h, x, q)
        o.views(2)  # view + transpose
        self.linear("k", qw, h, x, k)
        self.linear("v", qw, h, x, v)
        o.views(4)
        kv = self.cache_update(i, k, v, qw)
        return self.attend(p, q, kv, self.s.context, "self_bias", "o")

    def cross_attention(self, i: int, x: str) -> str:
        """``EncDecAttention`` of layer ``i`` on the normed ``x``: Q of the decoder state; the
        encoder output's K and V projected in the first step only (``past_tokens`` = 0), then
        read from the cache."""
        o, s, h, qw = self.o, self.s, self.m.hidden, self.qw
        o.modules()  # EncDecAttention
        p = f"{i}.cross"
        q, kv = f"{p}.q", f"{i}.cross_kv"
        o.modules()
        o.linear("gemm_cross_q", s.rows, qw, h, x, q)
        o.views(2)
        if s.past_tokens == 0:
            rows = s.batch * s.encoder_tokens
            for t in ("k", "v"):
                o.modules()
                o.linear(f"gemm_cross_{t}", rows, qw, h, "encoder_out", kv)
            o.views(4)
        return self.attend(p, q, kv, s.encoder_tokens, "cross_bias", "cross_o")

    def mlp(self, i: int, x: str) -> str:
        """``T5DenseGatedActDense``: ``act(wi_0(x)) * wi_1(x)``, then ``wo``."""
        o, m, tp = self.o, self.m, self.s.tp
        h, f = m.hidden, m.ffn // tp
        p = f"{i}.mlp"
        o.modules()  # DenseReluDense
        b = self.s.rows * f * self.el
        self.linear("wi_0", f, h, x, f"{p}.wi0")
        self.activation(f"{p}.wi0", f"{p}.act", f)
        self.linear("wi_1", f, h, x, f"{p}.wi1")
        reads: tuple[TensorUse, ...] = ((f"{p}.act", b), (f"{p}.wi1", b))
        o.ew(f"mul_{self.dt}", reads, ((f"{p}.hid", b),))
        o.modules()  # dropout
        self.linear("wo", h, f, f"{p}.hid", f"{p}.out")
        self.all_reduce(f"{i}.mlp_all_reduce")
        return f"{p}.out"

    def layer(self, i: int, x: str) -> str:
        """``T5Block`` ``i``: self-attention, cross-attention and FFN sublayers, each normed
        before and added to the residual after (see :meth:`Forward.layer` on ids)."""
        o = self.o
        o.modules()  # T5Block
        o.views()  # cache_position[-1]
        o.ew("add_scalar_int64", (("cache_position", INT64_B),), ((f"{i}.qlen", INT64_B),))
        sublayers = (
            ("ln1", self.attention),
            ("ln2", self.cross_attention),
            ("ln3", self.mlp),
        )
        for n, (ln, run) in enumerate(sublayers):
            o.modules()  # T5LayerSelfAttention / T5LayerCrossAttention / T5LayerFF
            self.norm(f"{i}.{ln}", x, f"{i}.{ln}.out")
            y = run(i, f"{i}.{ln}.out")
            o.modules()  # dropout
            self.add(x, y, f"{i}.h{n}")
            x = self.clamp(f"{i}.h{n}")
        return x

    # -- the model -------------------------------------------------------------------------

    def begin(self) -> str:
        """``T5Stack`` up to its first block: embedding, masks, both position biases."""
        o, s, a, dt = self.o, self.s, self.act_B, self.dt
        o.modules(3)  # the model's, the decoder stack's and embed_tokens' __call__
        ids = ("input_ids", s.rows * INT64_B)
        o.ew(f"embedding_{dt}", (ids, ("shared", a)), (("emb", a),), OpKind.indexing)
        o.ew("arange_int64", (), (("cache_position", s.q_tokens * INT64_B),))
        self.masks()
        o.modules()  # dropout
        self.self_bias()
        self.cross_bias()
        return "emb"

    def masks(self) -> None:
        """The decoder's 4-D causal mask and the inverted encoder mask."""
        o, s, dt = self.o, self.s, self.dt
        ctx, b, q = s.context, s.batch, s.q_tokens
        o.ew("fill_fp32", (), (("dec_mask", b * ctx * FP32_B),))  # torch.ones(batch, context)
        m_B = q * ctx * self.el
        mb_B = b * m_B
        o.ew(f"fill_{dt}", (), (("causal", m_B),))  # torch.full(..., min)
        if q > 1:
            o.ew(f"triu_{dt}", (("causal", m_B),), (("causal_t", m_B),))
        o.ew("arange_int64", (), (("kpos", ctx * INT64_B),))
        o.views()  # cache_position.reshape(-1, 1)
        gt = (("kpos", ctx * INT64_B), ("cache_position", q * INT64_B))
        o.ew("gt_int64", gt, (("later", q * ctx * BOOL_B),))
        o.ew(f"mul_{dt}", (("causal", m_B), ("later", q * ctx * BOOL_B)), (("causal", m_B),))
        o.views(2)  # [None, None].expand
        o.ew(f"copy_{dt}", (("causal", m_B),), (("causal_b", mb_B),))  # clone
        o.views(2)  # the slices
        pad = (("causal_b", mb_B), ("dec_mask", b * ctx * FP32_B))
        o.ew(f"add_{dt}", pad, (("padding", mb_B),))
        o.ew(f"eq_scalar_{dt}", (("padding", mb_B),), (("pad_eq", b * q * ctx * BOOL_B),))
        o.ew(f"masked_fill_{dt}", (("causal_b", mb_B),), (("filled", mb_B),), OpKind.indexing)
        o.ew(f"copy_{dt}", (("filled", mb_B),), (("causal_b", mb_B),))  # slice assignment
        e = b * s.encoder_tokens
        o.modules()  # invert_attention_mask
        o.views()  # [:, None, None, :]
        o.ew(f"copy_int64_{dt}", (("enc_mask", e * INT64_B),), (("enc_m", e * self.el),))
        o.ew(f"rsub_scalar_{dt}", (("enc_m", e * self.el),), (("enc_r", e * self.el),))
        o.ew(f"mul_scalar_{dt}", (("enc_r", e * self.el),), (("enc_ext", e * self.el),))

    def self_bias(self) -> None:
        """The decoder self-attention's relative position bias (``compute_bias`` and the causal
        mask added), computed once per pass."""
        o, s, dt = self.o, self.s, self.dt
        n = s.q_tokens * s.context
        i8, f4 = n * INT64_B, n * FP32_B
        o.modules()  # the first layer's SelfAttention computes it
        o.views()  # cache_position[:, None]
        o.ew("arange_int64", (), (("mpos", s.context * INT64_B),))
        o.views()  # [None, :]
        rel = (("mpos", s.context * INT64_B), ("cache_position", s.q_tokens * INT64_B))
        o.ew("sub_int64", rel, (("rel", i8),))
        steps: tuple[tuple[str, int, int], ...] = (
            ("fill_int64", 0, i8),  # zeros_like
            ("minimum_int64", 2 * i8, i8),
            ("neg_int64", i8, i8),
            ("lt_scalar_int64", i8, n * BOOL_B),
            ("copy_int64_fp32", i8, f4),  # .float()
            ("div_scalar_fp32", f4, f4),
            ("log_fp32", f4, f4),
            ("div_scalar_fp32", f4, f4),
            ("mul_scalar_fp32", f4, f4),
            ("copy_fp32_int64", f4, i8),  # .to(torch.long)
            ("add_scalar_int64", i8, i8),  # max_exact +
            ("fill_int64", 0, i8),  # full_like
            ("minimum_int64", 2 * i8, i8),
            ("where_int64", 2 * i8 + n * BOOL_B, i8),
            ("add_scalar_int64", i8, i8),  # relative_buckets (0) +=
        )
        prev = "rel"
        for k, (kind, read_B, write_B) in enumerate(steps):
            reads: tuple[TensorUse, ...] = ((prev, read_B),) if read_B else ()
            o.ew(kind, reads, ((f"bucket{k}", write_B),))
            if read_B:
                prev = f"bucket{k}"
        o.modules()  # relative_attention_bias
        table = ("relative_attention_bias", self.m.heads * self.el)
        vals_B = n * self.m.heads * self.el
        o.ew(f"embedding_{dt}", ((prev, i8), table), (("bias_vals", vals_B),), OpKind.indexing)
        o.views(3)  # permute, unsqueeze, [:, :, -seq_length:, :]
        o.views()  # mask[:, :, :, :key_length]
        out_B = s.batch * self.heads * n * self.el
        mask = ("causal_b", s.batch * n * self.el)
        o.ew(f"add_{dt}", (("bias_vals", vals_B / s.tp), mask), (("self_bias", out_B),))

    def cross_bias(self) -> None:
        """The cross-attention's bias: zeros of ``heads x (past + q) x encoder_tokens`` (their
        size a device scalar the host reads), sliced to the new queries, plus the encoder mask."""
        o, s, dt = self.o, self.s, self.dt
        o.modules()  # the first layer's EncDecAttention computes it
        o.ops.append(ToHost(INT64_B))  # int(cache_position[-1] + 1) for torch.zeros' size
        zeros_B = self.heads * s.context * s.encoder_tokens * self.el
        o.ew(f"fill_{dt}", (), (("cross_zeros", zeros_B),))
        o.views(2)  # [:, :, -seq_length:, :], mask[:, :, :, :key_length]
        z_B = self.heads * s.q_tokens * s.encoder_tokens * self.el
        out_B = s.batch * z_B
        enc = ("enc_ext", s.batch * s.encoder_tokens * self.el)
        o.ew(f"add_{dt}", (("cross_zeros", z_B), enc), (("cross_bias", out_B),))

    def end(self, x: str) -> str:
        """The decoder's final norm and dropout, then the LM head on every decoder position."""
        o, m, s = self.o, self.m, self.s
        self.norm("final_norm", x, "final")
        o.modules()  # dropout
        x = "final"
        if m.tied_embeddings:
            b = self.act_B
            o.ew(f"mul_scalar_{self.dt}", ((x, b),), (("final_scaled", b),))
            x = "final_scaled"
        vocab = -(-m.vocab // s.tp)
        o.modules()
        o.gemm("gemm_lm_head", s.rows, vocab, m.hidden, x, "logits")
        if s.tp > 1:
            o.ops.append(Collective("lm_head_all_gather", "all_gather", s.rows * m.vocab * self.el))
        return "logits"


def sampling_ops(model: TransformerModel, batch: int, length: int, ops: OpList) -> None:
    """The greedy ``generate`` step after a forward: the host reads whether every sequence has
    finished (one sync). ``length``: the tokens in ``input_ids`` before this step's token."""
    o, dt = ops, ops.dtype.value
    el = float(ops.dtype_bytes)
    v = model.vocab
    b8, ids_B = batch * INT64_B, batch * length * INT64_B
    # next_token_logits = outputs.logits[:, -1, :].to(copy=True, dtype=torch.float32)
    o.views()
    o.ew(f"copy_{dt}_fp32", (("logits", batch * v * el),), (("l32", batch * v * FP32_B),))
    o.modules()  # logits_processor(input_ids, next_token_logits): empty for greedy decoding
    o.ew("argmax_fp32", (("l32", batch * v * FP32_B),), (("tok", b8),), OpKind.reduction)
    # next_tokens * unfinished_sequences + pad_token_id * (1 - unfinished_sequences)
    o.ew("mul_int64", (("tok", b8), ("unf", b8)), (("t1", b8),))
    o.ew("rsub_scalar_int64", (("unf", b8),), (("t2", b8),))
    o.ew("mul_scalar_int64", (("t2", b8),), (("t3", b8),))
    o.ew("add_int64", (("t1", b8), ("t3", b8)), (("next", b8),))
    # input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
    o.views()
    o.ew("cat_int64", (("ids", ids_B), ("next", b8)), (("ids2", ids_B + b8),))
    # _update_model_kwargs_for_generation: attention mask and cache_position
    o.modules()
    o.ew("fill_int64", (), (("ones", b8),))
    o.ew("cat_int64", (("mask", ids_B), ("ones", b8)), (("mask2", ids_B + b8),))
    o.views()
    o.ew("add_scalar_int64", (("cpos", INT64_B),), (("cpos2", INT64_B),))
    # stopping_criteria(input_ids, scores): MaxLengthCriteria, EosTokenCriteria, their or
    o.modules(3)
    o.ew("fill_bool", (), (("done_len", batch * BOOL_B),))
    o.ew("isin_int64", (("next", b8),), (("done_eos", batch * BOOL_B),), OpKind.indexing)
    o.ew("bitwise_or_bool", (("done_len", batch), ("done_eos", batch)), (("done", batch),))
    # unfinished_sequences = unfinished_sequences & ~is_done
    o.ew("bitwise_not_bool", (("done", batch),), (("ndone", batch),))
    o.ew("bitwise_and_int64", (("unf", b8), ("ndone", batch)), (("unf2", b8),))
    # this_peer_finished = unfinished_sequences.max() == 0, read by the while condition
    o.ew("max_int64", (("unf2", b8),), (("mx", INT64_B),), OpKind.reduction)
    o.ew("eq_scalar_int64", (("mx", INT64_B),), (("fin", BOOL_B),))
    o.modules()  # _has_unfinished_sequences
    o.ops.append(ToHost(BOOL_B))
    o.modules()  # prepare_inputs_for_generation for the next step
