"""MoE layer specs: routing (distributions, capacity, ALF-LB) and the execution strategies
compared (FlashMoE's persistent kernel and the host-driven baselines)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from gpusim.spec.base import (
    Dtype,
    Fraction,
    Identifier,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Spec,
)
from gpusim.spec.profile import InstructionPath
from gpusim.spec.resources import KernelResources
from gpusim.units import KiB


class RoutingSpec(Spec):
    """How tokens pick experts.

    Affinity of token t for expert e: ``sigmoid(popularity_logit[e] + noise_scale * z[t, e])``
    with z standard normal. Popularity: ``uniform`` (all equal), ``zipf`` (rank r gets weight
    r^-zipf_exponent), ``dirichlet`` (weights drawn from Dir(concentration)), ``drift`` (uniform
    start, logits doing a random walk of ``drift_per_step`` per step), or ``trace`` (per-step
    expert counts read from ``trace_file``). Selection is top-k over affinity plus bias.
    """

    distribution: Literal["uniform", "zipf", "dirichlet", "drift", "trace"] = "uniform"
    zipf_exponent: NonNegativeFloat = 1.0
    dirichlet_concentration: PositiveFloat = 1.0
    drift_per_step: NonNegativeFloat = 0.05
    noise_scale: PositiveFloat = 1.0
    trace_file: str | None = Field(default=None, description="JSON: list of steps, each E counts.")
    balancing: Literal["none", "alf_lb", "aux_loss"] = "none"
    alf_update: Literal["sign", "proportional", "multiplicative"] = "sign"
    alf_update_rate: PositiveFloat = Field(default=1e-3, description="u of ALF-LB.")
    aux_loss_residual_skew: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="aux_loss: the share of the popularity skew (in logit space) the auxiliary "
        "loss leaves in place. An effective-imbalance knob, not a training simulation.",
    )
    warmup_steps: NonNegativeInt = Field(
        default=0, description="Router steps run (bias updates included) before the measured one."
    )

    @model_validator(mode="after")
    def _trace_needs_file(self) -> RoutingSpec:
        if self.distribution == "trace" and not self.trace_file:
            raise ValueError("distribution 'trace' needs trace_file")
        return self


class FlashMoEStrategy(Spec):
    """One persistent kernel per forward: gate, dispatch by SM stores, tile task DAG, combine."""

    name: Literal["flashmoe"] = "flashmoe"
    blocks_per_sm: PositiveInt = 2
    threads_per_block: PositiveInt = 128
    registers_per_thread: PositiveInt = 255
    shared_mem_per_block_KiB: PositiveFloat = 48.0
    tile_m: PositiveInt = 128
    tile_n: PositiveInt = 64
    tile_k: PositiveInt = 8
    path: InstructionPath = InstructionPath.mma_sync
    dtype: Dtype = Dtype.tf32
    task_batch: PositiveInt = Field(
        default=1, description="Tasks simulated as one event (1 = every task is an event)."
    )
    block_resources: KernelResources | None = Field(
        default=None,
        description="The persistent kernel's block resources, measured: inline, or in a file a "
        "reference {report, kernel, arch, program, threads_per_block, dynamic_shared_mem_bytes} "
        "to an entry of a ptxas resource report (`gpusim calibrate build`), read when the "
        "scenario loads. When set, it replaces threads_per_block, registers_per_thread and "
        "shared_mem_per_block_KiB.",
    )

    def kernel_resources(self) -> KernelResources:
        """The block resources the occupancy calculation takes: ``block_resources`` when set,
        else the declared threads, registers and shared memory."""
        if self.block_resources is not None:
            return self.block_resources
        return KernelResources(
            threads_per_block=self.threads_per_block,
            registers_per_thread=self.registers_per_thread,
            shared_mem_per_block_bytes=round(self.shared_mem_per_block_KiB * KiB),
        )


class MegatronStrategy(Spec):
    """Megatron-LM MoE layer: a host-driven kernel chain with bulk-synchronous NCCL all-to-alls."""

    name: Literal["megatron"] = "megatron"
    variant: Literal["cutlass", "te"] = Field(
        default="cutlass",
        description="cutlass: the grouped_gemm package's GEMM (see grouped_gemm); te: "
        "Transformer Engine's GroupedLinear, one GEMM operator per expert.",
    )
    grouped_gemm: Literal["cublas_loop", "cutlass_sm80", "cutlass_sm90"] = Field(
        default="cublas_loop",
        description="How the cutlass variant's grouped GEMM runs. cublas_loop: one operator "
        "calling cublasGemmEx per expert (what the grouped_gemm package does on sm_90); "
        "cutlass_sm80: one CUTLASS sm_80 grouped kernel on the mma.sync path (the package built "
        "for sm_80); cutlass_sm90: one wgmma grouped kernel.",
    )
    te_compute_streams: PositiveInt = Field(
        default=4,
        description="te: the compute streams Transformer Engine's multi-stream cuBLAS path "
        "spreads the per-expert GEMMs over, round-robin (TE's default is 4).",
    )
    pad_to_capacity: bool = Field(
        default=True,
        description="With a capacity factor, send every expert's full capacity (Megatron's "
        "moe_pad_expert_input_to_capacity) instead of exchanging counts first.",
    )
    dtype: Dtype = Dtype.fp16


class FasterMoEStrategy(Spec):
    """FasterMoE: all-to-all and expert work split into chunks pipelined across two streams."""

    name: Literal["fastermoe"] = "fastermoe"
    chunks: PositiveInt = 4
    dtype: Dtype = Dtype.fp16


class CometStrategy(Spec):
    """COMET: communication overlapped inside the GEMM kernels by a share of thread blocks."""

    name: Literal["comet"] = "comet"
    comm_block_fraction: Fraction = 0.25
    pipeline_chunks: PositiveInt = Field(
        default=4,
        description="Chunks each fused kernel pipelines its data over: dispatch + GEMM0 ends at "
        "max(start + GEMM0, arrival + GEMM0 / chunks), GEMM1 + combine at max(GEMM1, GEMM1 / "
        "chunks + transfer); 1 is the serial kernel.",
    )
    dtype: Dtype = Dtype.fp16


class DeepEPStrategy(Spec):
    """DeepEP: device-initiated dispatch/combine kernels; expert GEMMs launched by the host."""

    name: Literal["deepep"] = "deepep"
    comm_sms: PositiveInt = 20
    dtype: Dtype = Dtype.fp16


MoEStrategy = Annotated[
    FlashMoEStrategy | MegatronStrategy | FasterMoEStrategy | CometStrategy | DeepEPStrategy,
    Field(discriminator="name"),
]


class MoELayerWorkload(Spec):
    """One MoE layer forward over expert-parallel GPUs (experts placed contiguously: expert e on
    GPU e // (experts / GPUs)). ``capacity_factor`` None means dropless."""

    kind: Literal["moe_layer"] = "moe_layer"
    gpus: list[Identifier] | None = Field(default=None, description="GPU ids; all when absent.")
    tokens_per_gpu: PositiveInt
    hidden: PositiveInt = Field(description="H: model dimension.")
    intermediate: PositiveInt = Field(description="I: expert FFN dimension.")
    experts: PositiveInt
    top_k: PositiveInt = 2
    capacity_factor: PositiveFloat | None = 1.0
    routing: RoutingSpec = RoutingSpec()
    strategy: MoEStrategy = FlashMoEStrategy()
    overlap_efficiency: bool = Field(
        default=False,
        description="Also simulate the same layer on the first 2 GPUs (weak scaling) and report "
        "latency(2 GPUs) / latency(N GPUs).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> MoELayerWorkload:
        if self.top_k > self.experts:
            raise ValueError(f"top_k {self.top_k} exceeds experts {self.experts}")
        return self


class RouterStepsWorkload(Spec):
    """Run only the router for ``steps`` steps (bias updates included) and report MaxVio per step:
    what load imbalance ALF-LB removes, without simulating the layer."""

    kind: Literal["router_steps"] = "router_steps"
    tokens_per_step: PositiveInt
    experts: PositiveInt
    top_k: PositiveInt = 2
    ep_ranks: PositiveInt = Field(
        default=8, description="Expert-parallel ranks, for per-rank load."
    )
    steps: PositiveInt = 100
    routing: RoutingSpec = RoutingSpec()
