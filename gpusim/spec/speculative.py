"""The ``speculative_decoding`` workload: a resident draft model proposes tokens and a target model
verifies them, the target's weights streamed layer by layer from a slower tier when they do not
fit the GPU's memory or a budget. Strategies: LLMCad (token tree, confidence pacer, Eq. 3
fallback, provisional drafting during weight loads) and its baselines
(``docs/speculative_decoding.md``, ``../shared/reference/llmcad.md``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gpusim.spec.base import Dtype, Identifier, PositiveFloat, PositiveInt, Spec
from gpusim.spec.model_zoo import TransformerModel
from gpusim.spec.problems import Problem, gpu_problems, tensor_dtype_problems
from gpusim.spec.topology import CPUDevice, StorageDevice, Topology

Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
"""A probability, 0 and 1 included."""

SpeculativeStrategy = Literal["std", "std_pl", "sp", "specinfer", "llmcad"]
"""``std``: target only, each streamed layer loaded then computed; ``std_pl``: the same with the
next layer's load overlapping the current layer's compute; ``sp``: a draft chain of
``draft_length`` tokens verified in one pass; ``specinfer``: a fixed tree of ``tree_width``
chains of ``tree_depth`` tokens, drafted breadth-first (one batched draft pass per depth);
``llmcad``: LLMCad's adaptive tree (llmcad.md sections 2-5)."""

SpeculativeRuntime = Literal["ideal", "pytorch_eager", "cpp"]
"""How each forward pass is issued: ``ideal``, its kernels back to back with no host cost (a
C++ engine or CUDA graphs, host costs not modelled); ``pytorch_eager``, each kernel a framework
op as Hugging Face transformers issues it, with the host reading every pass's argmax (what
LLMCad runs on the Jetsons, llmcad.md section 1); ``cpp``, the same launches from a C++ runtime
(runtime calls only)."""

BetaShape = tuple[PositiveFloat, PositiveFloat]
"""The (a, b) shape parameters of a Beta distribution."""


class DraftBehaviour(Spec):
    """What the draft model's tokens are worth against the target's, as a seeded stochastic model:
    each draft token matches the target's with probability ``correctness`` (independently, under
    teacher forcing, as llmcad.md section 9 measures it); its confidence is drawn from a Beta
    distribution conditioned on whether it matches; the second candidate's confidence is a
    uniform share of the probability mass the first leaves, and it is the target's token with
    probability ``alternative_correctness`` when the first is not. Only ``correctness`` has a
    published default (LC-4); the distributions are assumptions (docs/speculative_decoding.md)."""

    correctness: Probability = Field(
        default=0.816,
        description="Per-token probability that the draft's top token is the target's. Default "
        "LC-4 (mT5-small vs mT5-Large, EdgeLLM Table I, llmcad.md section 9); LC-5..7 (LLaMA-2 "
        "7B vs 13B) are 0.907, 0.899, 0.871.",
    )
    confidence_correct: BetaShape = Field(
        default=(4.0, 1.0),
        description="Beta(a, b) of the top token's confidence when it is correct (ASSUMPTION: "
        "mean 0.8; the papers give no distribution).",
    )
    confidence_wrong: BetaShape = Field(
        default=(1.5, 2.0),
        description="Beta(a, b) of the top token's confidence when it is wrong (ASSUMPTION: "
        "mean 0.43).",
    )
    alternative_correctness: Probability = Field(
        default=0.5,
        description="Probability that the second candidate is the target's token when the top "
        "one is not (ASSUMPTION); SpecInfer's further candidates follow geometrically.",
    )


