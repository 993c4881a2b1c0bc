"""The per-rank programs of an ``llm_inference`` run: every forward pass (the prefill, then one
per decode step) with its generate epilogue, turned into program steps by launch mode and
runtime, and built lazily, once per pass, for every rank (the ranks share the pass's steps and
its exchanges). Without fusion or tensor parallelism a pass is one layer's steps repeated
(:func:`~gpusim.workloads.llm.forward.one_layer_ops`), and equal steps are one object.

- ``eager``: every kernel its own launch; with ``runtime: pytorch_eager`` each is a framework op
  (dispatch by op kind + ``cudaLaunchKernel`` or a cuBLAS call), view ops and Python module
  calls are host steps; with ``cpp`` only the runtime calls remain.
- ``graph``: the forward's kernels are captured in CUDA graphs (one per run of kernels between
  collectives), launched with one ``cudaGraphLaunch`` each (the spec requires the static KV
  cache graphs need); the generate epilogue stays eager.

A ``prefill`` run is the forward pass SKIP profiles, ended by ``torch.cuda.synchronize()``;
``decode`` and ``both`` run ``generate``: every pass is followed by the greedy sampling
epilogue and its host read.
- ``fused``: eager, after :func:`gpusim.workloads.llm.fusion.fuse` merged the deterministic
  chains of memory-bound kernels of each pass.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from gpusim.execution.host_costs import OpKind, RuntimeCall
from gpusim.execution.program import (
    Exchange,
    ExchangeStep,
    GraphStep,
    HostKind,
    HostStep,
    KernelStep,
    Step,
    SyncStep,
)
from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.spec.llm import LlmInferenceWorkload
from gpusim.workloads.llm.forward import (
    ForwardShape,
    forward_ops,
    one_layer_ops,
    sampling_ops,
)
from gpusim.workloads.llm.fusion import fuse
from gpusim.workloads.llm.ops import Collective, Host, Kernel, Op, OpList

Phase = Literal["prefill", "decode"]
PHASES: tuple[Phase, ...] = ("prefill", "decode")
"""The family's phases, in the order per-GPU rows list them (``{phase}_s``)."""


@dataclass(frozen=True)
class Pass:
    """One forward pass of the run: its phase, shape and the tokens in ``input_ids`` before it."""

    phase: Phase
    shape: ForwardShape
    length: int


def passes(wl: LlmInferenceWorkload) -> list[Pass]:
    """The forward passes ``wl`` simulates, in order: the prefill (phase prefill or both), then
    ``generated_tokens`` decode steps (phase decode or both; decode alone starts from a cache
    holding the prompt)."""
    tp, static, qkv = wl.tensor_parallel, wl.kv_cache == "static", wl.fuses_qkv
    b, p = wl.batch, wl.prompt_tokens
    out = []
    if wl.phase != "decode":
        out.append(Pass("prefill", ForwardShape(b, p, 0, tp, static, qkv), p))
    if wl.phase != "prefill":
        for t in range(wl.generated_tokens):
            out.append(Pass("decode", ForwardShape(b, 1, p + t, tp, static, qkv), p + t + 1))
    return out


def launches(steps: list[Step]) -> int:
    """Launch records ``steps`` leave (kernels, graph nodes, copies, collectives)."""
    n = 0
    for s in steps:
        if isinstance(s, GraphStep):
            n += len(s.nodes)
        elif not isinstance(s, HostStep) and not (isinstance(s, SyncStep) and s.kind != "to_host"):
            n += 1
    return n


