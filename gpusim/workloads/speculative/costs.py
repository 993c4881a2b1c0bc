"""What one forward pass of a model costs on one GPU, and where the target's weights live.

A pass is the kernels the ``llm_inference`` workload's forward issues
(:func:`gpusim.workloads.llm.forward.forward_ops`, batch 1, static KV cache). With ``runtime:
ideal`` they run back to back without host gaps (a C++ engine or CUDA graphs): the pass takes
the sum of the kernel models' times (:mod:`gpusim.kernels`). With ``pytorch_eager`` or ``cpp``
the host issues them one launch each, followed by the greedy sampling epilogue whose argmax the
host reads, and the pass takes the host-driven timeline of that program in closed form
(:func:`gpusim.execution.program_analytic.run_analytic`, the ``llm_inference`` family's host
model). Either way the pass runs in the DES as one aggregate kernel whose HBM traffic is a flow
(so a weight stream into the same memory slows it) and which alone takes exactly the pass's time.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from gpusim.errors import SimulationError
from gpusim.execution.host_costs import HostCosts
from gpusim.execution.program import Step
from gpusim.execution.program_analytic import run_analytic
from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.model_zoo import TransformerModel, issues_fused_qkv
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.units import GB_to_B
from gpusim.workloads.llm.forward import ForwardShape, forward_ops, sampling_ops
from gpusim.workloads.llm.ops import Kernel, Op, OpList
from gpusim.workloads.llm.program import eager_steps

PASS_PHASE = "pass"
"""The one phase of a pass's host-driven program."""


@dataclass(frozen=True)
class PassCost:
    """The kernels of one forward pass (or a share of one) as one aggregate: alone on the GPU it
    takes ``time_s`` = the sum of its kernels' durations, ``floor_s`` of them kernel floors."""

    time_s: float
    floor_s: float
    hbm_bytes: float
    flops: float

    def share(self, fraction: float) -> PassCost:
        """``fraction`` of this pass (one layer's share of a whole pass)."""
        return PassCost(
            self.time_s * fraction,
            self.floor_s * fraction,
            self.hbm_bytes * fraction,
            self.flops * fraction,
        )

    @property
    def body_s(self) -> float:
        """Time beyond the floors: what the aggregate's HBM flow is capped to last at least."""
        return self.time_s - self.floor_s


def _aggregate(costs: list[KernelCost]) -> PassCost:
    return PassCost(
        time_s=sum(c.time_s for c in costs),
        floor_s=sum(c.floor_s for c in costs),
        hbm_bytes=sum(c.hbm_bytes for c in costs),
        flops=sum(c.flops for c in costs),
    )


@dataclass(frozen=True)
class HostDriver:
    """The host issuing a pass's kernels on ``gpu`` of ``platform``: as framework ops
    (``framework``: PyTorch eager) or as bare runtime calls (a C++ runtime), at ``costs``."""

    platform: Platform
    gpu: str
    framework: bool
    costs: HostCosts

    def pass_s(self, ops: list[Op], slowdown: float) -> float:
        """The end of the program of ``ops`` issued from an idle host to an idle GPU, every host
        cost multiplied by ``slowdown`` (another thread holding part of the CPU)."""
        steps: list[Step] = eager_steps(ops, PASS_PHASE, self.framework, {})
        costs = self.costs if slowdown == 1.0 else self.costs.slowed(slowdown)
        result = run_analytic(self.platform, [self.gpu], [steps], (PASS_PHASE,), costs)
        return result[0].end_s


class PassCosts:
    """Forward-pass costs of one model on one GPU by the number of new tokens, each computed once
    per run, at one context length (the run's middle: the attention share that moves with the
    context is small next to the weight reads of a decode-sized pass)."""

    def __init__(
        self,
        model: TransformerModel,
        rates: GPURates,
        dtype: Dtype,
        context_tokens: int,
        encoder_tokens: int = 0,
        host: HostDriver | None = None,
    ) -> None:
        """Costs of ``model``'s passes (``encoder_tokens``: an encoder-decoder's source length);
        ``host``: who issues them (None: ``runtime: ideal``)."""
        self.model = model
        self.rates = rates
        self.dtype = dtype
        self.context_tokens = context_tokens
        self.encoder_tokens = encoder_tokens
        """An encoder-decoder model's source positions, read by its cross-attention."""
        self.host = host
        self._kernels: dict[Hashable, KernelCost] = {}
        self._passes: dict[tuple[int, float], PassCost] = {}

    def of(self, tokens: int, host_slowdown: float = 1.0) -> PassCost:
        """One pass over ``tokens`` new tokens (tree tokens attend like a sequence: the tree
        mask's extra cost is negligible, llmcad.md section 2); a host-driven pass's host costs
        multiplied by ``host_slowdown``."""
        key = (tokens, host_slowdown if self.host is not None else 1.0)
        hit = self._passes.get(key)
        if hit is None:
            ops = OpList(self.rates, self.dtype, self._kernels)
            cpp = self.host is not None and not self.host.framework
            fused = issues_fused_qkv(self.model, cpp)
            shape = ForwardShape(
                1,
                tokens,
                self.context_tokens,
                static_cache=True,
                fused_qkv=fused,
                encoder_tokens=self.encoder_tokens,
            )
            forward_ops(self.model, shape, ops)
            if self.host is not None:  # the host reads the pass's argmax
                sampling_ops(self.model, 1, self.context_tokens + tokens, ops)
            hit = _aggregate([op.cost for op in ops.ops if isinstance(op, Kernel)])
            if self.host is not None:
                wall = self.host.pass_s(ops.ops, key[1])
                hit = PassCost(wall, wall - hit.body_s, hit.hbm_bytes, hit.flops)
            self._passes[key] = hit
        return hit


