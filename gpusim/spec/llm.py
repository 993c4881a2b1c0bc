"""The ``llm_inference`` workload: host-driven transformer inference (prefill and decode) of a
model of the zoo, as an eager PyTorch / Hugging Face implementation, a C++ engine, CUDA graphs or
fused kernels launch it (``docs/llm_inference.md``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field, model_validator

from gpusim.spec.base import Dtype, Identifier, NonNegativeInt, PositiveInt, Spec
from gpusim.spec.model_zoo import TransformerModel, issues_fused_qkv, linear_shapes
from gpusim.spec.problems import Problem, chosen_gpus, gpu_list_problems, tensor_dtype_problems
from gpusim.spec.sparse import SparsityPattern, check_tileable
from gpusim.spec.topology import Topology

LaunchMode = Literal["eager", "graph", "fused"]
"""How kernels reach the GPU: one launch per kernel (eager), one CUDA graph per forward pass
(graph), or eager with deterministic chains of memory-bound kernels merged (fused)."""
RuntimeKind = Literal["pytorch_eager", "cpp"]
"""Who issues the launches: PyTorch eager (framework cost per op) or a C++ engine (none)."""
InferencePhase = Literal["prefill", "decode", "both"]


class LlmWeights(Spec):
    """How the linear layers' weights are stored and multiplied: dense (cuBLAS GEMMs) or
    unstructured-sparse in Flash-LLM's Tiled-CSL format (its SpMM kernel; docs/sparse.md). The
    embeddings, LM head, norms and biases stay dense."""

    format: Literal["dense", "tiled_csl"] = "dense"
    sparsity: float = Field(default=0.0, ge=0.0, lt=1.0, description="Fraction of zero weights.")
    pattern: SparsityPattern = "uniform"

    @model_validator(mode="after")
    def _consistent(self) -> LlmWeights:
        if self.format == "dense" and self.sparsity:
            raise ValueError("sparsity needs format 'tiled_csl' (dense weights store every zero)")
        return self


class LlmInferenceWorkload(Spec):
    """One inference request batch of a transformer: the prefill of ``prompt_tokens`` per
    sequence, then ``generated_tokens`` decode steps (``phase`` picks which are simulated;
    ``decode`` alone starts from a KV cache already holding the prompt)."""

    kind: Literal["llm_inference"] = "llm_inference"
    model: TransformerModel = Field(
        description="A model of the zoo by name (models/), a path to one, or inline."
    )
    gpus: list[Identifier] | None = Field(
        default=None,
        description="GPU ids of the tensor-parallel ranks; the first tensor_parallel GPUs of "
        "the topology when absent.",
    )
    batch: PositiveInt
    prompt_tokens: PositiveInt
    generated_tokens: NonNegativeInt = 0
    dtype: Dtype = Field(
        default=Dtype.bf16, description="bf16 or fp16 (the flash-attention kernels' types)."
    )
    tensor_parallel: PositiveInt = 1
    launch: LaunchMode = "eager"
    runtime: RuntimeKind = "pytorch_eager"
    phase: InferencePhase = "prefill"
    weights: LlmWeights = Field(default_factory=LlmWeights)
    kv_cache: Literal["dynamic", "static"] = Field(
        default="dynamic",
        description="dynamic: HF DynamicCache, torch.cat of past and new K/V per layer and step; "
        "static: preallocated, updated in place (index_copy_), as CUDA graphs need.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> LlmInferenceWorkload:
        m = self.model
        if self.dtype not in (Dtype.bf16, Dtype.fp16):
            raise ValueError(f"dtype {self.dtype} is not bf16 or fp16 (flash attention's types)")
        if m.architecture == "encoder_decoder":
            raise ValueError(
                f"model '{m.name}' is an encoder-decoder: llm_inference does not model its "
                "encoder pass (speculative_decoding runs its decoder)"
            )
        if self.phase != "prefill" and m.architecture == "encoder":
            raise ValueError(f"model '{m.name}' is an encoder: it has no decode phase")
        if self.phase != "prefill" and self.generated_tokens < 1:
            raise ValueError(f"phase '{self.phase}' needs generated_tokens >= 1")
        if self.prompt_tokens + self.generated_tokens > m.max_positions:
            raise ValueError(
                f"prompt_tokens + generated_tokens = {self.prompt_tokens + self.generated_tokens}"
                f" exceeds the model's max_positions {m.max_positions}"
            )
        if self.launch == "graph" and self.kv_cache != "static":
            raise ValueError(
                "launch 'graph' needs kv_cache 'static' (a graph replays fixed shapes)"
            )
        tp = self.tensor_parallel
        for name, size in (("heads", m.heads), ("kv_heads", m.kv_heads), ("ffn", m.ffn)):
            if size % tp:
                raise ValueError(f"tensor_parallel {tp} does not divide the model's {name} {size}")
        if self.gpus is not None and len(self.gpus) != tp:
            raise ValueError(f"{len(self.gpus)} gpus for tensor_parallel {tp}")
        if self.weights.format == "tiled_csl":
            if self.dtype != Dtype.fp16:
                raise ValueError("weights 'tiled_csl' need dtype fp16 (Flash-LLM's kernel)")
            for rows, cols in linear_shapes(m, tp, fused_qkv=self.fuses_qkv):
                try:
                    check_tileable(rows, cols)
                except ValueError as err:
                    raise ValueError(f"weights 'tiled_csl': a linear of {m.name}: {err}") from None
        return self

    @property
    def fuses_qkv(self) -> bool:
        """Q, K and V computed by one GEMM: the model does, or a C++ engine (FasterTransformer
        concatenates the three weights)."""
        return issues_fused_qkv(self.model, self.runtime == "cpp")

    def ranks(self, topology: Topology) -> list[str]:
        """The GPU ids of the ranks: ``gpus``, or the first ``tensor_parallel`` of the topology."""
        if self.gpus is not None:
            return list(self.gpus)
        return [g.id for g in topology.gpus()][: self.tensor_parallel]

    def check(self, topology: Topology) -> Iterator[Problem]:
        """The GPUs are distinct GPUs of ``topology`` with a tensor-core peak for ``dtype``; the
        topology has ``tensor_parallel`` GPUs when none are named. (A model that does not fit
        in HBM is a run-time error of its point: a batch sweep keeps the points that fit.)"""
        yield from gpu_list_problems(self.gpus, topology, "gpus")
        if self.gpus is None and len(topology.gpus()) < self.tensor_parallel:
            yield (
                ("tensor_parallel",),
                f"topology '{topology.name}' has {len(topology.gpus())} GPUs, fewer than "
                f"tensor_parallel {self.tensor_parallel}",
            )
            return
        gpus = chosen_gpus(self.gpus, topology)[: self.tensor_parallel]
        yield from tensor_dtype_problems(self.dtype, gpus, topology, ("dtype",))
