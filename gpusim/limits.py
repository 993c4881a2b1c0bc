"""Work estimates and the limits that refuse runaways before they start.

A scenario's size is estimated from its spec alone (no simulation): the events the DES would
schedule (flows, kernels, tasks, router draws), and the host memory its largest arrays need. A
sweep's size is its point count, known from its axes without expanding them. Anything beyond a
:class:`Limits` value is refused with a one-line :class:`~gpusim.errors.SpecError` that gives the
estimate and the command-line option that raises the limit. The estimates are upper bounds within
a small factor, meant to tell "seconds" from "hours", not to predict run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from gpusim.errors import SpecError
from gpusim.run_limits import Limits as Limits  # re-exported: the limits and their checks
from gpusim.spec.base import storage_bytes
from gpusim.spec.llm import LlmInferenceWorkload
from gpusim.spec.moe import FlashMoEStrategy, MoELayerWorkload, RouterStepsWorkload
from gpusim.spec.scenario import ResolvedScenario
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.spec.topology import GPUDevice
from gpusim.spec.workload import (
    ElementwiseOp,
    GemmAllToAllWorkload,
    GemmOp,
    KernelChainWorkload,
    MemcpyOp,
    TransfersWorkload,
    Workload,
)

EVENTS_PER_FLOW = 8
"""DES events one transfer or kernel costs (start, rate changes, completion, callbacks)."""
DRAWS_PER_EVENT = 64
"""Router random draws that cost about as much as one DES event (vectorised numpy)."""
BYTES_PER_CHOICE = 48
"""Host bytes per routed (token, expert) choice: the choice, source and slot arrays (int64)."""


@dataclass(frozen=True)
class WorkEstimate:
    """What a scenario will cost, and the JSON path of the field that drives it."""

    events: float
    memory_B: float
    driver: str


def _n_gpus(gpus: list[str] | None, scenario: ResolvedScenario) -> int:
    return len(gpus) if gpus else len(scenario.topology.gpus())


def _moe(wl: MoELayerWorkload, n_gpus: int) -> WorkEstimate:
    layers = 2 if wl.overlap_efficiency else 1
    choices = float(wl.tokens_per_gpu) * n_gpus * wl.top_k
    if wl.routing.resolved_sampling() == "counts":  # top_k integers a token, no warm-up
        draws = choices
    else:
        draws = float(wl.tokens_per_gpu) * n_gpus * wl.experts * (wl.routing.warmup_steps + 1)
    strategy = wl.strategy
    if isinstance(strategy, FlashMoEStrategy):
        row_tiles = choices / strategy.tile_m + wl.experts * n_gpus
        col_tiles = math.ceil(wl.intermediate / strategy.tile_n) + math.ceil(
            wl.hidden / strategy.tile_n
        )
        tasks = row_tiles * col_tiles / strategy.task_batch
    else:
        tasks = float(wl.experts) * n_gpus * 64  # kernels, chunks and exchanges per expert
    events = layers * (EVENTS_PER_FLOW * (tasks + n_gpus * n_gpus) + draws / DRAWS_PER_EVENT)
    return WorkEstimate(events, layers * choices * BYTES_PER_CHOICE, "$.workload.tokens_per_gpu")


def _router(wl: RouterStepsWorkload) -> WorkEstimate:
    steps = wl.steps + wl.routing.warmup_steps
    trained = float(wl.tokens_per_step) * steps
    draws = wl.layers * (trained + wl.heldout_tokens) * wl.experts
    memory = float(max(wl.tokens_per_step, wl.heldout_tokens)) * wl.top_k * BYTES_PER_CHOICE
    if wl.heldout_tokens > trained:
        driver = "$.workload.heldout_tokens"
    elif wl.steps > wl.tokens_per_step:
        driver = "$.workload.steps"
    else:
        driver = "$.workload.tokens_per_step"
    return WorkEstimate(draws / DRAWS_PER_EVENT + wl.layers * steps, memory, driver)


LLM_KERNELS_PER_LAYER = 60
"""An upper bound of the kernels, collectives and host steps one transformer layer issues
(HF Llama eager: about 45 kernels, 2 all-reduces and about 20 view and module steps)."""
LLM_RECORD_B = 200
"""Host bytes of one launch record (a slotted dataclass of a dozen fields)."""


def _llm(wl: LlmInferenceWorkload) -> WorkEstimate:
    passes = (wl.phase != "decode") + (wl.phase != "prefill") * wl.generated_tokens
    steps = float(passes) * wl.tensor_parallel * (LLM_KERNELS_PER_LAYER * (wl.model.layers + 1))
    driver = "$.workload.generated_tokens" if passes > 1 else "$.workload.model"
    return WorkEstimate(EVENTS_PER_FLOW * steps, LLM_RECORD_B * steps, driver)


def _speculative(wl: SpeculativeDecodingWorkload) -> WorkEstimate:
    """At most one target pass and one draft pass per generated token, a pass at most a load
    and a compute flow per target layer."""
    flows = 2.0 * wl.generated_tokens * (wl.target.layers + 1)
    return WorkEstimate(EVENTS_PER_FLOW * flows, 0.0, "$.workload.generated_tokens")


def estimate(scenario: ResolvedScenario) -> WorkEstimate:
    """The work ``scenario`` would take, from its spec alone."""
    wl: Workload = scenario.workload
    if isinstance(wl, GemmAllToAllWorkload):
        n = _n_gpus(wl.gpus, scenario)
        flows = float(n) * max(n - 1, 1) * wl.messages_per_peer
        return WorkEstimate(
            EVENTS_PER_FLOW * (flows + n), 64 * flows, "$.workload.messages_per_peer"
        )
    if isinstance(wl, KernelChainWorkload):
        return WorkEstimate(EVENTS_PER_FLOW * float(wl.count), 0.0, "$.workload.count")
    if isinstance(wl, TransfersWorkload):
        return WorkEstimate(EVENTS_PER_FLOW * float(len(wl.transfers)), 0.0, "$.workload.transfers")
    if isinstance(wl, MoELayerWorkload):
        return _moe(wl, _n_gpus(wl.gpus, scenario))
    if isinstance(wl, RouterStepsWorkload):
        return _router(wl)
    if isinstance(wl, LlmInferenceWorkload):
        return _llm(wl)
    if isinstance(wl, SpeculativeDecodingWorkload):
        return _speculative(wl)
    return WorkEstimate(0.0, 0.0, "$.workload")  # a family without an estimate yet


def _gemm_B(op: GemmOp, output_copies: int = 1) -> float:
    a_b_c = float(op.m) * op.k + float(op.k) * op.n + output_copies * float(op.m) * op.n
    return a_b_c * storage_bytes(op.dtype)


def device_working_set(scenario: ResolvedScenario) -> tuple[float, str, list[str]]:
    """Bytes one GPU must hold at once (inputs, weights, outputs, receive buffers), the JSON
    path of what sizes it, and the ids of the GPUs that hold it (empty: none)."""
    wl = scenario.workload
    gpus = scenario.topology.gpus()
    if isinstance(wl, GemmAllToAllWorkload):
        # A, B, the output and the buffer its all-to-all receives into
        return _gemm_B(wl.gemm, 2), "$.workload.gemm", wl.gpus or [g.id for g in gpus]
    if isinstance(wl, KernelChainWorkload):
        op = wl.kernel
        on = [wl.gpu] if wl.gpu else [g.id for g in gpus[:1]]
        if isinstance(op, GemmOp):
            return _gemm_B(op), "$.workload.kernel", on
        if isinstance(op, ElementwiseOp):
            return float(op.bytes_read + op.bytes_written), "$.workload.kernel", on
        if isinstance(op, MemcpyOp):
            return float(op.bytes), "$.workload.kernel.bytes", on
        return 0.0, "$.workload", on
    if isinstance(wl, TransfersWorkload):
        ids = {g.id for g in gpus}
        worst = max(range(len(wl.transfers)), key=lambda i: wl.transfers[i].bytes)
        t = wl.transfers[worst]
        return (
            float(t.bytes),
            f"$.workload.transfers[{worst}].bytes",
            [d for d in (t.src, t.dst) if d in ids],
        )
    if isinstance(wl, MoELayerWorkload):
        on = wl.gpus or [g.id for g in gpus]
        per_gpu_experts = math.ceil(wl.experts / max(len(on), 1))
        dtype_B = storage_bytes(wl.strategy.dtype)
        weights = per_gpu_experts * 2.0 * wl.hidden * wl.intermediate * dtype_B
        # tokens in, dispatched copies out and back, the expert intermediate
        acts = float(wl.tokens_per_gpu) * wl.top_k * (3 * wl.hidden + wl.intermediate) * dtype_B
        where = "$.workload.tokens_per_gpu" if acts > weights else "$.workload"
        return weights + acts, where, on
    return 0.0, "$.workload", []


def check_device_memory(scenario: ResolvedScenario, file: str | Path | None) -> None:
    """Refuse a scenario whose working set cannot fit the memory of the GPU that must hold it
    (a physical impossibility, not a limit: no option raises it)."""
    need, where, on = device_working_set(scenario)
    devices = [d for d in scenario.topology.gpus() if d.id in set(on)]
    if need <= 0 or not devices:
        return
    smallest: GPUDevice = min(devices, key=lambda d: d.model.hbm_capacity_GB)
    capacity = smallest.model.hbm_capacity_GB * 1e9
    if need > capacity:
        raise SpecError(
            file,
            where,
            f"needs about {need / 1e9:.3g} GB of device memory on {smallest.id}, more than its "
            f"{smallest.model.hbm_capacity_GB:g} GB ({smallest.model.name})",
        )


def check_limits(scenario: ResolvedScenario, file: str | Path | None, limits: Limits) -> None:
    """Refuse ``scenario`` (a SpecError naming ``file``) when it cannot fit its GPUs' memory
    or its estimate exceeds ``limits``."""
    check_device_memory(scenario, file)
    work = estimate(scenario)
    if work.events > limits.max_events:
        raise SpecError(
            file,
            work.driver,
            f"too big to simulate: about {work.events:.2g} events, over the limit of "
            f"{limits.max_events:.2g} (raise it with --max-events)",
        )
    memory_GB = work.memory_B / 1e9
    if memory_GB > limits.max_memory_GB:
        raise SpecError(
            file,
            work.driver,
            f"too big to simulate: about {memory_GB:.3g} GB of host memory, over the limit of "
            f"{limits.max_memory_GB:g} GB (raise it with --max-memory-GB)",
        )


def check_point_count(count: int, file: str | Path, limits: Limits) -> None:
    """Refuse a sweep of more than ``limits.max_points`` points (counted, not expanded)."""
    if count > limits.max_points:
        raise SpecError(
            file,
            "$.axes",
            f"too many points: {count:.3g}, over the limit of {limits.max_points} "
            "(raise it with --max-points)",
        )