@dataclass
class Programs:
    """Builds each pass's steps once and hands them to every rank's program in turn."""

    wl: LlmInferenceWorkload
    rates: GPURates
    n_ranks: int
    nccl_sms: int
    chains: tuple[tuple[str, ...], ...] = ()
    """The chains the fusion merged in the first pass (``fused`` only)."""
    fused_removed: int = 0
    """Launches the fusion removed, per rank, over the whole run."""
    first_pass_launches: int = 0
    prefill_launches: int = 0
    _cache: dict[Hashable, KernelCost] = field(default_factory=dict)
    _spmm_cache: dict[Hashable, tuple[KernelCost, ...]] = field(default_factory=dict)
    _built: dict[int, tuple[list[Step], int]] = field(default_factory=dict)
    """Pass index -> its steps and the ranks still to take them."""
    _steps: dict[Hashable, Step] = field(default_factory=dict)
    """Kernel and host steps already made (decode passes and layers repeat them): one object
    each, so the interpreters' per-step caches hit."""

    def __post_init__(self) -> None:
        self.passes = passes(self.wl)

    def program(self, rank: int) -> Iterator[Step]:
        """Rank ``rank``'s steps, pass after pass."""
        for i in range(len(self.passes)):
            yield from self._take(i)

    def _take(self, i: int) -> list[Step]:
        entry = self._built.get(i)
        if entry is None:
            steps = self._build(i)
            entry = (steps, self.n_ranks)
        steps, left = entry
        if left > 1:
            self._built[i] = (steps, left - 1)
        else:
            self._built.pop(i, None)
        return steps

    def _build(self, i: int) -> list[Step]:
        p = self.passes[i]
        wl = self.wl
        ops = OpList(
            self.rates, wl.dtype, self._cache, weights=wl.weights, spmm_cache=self._spmm_cache
        )
        tail: list[Op] = []
        if wl.phase != "prefill":  # generate: the sampling epilogue after every pass
            epilogue = OpList(self.rates, wl.dtype, self._cache)
            sampling_ops(wl.model, wl.batch, p.length, epilogue)
            tail = epilogue.ops
        if wl.launch == "fused":  # fusion reads tensor ids: the whole forward, layer by layer
            forward_ops(wl.model, p.shape, ops)
            result = fuse([*ops.ops, *tail], ops)
            self.fused_removed += result.removed
            if i == 0:
                self.chains = result.chains
            steps = self._eager(result.ops, p.phase)
        elif wl.tensor_parallel == 1:  # no per-layer collectives: build one layer, repeat it
            a, b = one_layer_ops(wl.model, p.shape, ops)
            head, layer, rest = ops.ops[:a], ops.ops[a:b], ops.ops[b:]
            if wl.launch == "graph":
                fwd = [*head, *layer * wl.model.layers, *rest]
                steps = [*self._graphed(fwd, p.phase), *self._eager(tail, p.phase)]
            else:
                steps = self._eager(head, p.phase)
                steps += self._eager(layer, p.phase) * wl.model.layers
                steps += self._eager([*rest, *tail], p.phase)
        else:  # each layer's collectives are exchanges of their own
            forward_ops(wl.model, p.shape, ops)
            if wl.launch == "graph":
                steps = [*self._graphed(ops.ops, p.phase), *self._eager(tail, p.phase)]
            else:
                steps = self._eager([*ops.ops, *tail], p.phase)
        if wl.phase == "prefill":  # the timed forward ends with torch.cuda.synchronize()
            steps.append(SyncStep(0, p.phase, kind="device"))
        if i == 0:
            self.first_pass_launches = launches(steps)
        if p.phase == "prefill":
            self.prefill_launches = launches(steps)
        return steps

    # -- ops to steps ----------------------------------------------------------------------

    def _exchange(self, c: Collective) -> Exchange:
        return Exchange.ring(
            c.name, c.collective, self.n_ranks, c.size_B / self.n_ranks, self.nccl_sms
        )

    def _eager(self, ops: list[Op], phase: Phase) -> list[Step]:
        return eager_steps(
            ops, phase, self.wl.runtime == "pytorch_eager", self._steps, self._exchange
        )

    def _graphed(self, ops: list[Op], phase: Phase) -> list[Step]:
        """The forward's kernels as CUDA graphs split at the collectives (and host reads);
        host-only ops were captured away."""
        steps: list[Step] = []
        nodes: list[KernelCost] = []
        for op in ops:
            if isinstance(op, Kernel):
                nodes.append(op.cost)
            elif isinstance(op, Host):
                continue
            else:
                if nodes:
                    steps.append(GraphStep(tuple(nodes), phase))
                    nodes = []
                steps.extend(self._eager([op], phase))
        if nodes:
            steps.append(GraphStep(tuple(nodes), phase))
        return steps


def eager_steps(
    ops: list[Op],
    phase: str,
    framework: bool,
    memo: dict[Hashable, Step],
    exchange: Callable[[Collective], Exchange] | None = None,
) -> list[Step]:
    """``ops`` issued one launch each: with ``framework`` (PyTorch eager) each kernel opens a
    framework op and view ops and Python module calls are host steps; without it (a C++
    runtime) only the runtime calls remain. ``memo`` holds the steps already made (equal ops
    are one step object); ``exchange`` turns a collective into its exchange (a program without
    collectives needs none)."""
    steps: list[Step] = []
    for op in ops:
        if isinstance(op, Kernel):
            key: Hashable = (op.cost, op.op_kind, op.call, phase)
            step = memo.get(key)
            if step is None:
                step = memo[key] = KernelStep(
                    op.cost, phase, new_op=framework, op_kind=op.op_kind, call=op.call
                )
            steps.append(step)
        elif isinstance(op, Host):
            if framework:
                key = (op.kind, op.count, phase)
                step = memo.get(key)
                if step is None:
                    kind: HostKind = "python" if op.kind == "python" else OpKind.view
                    step = memo[key] = HostStep(phase, kind, op.count)
                steps.append(step)
        elif isinstance(op, Collective):
            if exchange is None:
                raise AssertionError(f"collective '{op.name}' in a program without exchanges")
            call = RuntimeCall.collective if framework else None
            steps.append(ExchangeStep(exchange(op), phase, call=call))
        else:
            steps.append(SyncStep(op.size_B, phase, op_kind=op.op_kind if framework else None))
    return steps


__all__ = ["PHASES", "Pass", "Phase", "Programs", "eager_steps", "launches", "passes"]
