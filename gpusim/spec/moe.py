"""MoE layer specs: routing (distributions, capacity, ALF-LB) and the execution strategies
compared (FlashMoE's persistent kernel and the host-driven baselines)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from gpusim.spec.base import (
    Dtype,
    Identifier,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Spec,
)
from gpusim.spec.hardware import BlockResource
from gpusim.spec.problems import Problem, chosen_gpus, gpu_list_problems, tensor_dtype_problems
from gpusim.spec.profile import InstructionPath
from gpusim.spec.resources import KernelResources
from gpusim.spec.topology import Topology
from gpusim.units import KiB


class RoutingTraceError(ValueError):
    """A routing trace file that cannot be used; the message names the file (and the step)."""


def read_routing_trace(path: Path, experts: int) -> list[list[float]]:
    """The per-step expert counts of a routing trace file (JSON: a non-empty list of steps, each
    a list of ``experts`` finite non-negative numbers, not all 0). Raises
    :class:`RoutingTraceError` otherwise. The loader runs it (through the workload's check), the
    router reads the counts with it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RoutingTraceError(
            f"{path}: cannot read routing trace: {exc.strerror or exc}"
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RoutingTraceError(f"{path}: routing trace is not valid JSON: {exc}") from exc
    if not isinstance(raw, list) or not raw:
        raise RoutingTraceError(f"{path}: routing trace must be a non-empty list of steps")
    steps: list[list[float]] = []
    for i, step in enumerate(raw):
        where = f"{path}: step {i}"
        if not isinstance(step, list) or len(step) != experts:
            got = f"{len(step)} entries" if isinstance(step, list) else type(step).__name__
            raise RoutingTraceError(
                f"{where}: expected a list of {experts} expert counts, got {got}"
            )
        if not all(isinstance(c, int | float) and not isinstance(c, bool) for c in step):
            raise RoutingTraceError(f"{where}: counts must be numbers")
        counts = [float(c) for c in step]
        if not all(math.isfinite(c) and c >= 0 for c in counts):
            raise RoutingTraceError(f"{where}: counts must be finite and non-negative")
        if not any(c > 0 for c in counts):
            raise RoutingTraceError(f"{where}: counts sum to 0")
        steps.append(counts)
    return steps


def too_few_experts_reason(where: str, nonzero: int, top_k: int) -> str:
    """Why a step whose counts give tokens to only ``nonzero`` experts cannot be routed top-k."""
    return f"{where}: only {nonzero} experts have tokens, fewer than top_k = {top_k}"


REMOVED_ROUTING_FIELDS: dict[str, str] = {
    "aux_loss_residual_skew": "aux_loss_residual_skew was removed: the auxiliary loss is now "
    "simulated as a dynamic (balancing 'aux_loss' with aux_loss_alpha, ALF's alpha = 1e-3; "
    "docs/alf_lb.md)",
}
"""Routing fields that no longer exist, and what replaces each (one-line load errors)."""


class NodeLimitSpec(Spec):
    """DeepSeek-V3's node-limited routing (DSV3 section 2.1.2; its config's n_group and
    topk_group): experts in ``groups`` contiguous groups (one per node); each token ranks the
    groups by the sum of the top ``top_k / groups_per_token`` selection scores of each group's
    experts and picks its experts among the best ``groups_per_token`` groups only."""

    groups: PositiveInt = Field(description="Expert groups (nodes): DeepSeek-V3 has 8.")
    groups_per_token: PositiveInt = Field(description="M, groups per token: DeepSeek-V3 has 4.")

    def per_group_top(self, top_k: int) -> int:
        """How many of a group's best scores rank it: ``top_k // groups_per_token``, at least 1."""
        return max(1, top_k // self.groups_per_token)

    def problems(self, experts: int, top_k: int) -> Iterator[Problem]:
        """Groups that do not split the experts evenly, more groups per token than groups, or
        allowed groups that hold fewer than ``top_k`` experts (located inside this spec)."""
        if experts % self.groups:
            yield ("groups",), f"{experts} experts cannot be split into {self.groups} groups"
            return
        if self.groups_per_token > self.groups:
            yield (
                ("groups_per_token",),
                f"groups_per_token {self.groups_per_token} exceeds groups {self.groups}",
            )
            return
        size = experts // self.groups
        # M groups holding top_k experts also bound per_group_top = top_k // M by the group size
        if self.groups_per_token * size < top_k:
            yield (
                ("groups_per_token",),
                (
                    f"{self.groups_per_token} groups of {size} experts hold fewer than "
                    f"top_k = {top_k} experts"
                ),
            )


class RoutingSpec(Spec):
    """How tokens pick experts (docs/alf_lb.md has the definitions as implemented).

    Affinity of token t for expert e: ``gate(popularity_logit[e] + noise_scale * z[t, e])``
    with z standard normal and ``gate`` the sigmoid. Popularity: ``uniform`` (all equal),
    ``zipf`` (rank r gets weight r^-zipf_exponent), ``dirichlet`` (weights drawn from
    Dir(concentration)) or ``trace`` (per-step expert counts read from ``trace_file``); any of
    the first three drifts with ``drift_per_step``. Selection is top-k over affinity plus bias.
    """

    distribution: Literal["uniform", "zipf", "dirichlet", "trace"] = "uniform"
    zipf_exponent: NonNegativeFloat = 1.0
    dirichlet_concentration: PositiveFloat = 1.0
    drift_per_step: NonNegativeFloat = Field(
        default=0.0,
        description="Standard deviation of the per-step, per-expert normal increment of the "
        "popularity logits (a seeded random walk on top of any distribution except trace; 0 = "
        "static popularity). ASSUMPTION: no published rate; docs/alf_lb.md.",
    )
    noise_scale: PositiveFloat = 1.0
    gate: Literal["sigmoid", "softmax"] = Field(
        default="sigmoid",
        description="The affinity function G: sigmoid (ALF's main experiments, DeepSeek-V3) or "
        "softmax over the experts (ALF Table 6).",
    )
    renormalise_gates: bool = Field(
        default=True,
        description="Gating weights are the chosen experts' affinities (never the bias) divided "
        "by their sum (DeepSeek-V3); false: the affinities as they are (ALF's g = s).",
    )
    node_limited: NodeLimitSpec | None = Field(
        default=None, description="DeepSeek-V3's node-limited routing; absent: no limit."
    )
    trace_file: str | None = Field(default=None, description="JSON: list of steps, each E counts.")
    balancing: Literal["none", "alf_lb", "aux_loss"] = "none"
    alf_update: Literal["sign", "proportional", "multiplicative"] = "sign"
    alf_update_rate: PositiveFloat = Field(default=1e-3, description="u of ALF-LB (ALF: 1e-3).")
    alf_update_stop_step: NonNegativeInt | None = Field(
        default=None,
        description="No bias update from this training step on (0-based; DeepSeek-V3's update "
        "speed is 0.001, then 0 for its last 500B of 14.8T tokens). Absent: always updated.",
    )
    aux_loss_alpha: NonNegativeFloat = Field(
        default=1e-3,
        description="aux_loss: alpha of the switch-style balance loss alpha * sum_i f_i P_i "
        "(ALF section 6: 1e-3).",
    )
    aux_loss_learning_rate: PositiveFloat = Field(
        default=1.0,
        description="aux_loss: step of the gradient descent that moves each expert's logit by "
        "-rate * dL/dlogit per step. ASSUMPTION: plain gradient descent with unit step; the "
        "optimiser (AdamW) and the language-model loss's own gradient are not modelled.",
    )
    sequence_aux_alpha: NonNegativeFloat = Field(
        default=0.0,
        description="DeepSeek-V3's complementary sequence-wise balance loss, alpha (DSV3: 1e-4; "
        "0 = off): with any balancing, the logits also descend its gradient each step, at "
        "aux_loss_learning_rate. Sigmoid gate only.",
    )
    sequence_aux_tokens: PositiveInt = Field(
        default=4096,
        description="Tokens per sequence of the sequence-wise loss (DeepSeek-V3 pre-trains at "
        "4K; its report, not alf_lb.md).",
    )
    warmup_steps: NonNegativeInt = Field(
        default=0, description="Router steps run (bias updates included) before the measured one."
    )
    sampling: Literal["auto", "per_token", "counts"] = Field(
        default="auto",
        description="How an MoE layer's routing is drawn: per_token (every token's affinities "
        "and top-k, the reference), counts (each token's experts drawn directly, with the same "
        "distribution, for uniform routing whose measured step sees no learnt state; other "
        "random numbers than per_token, so other results; an error anywhere else) or auto (the "
        "default: counts exactly where counts can stand for per_token, per_token elsewhere). "
        "router_steps always routes per token (auto or per_token).",
    )

    def counts_problem(self) -> str | None:
        """Why ``sampling: counts`` cannot stand for per-token routing here, or None: only
        uniform popularity without a node limit, whose measured step sees no state learnt in
        warm-up (no warm-up, or one that changes nothing: no balancing, drift or sequence
        loss), makes every token's top-k a uniformly random set of distinct experts."""
        if self.distribution != "uniform":
            return f"needs distribution 'uniform', not '{self.distribution}'"
        if self.node_limited is not None:
            return "needs no node_limited routing"
        stateful = (
            self.balancing != "none" or self.drift_per_step > 0.0 or self.sequence_aux_alpha > 0.0
        )
        if self.warmup_steps > 0 and stateful:
            return (
                "needs the measured step to see no learnt state: warmup_steps 0, or no "
                "balancing, drift_per_step or sequence_aux_alpha"
            )
        return None

    def resolved_sampling(self) -> Literal["per_token", "counts"]:
        """How an MoE layer's routing is drawn: ``sampling`` with ``auto`` resolved (counts
        exactly where :meth:`counts_problem` is None)."""
        if self.sampling == "auto":
            return "counts" if self.counts_problem() is None else "per_token"
        return self.sampling

    @model_serializer(mode="wrap")
    def _sampling_written_where_it_matters(
        self, handler: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        # Left out of the JSON (hence the scenario hash) where auto and per_token are the same
        # draws, as before the field existed: those hashes and results stay. Written wherever
        # counts could stand for per_token, so a sweep stored with per-token draws under the old
        # default recomputes those points instead of mixing the two kinds of draws, and a dumped
        # per_token reloads as per_token.
        data: dict[str, Any] = handler(self)
        if self.sampling != "counts" and self.counts_problem() is not None:
            data.pop("sampling", None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, data: object) -> object:
        if isinstance(data, dict):
            for name, reason in REMOVED_ROUTING_FIELDS.items():
                if name in data:
                    raise ValueError(reason)
            if data.get("distribution") == "drift":
                raise ValueError(
                    "distribution 'drift' was removed: drift now combines with any popularity; "
                    "use distribution 'uniform' (or zipf, dirichlet) with drift_per_step"
                )
        return data

    @model_validator(mode="after")
    def _trace_needs_file(self) -> RoutingSpec:
        if self.distribution == "trace" and not self.trace_file:
            raise ValueError("distribution 'trace' needs trace_file")
        return self

    def problems(self, experts: int, top_k: int) -> Iterator[Problem]:
        """What a router of ``experts`` experts choosing ``top_k`` would refuse at run time,
        located inside this routing spec. Reads the trace file (made absolute by the loader)."""
        if self.distribution == "trace" and self.trace_file is not None:
            path = Path(self.trace_file)
            try:
                steps = read_routing_trace(path, experts)
            except RoutingTraceError as exc:
                yield ("trace_file",), str(exc)
                steps = []
            for i, counts in enumerate(steps):
                nonzero = sum(1 for c in counts if c > 0)
                if nonzero < top_k:
                    yield (
                        ("trace_file",),
                        too_few_experts_reason(f"{path}: step {i}", nonzero, top_k),
                    )
                    break
        yield from self.setting_problems(experts, top_k)

    def setting_problems(self, experts: int, top_k: int) -> Iterator[Problem]:
        """The problems of :meth:`problems` that need no file: settings that contradict each
        other or the layer (the router raises the first of them)."""
        if self.sampling == "counts":
            reason = self.counts_problem()
            if reason is not None:
                yield (("sampling",), f"sampling 'counts' {reason}")
        if self.node_limited is not None:
            if self.distribution == "trace":
                yield (("node_limited",), "node_limited re-routes by affinity; a 'trace' has none")
            for loc, reason in self.node_limited.problems(experts, top_k):
                yield ("node_limited", *loc), reason
        if self.drift_per_step > 0.0 and self.distribution == "trace":
            yield (("drift_per_step",), "drift_per_step needs affinity logits; a 'trace' has none")
        if self.sequence_aux_alpha > 0.0 and (
            self.distribution == "trace" or self.gate != "sigmoid"
        ):
            yield (
                ("sequence_aux_alpha",),
                "the sequence-wise loss needs sigmoid affinities (gate 'sigmoid', not a trace)",
            )
        if self.balancing == "aux_loss" and self.distribution == "trace":
            yield (
                ("balancing",),
                "balancing 'aux_loss' moves the affinity logits, which a 'trace' distribution "
                "does not have",
            )
        if (
            self.balancing == "alf_lb"
            and self.alf_update == "multiplicative"
            and self.alf_update_rate >= 1.0
        ):
            yield (
                ("alf_update_rate",),
                (
                    f"multiplicative ALF-LB needs alf_update_rate < 1 (the bias must stay "
                    f"positive), got {self.alf_update_rate}"
                ),
            )


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

    def launch_problems(self, gpus: Sequence[str], topology: Topology) -> Iterator[Problem]:
        """The persistent kernel's block (:meth:`kernel_resources`) launches on every GPU model
        among ``gpus`` (ids unknown to ``topology`` are skipped: the GPU list's check reports
        them). Located, inside the workload, at the strategy field that sets the resource."""
        res = self.kernel_resources()
        fields: dict[BlockResource, str] = {
            "threads": "threads_per_block",
            "registers": "registers_per_thread",
            "shared_memory": "shared_mem_per_block_KiB",
        }
        models = {g.id: g.model for g in topology.gpus()}
        seen: set[str] = set()
        for gid in gpus:
            model = models.get(gid)
            if model is None or model.name in seen:
                continue
            seen.add(model.name)
            for resource, reason in model.launch_limit_problems(
                res.threads_per_block, res.registers_per_thread, res.shared_mem_per_block_bytes
            ):
                field = "block_resources" if self.block_resources is not None else fields[resource]
                yield ("strategy", field), f"the persistent kernel cannot launch: {reason}"

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
    """Megatron-Core's MoE layer (MoELayer: TopKRouter, a token dispatcher, an expert back end),
    a host-driven chain of PyTorch operators and NCCL collectives. The defaults are what the
    reference harness ran (moe_baselines.md section 1: COMET's artifact harness driving
    ZSL98/Megatron-LM, tests/unit_tests/transformer/moe/test_moe.py): the allgather dispatcher,
    grouped GEMM, dropless, no load-balancing loss, bf16, a forward that records autograd
    (the harness calls the layer outside ``torch.no_grad()`` with parameters requiring grad)."""

    name: Literal["megatron"] = "megatron"
    dispatcher: Literal["allgather", "alltoall"] = Field(
        default="allgather",
        description="Megatron-Core's token dispatcher (moe_token_dispatcher_type): allgather "
        "(MoEAllGatherTokenDispatcher: all-gather of every token, local mask and permutation, "
        "reduce-scatter back; the default of the period and the harness's) or alltoall "
        "(MoEAlltoAllTokenDispatcher: split sizes to the host, then all-to-all).",
    )
    backend: Literal["grouped_gemm", "te", "sequential"] | None = Field(
        default=None,
        description="Expert back end: grouped_gemm (GroupedMLP, the grouped_gemm package), te "
        "(TEGroupedMLP, Transformer Engine's GroupedLinear), sequential (SequentialMLP, a "
        "Python loop of expert modules). Absent: from variant (cutlass -> grouped_gemm, "
        "te -> te).",
    )
    variant: Literal["cutlass", "te"] = Field(
        default="cutlass",
        description="The FlashMoE paper's baseline names: cutlass (Megatron-CUTLASS = "
        "GroupedMLP) or te (Megatron-TE = TEGroupedMLP). Must agree with backend when both "
        "are given.",
    )
    grouped_gemm: Literal["cublas_loop", "cutlass_sm80", "cutlass_sm90"] = Field(
        default="cublas_loop",
        description="How the grouped_gemm back end's GEMM runs. cublas_loop: one operator "
        "calling cublasGemmEx per expert (what the grouped_gemm package does on sm_90); "
        "cutlass_sm80: one CUTLASS sm_80 grouped kernel on the mma.sync path (the package built "
        "for sm_80); cutlass_sm90: one wgmma grouped kernel.",
    )
    te_compute_streams: PositiveInt = Field(
        default=4,
        description="te: the compute streams Transformer Engine's multi-stream cuBLAS path "
        "spreads the per-expert GEMMs over, round-robin (TE's default is 4).",
    )
    capacity: Literal["dropless", "capacity_factor"] = Field(
        default="dropless",
        description="dropless (moe_expert_capacity_factor None: the workload's "
        "capacity_factor is ignored, no token is dropped) or capacity_factor (the workload's "
        "capacity_factor sets each expert's capacity).",
    )
    pad_to_capacity: bool = Field(
        default=True,
        description="With capacity_factor, send every expert's full capacity (Megatron's "
        "moe_pad_expert_input_to_capacity) instead of exchanging counts first.",
    )
    load_balancing: Literal["none", "aux_loss"] = Field(
        default="none",
        description="moe_router_load_balancing_type: none (the harness) or aux_loss (the "
        "switch loss's operators run in the forward).",
    )
    forward: Literal["training", "inference"] = Field(
        default="training",
        description="training: the forward records an autograd graph (every op outside the "
        "dispatcher's no_grad blocks pays the autograd bookkeeping); inference: under "
        "torch.no_grad().",
    )
    dtype: Dtype = Dtype.bf16

    @model_validator(mode="after")
    def _backend_agrees_with_variant(self) -> MegatronStrategy:
        if self.backend is not None and "variant" in self.model_fields_set:
            implied = "te" if self.variant == "te" else "grouped_gemm"
            if self.backend != implied:
                raise ValueError(
                    f"variant '{self.variant}' contradicts backend '{self.backend}' (cutlass "
                    "is grouped_gemm, te is te)"
                )
        return self

    @property
    def expert_backend(self) -> Literal["grouped_gemm", "te", "sequential"]:
        """The back end that runs: ``backend``, else the one ``variant`` names."""
        if self.backend is not None:
            return self.backend
        return "te" if self.variant == "te" else "grouped_gemm"

    @property
    def records_graph(self) -> bool:
        """The forward records an autograd graph."""
        return self.forward == "training"


class FasterMoEStrategy(Spec):
    """FastMoE's ``FMoETransformerMLP`` (laekov/fastmoe), as the reference harness runs it:
    plain FastMoE by default; FasterMoE's smart schedule with ``smart_schedule`` (what
    ``FMOE_FASTER_SCHEDULE_ENABLE=1`` switches on). Every step's source: ``docs/moe.md``."""

    name: Literal["fastermoe"] = "fastermoe"
    smart_schedule: bool = Field(
        default=False,
        description="FasterMoE's smart schedule (fmoe/fastermoe/schedule.py, "
        "cuda/fastermoe/smart_schedule.h): the exchange split by groups of pipeline_gran "
        "workers and pipelined against the expert computation on a communication stream. "
        "False: plain FastMoE (fmoe/layers.py), what FMoETransformerMLP runs without "
        "FMOE_FASTER_SCHEDULE_ENABLE.",
    )
    pipeline_gran: PositiveInt = Field(
        default=4,
        description="smart_schedule: workers per pipeline group (FMOE_FASTER_GROUP_SIZE, "
        "default 4 in cuda/fastermoe/smart_schedule.cpp; capped at the world size).",
    )
    shadowing: bool = Field(
        default=False,
        description="FasterMoE's dynamic shadowing (FMOE_FASTER_SHADOW_ENABLE=1; "
        "fmoe/fastermoe/shadow_policy.py global_policy): the policy's all-gather of the "
        "per-expert counts and .cpu() sync, its decision from the routed counts (with the "
        "library's per-worker row sums and default cost constants), and for each shadowed "
        "expert the parameter broadcast, skipped rows and local compute "
        "(cuda/fastermoe/smart_schedule.h). Needs smart_schedule: only "
        "fmoe/fastermoe/schedule.py calls the policy.",
    )
    dtype: Dtype = Dtype.fp16

    @model_validator(mode="after")
    def _shadowing_needs_smart_schedule(self) -> FasterMoEStrategy:
        if self.shadowing and not self.smart_schedule:
            raise ValueError(
                "shadowing needs smart_schedule: true (only fmoe/fastermoe/schedule.py, the "
                "smart schedule, calls the shadow policy)"
            )
        return self


class CometStrategy(Spec):
    """COMET (bytedance/flux): an all-gather of the tokens overlapped with the grouped GEMM0,
    and GEMM1 whose last CTAs top-k reduce and scatter the results (``docs/moe.md``)."""

    name: Literal["comet"] = "comet"
    gather_rs_ctas: PositiveInt = Field(
        default=28,
        description="CTAs of the GEMM1 kernel that do the top-k reduce and scatter (flux "
        "src/moe_gather_rs/ths_op/gemm_grouped_v3_gather_rs.cc: 28 for 16-bit inputs, 32 "
        "for FP8); the rest compute.",
    )
    pipeline_chunks: PositiveInt = Field(
        default=4,
        description="Pieces over which each fused kernel overlaps its transfer with its GEMM "
        "(it ends at max(GEMM, transfer + GEMM / pipeline_chunks)).",
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


class HarnessSpec(Spec):
    """How a published figure was measured: what the token count means, and the timing loop.

    The model is deterministic, so warm-ups change nothing except first-call effects, and none
    is modelled (no allocator, autotuning or NCCL communicator set-up cost): ``warmup`` is
    recorded, not simulated. A timed iteration is one forward from an idle GPU and an idle host
    thread; with ``sync_each_iteration`` the host-driven programs end with a
    ``torch.cuda.synchronize()`` (the host waits for every stream to drain and pays the return
    latency, which counts in the iteration's time). Without it, the next iteration's host work
    overlapping this one's GPU tail is not modelled (each iteration is timed from idle)."""

    tokens_are: Literal["per_rank", "global"] = Field(
        default="per_rank",
        description="per_rank: tokens_per_gpu is each rank's token count (FlashMoE's S); "
        "global: tokens_per_gpu holds the global count and each rank gets tokens // GPUs "
        "(the COMET harness's num_tokens).",
    )
    sync_each_iteration: bool = Field(
        default=False,
        description="The timing loop calls torch.cuda.synchronize() every iteration "
        "(the harness's Megatron-TE loop). Host-driven strategies only.",
    )
    warmup: NonNegativeInt = Field(
        default=0,
        description="Warm-up iterations before the timed ones (recorded; they change nothing in "
        "this deterministic model, which models no first-call effect).",
    )


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
    shared_experts: NonNegativeInt = Field(
        default=0,
        description="Shared experts every token also passes through on its own GPU, each an FFN "
        "of the routed experts' size (DeepSeek-V3: 1). Modelled for the deepep strategy only.",
    )
    capacity_factor: PositiveFloat | None = 1.0
    routing: RoutingSpec = RoutingSpec()
    strategy: MoEStrategy = FlashMoEStrategy()
    overlap_efficiency: bool = Field(
        default=False,
        description="Also simulate the same layer on the first 2 GPUs (weak scaling) and report "
        "latency(2 GPUs) / latency(N GPUs).",
    )
    harness: HarnessSpec = HarnessSpec()

    @model_validator(mode="after")
    def _consistent(self) -> MoELayerWorkload:
        if self.top_k > self.experts:
            raise ValueError(f"top_k {self.top_k} exceeds experts {self.experts}")
        return self

    def per_rank(self, n_gpus: int) -> MoELayerWorkload:
        """The layer as each rank runs it: ``tokens_per_gpu`` per rank (the harness's global
        count split over ``n_gpus``), and, for a dropless Megatron, no capacity factor."""
        update: dict[str, object] = {}
        if self.harness.tokens_are == "global":
            update["tokens_per_gpu"] = max(1, self.tokens_per_gpu // n_gpus)
            update["harness"] = self.harness.model_copy(update={"tokens_are": "per_rank"})
        s = self.strategy
        if isinstance(s, MegatronStrategy) and s.capacity == "dropless":
            update["capacity_factor"] = None
        return self.model_copy(update=update) if update else self

    def check(self, topology: Topology) -> Iterator[Problem]:
        """What the layer's simulation would refuse at run time, knowable from ``topology``:
        the GPU list (distinct GPUs of the topology, not empty), experts spread evenly over the
        GPUs (and over the first 2 with ``overlap_efficiency``), the strategy's dtype on every
        GPU's tensor cores, FlashMoE's tile width dividing the model dimensions, the routing."""
        yield from gpu_list_problems(self.gpus, topology, "gpus")
        gpus = chosen_gpus(self.gpus, topology)
        if gpus and self.harness.tokens_are == "global" and self.tokens_per_gpu % len(gpus):
            yield (
                ("tokens_per_gpu",),
                (
                    f"harness.tokens_are 'global': {self.tokens_per_gpu} tokens cannot be "
                    f"split evenly over {len(gpus)} GPUs"
                ),
            )
        if gpus and self.experts % len(gpus):
            yield (
                ("experts",),
                (f"{self.experts} experts cannot be spread evenly over {len(gpus)} GPUs"),
            )
        if self.overlap_efficiency and len(gpus) > 2 and self.experts % 2:
            yield (
                ("overlap_efficiency",),
                (
                    f"overlap_efficiency also simulates the layer on 2 GPUs, over which "
                    f"{self.experts} experts cannot be spread evenly"
                ),
            )
        yield from tensor_dtype_problems(self.strategy.dtype, gpus, topology, ("strategy", "dtype"))
        if self.shared_experts and not isinstance(self.strategy, DeepEPStrategy):
            yield (
                ("shared_experts",),
                f"shared experts are modelled for the deepep strategy only, not "
                f"'{self.strategy.name}'",
            )
        if isinstance(self.strategy, FlashMoEStrategy):
            tile_n = self.strategy.tile_n
            for name, dim in (("hidden", self.hidden), ("intermediate", self.intermediate)):
                if dim % tile_n:
                    yield (name,), f"{name} {dim} is not a multiple of strategy.tile_n {tile_n}"
            yield from self.strategy.launch_problems(gpus, topology)
        for loc, reason in self.routing.problems(self.experts, self.top_k):
            yield ("routing", *loc), reason


PAPER_COMPUTATION_BATCH_SEQUENCES = (1, 4, 18, 36)
"""Computation batches (sequences) at which MaxVio_computation-batch is reported by default
(ALF Fig. 5 marks 18 and 36; 1 and 4 below them, issue 16)."""


class RouterStepsWorkload(Spec):
    """Run only the router for ``steps`` training steps (bias or aux-loss updates included), then
    freeze it and route ``heldout_tokens`` fresh tokens: MaxVio per step, MaxVio_batch,
    MaxVio_global and MaxVio_computation-batch as the ALF paper defines them (docs/alf_lb.md),
    without simulating the layer."""

    kind: Literal["router_steps"] = "router_steps"
    tokens_per_step: PositiveInt
    experts: PositiveInt
    top_k: PositiveInt = 2
    ep_ranks: PositiveInt = Field(
        default=8, description="Expert-parallel ranks, for per-rank load."
    )
    steps: PositiveInt = 100
    layers: PositiveInt = Field(
        default=1,
        description="Independent MoE layers (each its own popularity, bias and random stream); "
        "every metric and series is the mean over layers, as the paper reports.",
    )
    maxvio_batch_window_steps: PositiveInt = Field(
        default=100,
        description="MaxVio_batch is the mean per-step MaxVio over the last this many steps "
        "(ALF Fig. 3 averages 100 neighbouring steps); capped at steps.",
    )
    heldout_tokens: PositiveInt = Field(
        default=1_048_576,
        description="Fresh tokens routed by the frozen router after training for MaxVio_global "
        "and MaxVio_computation-batch (the paper's validation set has ~71M tokens; fewer "
        "leave a sampling floor of about 2.5 sqrt(E / (k heldout_tokens))).",
    )
    sequence_tokens: PositiveInt = Field(
        default=2048, description="Tokens per sequence (ALF Table 5: 2,048)."
    )
    computation_batch_sequences: list[PositiveInt] = Field(
        default_factory=lambda: list(PAPER_COMPUTATION_BATCH_SEQUENCES),
        description="Computation-batch sizes in sequences at which MaxVio_computation-batch "
        "(loads over that many consecutive held-out sequences, averaged over the batches) is "
        "reported, one metric each.",
    )
    routing: RoutingSpec = RoutingSpec()

    @model_serializer(mode="wrap")
    def _router_sampling_is_per_token(
        self, handler: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        # the router follows every token whatever sampling says (counts is refused): the JSON
        # (and hash) of per_token, as before sampling existed
        data: dict[str, Any] = handler(self)
        if self.routing.sampling != "counts":
            data["routing"].pop("sampling", None)
        return data

    def check(self, topology: Topology) -> Iterator[Problem]:
        """What the router would refuse at run time: top_k over the experts, experts not spread
        evenly over the EP ranks, a computation batch larger than the held-out tokens, the
        routing's own problems. The topology is not used (the router runs on no device)."""
        if self.top_k > self.experts:
            yield ("top_k",), f"top_k {self.top_k} exceeds experts {self.experts}"
        if self.experts % self.ep_ranks:
            yield (
                ("experts",),
                (f"{self.experts} experts cannot be spread evenly over {self.ep_ranks} EP ranks"),
            )
        for i, sequences in enumerate(self.computation_batch_sequences):
            if sequences * self.sequence_tokens > self.heldout_tokens:
                yield (
                    ("computation_batch_sequences", i),
                    (
                        f"a computation batch of {sequences} sequences x {self.sequence_tokens} "
                        f"tokens exceeds heldout_tokens {self.heldout_tokens}"
                    ),
                )
        if len(set(self.computation_batch_sequences)) != len(self.computation_batch_sequences):
            yield (("computation_batch_sequences",), "sizes must be distinct")
        if self.routing.sampling == "counts":
            yield (
                ("routing", "sampling"),
                "router steps follow every token (MaxVio per batch): sampling must be 'per_token' "
                "or 'auto'",
            )
        for loc, reason in self.routing.problems(self.experts, self.top_k):
            yield ("routing", *loc), reason