class SpeculativeDecodingWorkload(Spec):
    """Greedy generation of ``generated_tokens`` tokens (batch 1) after a prompt of
    ``prompt_tokens`` (for an encoder-decoder model: the source sentence its encoder read, which
    its cross-attention reads; :meth:`prompt_positions`), by one of the strategies on one GPU.
    Target weights that do not fit the memory budget stay in the memory of ``weights_from`` and
    stream to the GPU for every target pass; the draft, the KV caches and the streaming buffers
    stay resident."""

    kind: Literal["speculative_decoding"] = "speculative_decoding"
    strategy: SpeculativeStrategy
    target: TransformerModel = Field(
        description="The verifier: a zoo model (name, path, inline), a decoder or an "
        "encoder-decoder."
    )
    draft: TransformerModel | None = Field(
        default=None,
        description="The draft model (a decoder or an encoder-decoder); required except for "
        "std and std_pl.",
    )
    gpu: Identifier | None = Field(default=None, description="GPU id; the first GPU when absent.")
    weights_from: Identifier | None = Field(
        default=None,
        description="CPU or storage device whose memory holds the target's non-resident "
        "weights; the GPU's host when absent.",
    )
    dtype: Dtype = Field(default=Dtype.bf16, description="bf16 or fp16 weights and activations.")
    runtime: SpeculativeRuntime = Field(
        default="ideal",
        description="How passes are issued: ideal (no host costs), pytorch_eager or cpp (the "
        "llm_inference family's host model, docs/host_runtime.md).",
    )
    prompt_tokens: PositiveInt = 128
    generated_tokens: PositiveInt = 128
    memory_budget_GB: PositiveFloat | None = Field(
        default=None,
        description="Memory the engine may use on the GPU (LLMCad's memory upper bound, "
        "llmcad.md section 5); the GPU's capacity when absent.",
    )
    stream_buffers: PositiveInt = Field(
        default=2,
        description="Layer buffers for streamed target weights (2: double buffering), counted "
        "in the memory used.",
    )
    draft_length: PositiveInt = Field(default=4, description="sp: draft tokens per verification.")
    tree_width: PositiveInt = Field(default=2, description="specinfer: chains in the tree.")
    tree_depth: PositiveInt = Field(default=4, description="specinfer: tokens per chain.")
    tree_tokens: PositiveInt = Field(
        default=16,
        description="llmcad: most draft tokens in the tree before it is verified regardless of "
        "confidence (ASSUMPTION: the papers bound the tree by memory, not by a count).",
    )
    branch_threshold: Probability = Field(
        default=0.3,
        description="llmcad: a second candidate above this confidence opens a branch (LC "
        "section 3.1's example, llmcad.md section 2).",
    )
    alpha_initial: Probability = Field(
        default=0.01,
        description="llmcad: initial fallback threshold on the best branch's cumulative "
        "confidence (default 0.01, llmcad.md section 4); 0 never falls back early.",
    )
    provisional: bool = Field(
        default=True,
        description="llmcad: the draft keeps generating while verification loads weights "
        "(llmcad.md section 5).",
    )
    behaviour: DraftBehaviour = Field(default_factory=DraftBehaviour)

    @model_validator(mode="after")
    def _consistent(self) -> SpeculativeDecodingWorkload:
        if self.dtype not in (Dtype.bf16, Dtype.fp16):
            raise ValueError(f"dtype {self.dtype} is not bf16 or fp16")
        uses_draft = self.strategy not in ("std", "std_pl")
        if uses_draft and self.draft is None:
            raise ValueError(f"strategy '{self.strategy}' needs a draft model")
        for role, m in (("target", self.target), ("draft", self.draft)):
            if m is None:
                continue
            if m.architecture == "encoder":
                raise ValueError(f"{role} model '{m.name}' is an encoder: it cannot generate")
            if m.architecture == "encoder_decoder":
                if self.prompt_tokens > m.max_positions:
                    raise ValueError(
                        f"prompt_tokens {self.prompt_tokens} (the source its encoder reads) "
                        f"exceeds the {role} model's max_positions {m.max_positions}"
                    )
                longest = 1 + self.generated_tokens + self.tree_size
                if longest > m.max_positions:
                    raise ValueError(
                        f"1 (decoder start) + generated_tokens + tree size = {longest} exceeds "
                        f"the {role} model's max_positions {m.max_positions}"
                    )
                continue
            longest = self.prompt_tokens + self.generated_tokens + self.tree_size
            if longest > m.max_positions:
                raise ValueError(
                    f"prompt_tokens + generated_tokens + tree size = {longest} exceeds the "
                    f"{role} model's max_positions {m.max_positions}"
                )
        return self

    def prompt_positions(self, model: TransformerModel) -> tuple[int, int]:
        """Where the prompt sits for ``model``: (tokens in its self-attention KV cache when
        generation starts, encoder positions its cross-attention reads). A decoder: the prompt,
        0. An encoder-decoder (T5): the prompt is the source its encoder read (once, before
        generation; not modelled), so 1 (the ``decoder_start_token`` its decoder starts from)
        and the prompt."""
        if model.architecture == "encoder_decoder":
            return 1, self.prompt_tokens
        return self.prompt_tokens, 0

    @property
    def tree_size(self) -> int:
        """Most draft tokens one verification checks under this strategy (0 without a draft)."""
        sizes = {
            "std": 0,
            "std_pl": 0,
            "sp": self.draft_length,
            "specinfer": self.tree_width * self.tree_depth,
            "llmcad": self.tree_tokens,
        }
        return sizes[self.strategy]

    def gpu_id(self, topology: Topology) -> str:
        """The GPU it runs on: ``gpu``, or the topology's first."""
        return self.gpu if self.gpu is not None else topology.gpus()[0].id

    def source_id(self, topology: Topology) -> str:
        """The CPU or storage device holding the streamed weights: ``weights_from``, or the GPU's
        host."""
        if self.weights_from is not None:
            return self.weights_from
        gpu = self.gpu_id(topology)
        return next(g.host for g in topology.gpus() if g.id == gpu)

    def check(self, topology: Topology) -> Iterator[Problem]:
        """The GPU is one of ``topology`` (which has one when none is named), with a tensor-core
        peak for ``dtype`` and at least the memory budget; ``weights_from`` is a CPU or storage
        device of it."""
        if self.gpu is not None:
            problems = list(gpu_problems(self.gpu, topology, ("gpu",)))
            yield from problems
            if problems:
                return
        elif not topology.gpus():
            yield ("gpu",), f"topology '{topology.name}' has no GPU"
            return
        gpu_id = self.gpu_id(topology)
        yield from tensor_dtype_problems(self.dtype, [gpu_id], topology, ("dtype",))
        if self.weights_from is not None:
            tiers = {d.id for d in topology.devices if isinstance(d, CPUDevice | StorageDevice)}
            if self.weights_from not in tiers:
                yield (
                    ("weights_from",),
                    f"'{self.weights_from}' is not a CPU or storage device of topology "
                    f"'{topology.name}'",
                )
        capacity = next(g.model.hbm_capacity_GB for g in topology.gpus() if g.id == gpu_id)
        if self.memory_budget_GB is not None and self.memory_budget_GB > capacity:
            yield (
                ("memory_budget_GB",),
                f"budget {self.memory_budget_GB:g} GB exceeds GPU '{gpu_id}''s {capacity:g} GB",
            )


__all__ = [
    "BetaShape",
    "DraftBehaviour",
    "Probability",
    "SpeculativeDecodingWorkload",
    "SpeculativeRuntime",
    "SpeculativeStrategy",
]