def weights_bytes(model: TransformerModel, dtype: Dtype) -> float:
    """The parameters of ``model`` a pass uses, in ``dtype``: every one of a decoder's; of an
    encoder-decoder, its decoder's (:meth:`TransformerModel.pass_parameters`: the encoder ran
    once before generation and is not held)."""
    return float(model.pass_parameters() * storage_bytes(dtype))


def kv_bytes(
    model: TransformerModel, dtype: Dtype, context_tokens: int, encoder_tokens: int = 0
) -> float:
    """K and V of every layer for ``context_tokens`` tokens of one sequence, plus for an
    encoder-decoder model the cross-attention's K and V of the ``encoder_tokens`` positions of
    the encoder's output, in every decoder layer."""
    per_token = 2 * model.layers * model.kv_heads * model.head_size * storage_bytes(dtype)
    return float(per_token * (context_tokens + encoder_tokens))


def _kv_at_end(wl: SpeculativeDecodingWorkload, model: TransformerModel) -> float:
    """``model``'s KV caches at the run's last context (its prompt as :meth:`prompt_positions`
    places it, every generated token and a tree)."""
    start, encoder = wl.prompt_positions(model)
    context = start + wl.generated_tokens + wl.tree_size
    return kv_bytes(model, wl.dtype, context, encoder)


@dataclass(frozen=True)
class MemoryPlan:
    """Where the target's layers live: the first ``resident_layers`` in GPU memory, the rest
    streamed for every pass through ``stream_buffers`` layer buffers. The target's weights are
    split evenly over its layers (embeddings and LM head shared out: the streaming unit is one
    layer's share of the whole model)."""

    budget_B: float
    draft_B: float
    target_B: float
    kv_B: float
    layers: int
    resident_layers: int
    buffers: int

    @property
    def layer_B(self) -> float:
        """Weight bytes per target layer (its share of the whole model)."""
        return self.target_B / self.layers

    @property
    def streamed_layers(self) -> int:
        """Target layers loaded for every pass."""
        return self.layers - self.resident_layers

    @property
    def streamed_B(self) -> float:
        """Weight bytes loaded for every target pass."""
        return self.streamed_layers * self.layer_B

    @property
    def used_B(self) -> float:
        """Memory the engine holds: draft, resident target layers, KV caches, stream buffers."""
        buffers = self.buffers * self.layer_B if self.streamed_layers else 0.0
        return self.draft_B + self.resident_layers * self.layer_B + self.kv_B + buffers


def memory_plan(wl: SpeculativeDecodingWorkload, rates: GPURates) -> MemoryPlan:
    """Resident target layers under the budget (the GPU's capacity unless a smaller budget is
    given), after the draft, both KV caches at the run's last context and, when anything is
    streamed, the stream buffers. Raises :class:`SimulationError` (one line) when not even the
    draft, the caches and the buffers fit."""
    capacity = GB_to_B(rates.spec.hbm_capacity_GB)
    budget = capacity if wl.memory_budget_GB is None else GB_to_B(wl.memory_budget_GB)
    draft = 0.0 if wl.draft is None else weights_bytes(wl.draft, wl.dtype)
    kv = _kv_at_end(wl, wl.target)
    if wl.draft is not None:
        kv += _kv_at_end(wl, wl.draft)
    target = weights_bytes(wl.target, wl.dtype)
    layers = wl.target.layers
    layer = target / layers
    if draft + kv + target <= budget:
        return MemoryPlan(budget, draft, target, kv, layers, layers, wl.stream_buffers)
    room = budget - draft - kv - wl.stream_buffers * layer
    if room < 0:
        raise SimulationError(
            f"speculative decoding does not fit a {budget / 1e9:.2f} GB budget on GPU "
            f"'{rates.spec.name}': draft {draft / 1e9:.2f} GB + KV caches {kv / 1e9:.2f} GB + "
            f"{wl.stream_buffers} target layer buffers of {layer / 1e9:.2f} GB"
        )
    resident = min(layers - 1, int(room // layer))
    return MemoryPlan(budget, draft, target, kv, layers, resident, wl.stream_buffers)


__all__ = [
    "HostDriver",
    "MemoryPlan",
    "PassCost",
    "PassCosts",
    "kv_bytes",
    "memory_plan",
    "weights_bytes",
]
