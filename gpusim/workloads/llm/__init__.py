"""LLM inference on host-driven GPUs (SKIP): prefill and decode of a zoo model as eager PyTorch,
a C++ engine, CUDA graphs or fused kernels issue it; TKLQT and the CPU-bound / GPU-bound
classification. ``des``/``analytic`` run an ``llm_inference`` workload (docs/llm_inference.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from gpusim.errors import SimulationError
from gpusim.execution.launch import LaunchTimes
from gpusim.execution.program import RankResult
from gpusim.execution.program_analytic import ProgramAnalytic
from gpusim.execution.program_des import ProgramDES
from gpusim.execution.runtime import LaunchRecord
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import GPURates
from gpusim.kernels.collectives import NcclCosts
from gpusim.kernels.tiled_csl import encode_counts
from gpusim.result import Outcome
from gpusim.spec.base import storage_bytes
from gpusim.spec.llm import LlmInferenceWorkload
from gpusim.spec.model_zoo import linear_shapes
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.scenario import Fidelity
from gpusim.spec.topology import Topology
from gpusim.units import GB_to_B
from gpusim.workloads.llm.metrics import TIME_SPLIT, cpu_bound, skip_metrics, time_split
from gpusim.workloads.llm.program import PHASES, Programs

BASE_METRICS = frozenset(
    {
        "kernels",
        "tklqt_s",
        "tklqt_no_queue_s",
        "queueing_s",
        "akd_s",
        "kernel_time_s",
        "inference_latency_s",
        "gpu_idle_s",
        "top5_kernel_fraction",
        "cpu_bound",
        "weights_B",
        "kv_cache_B",
        "hbm_required_B",
        "hbm_used_fraction",
        "fused_chains",
        "fused_launches_removed",
        *TIME_SPLIT,
    }
)
"""What every run reports (both fidelities)."""
PREFILL_METRICS = frozenset({"prefill_latency_s", "prefill_tokens_per_s"})
DECODE_METRICS = frozenset({"decode_latency_s", "decode_tokens_per_s", "per_gpu_tokens_per_s"})


def metric_names(
    wl: LlmInferenceWorkload, topology: Topology, fidelity: Fidelity
) -> frozenset[str]:
    """The shared metrics, plus the prefill's and the decode's for the phases simulated."""
    names = BASE_METRICS
    if wl.phase != "decode":
        names |= PREFILL_METRICS
    if wl.phase != "prefill":
        names |= DECODE_METRICS
    return names


def weights_bytes(wl: LlmInferenceWorkload) -> float:
    """Weight bytes per rank: the layers split over the tensor-parallel ranks, the embeddings
    replicated, an untied LM head split by vocabulary. With Tiled-CSL weights, each layer's
    linear weights are their encodings (:mod:`gpusim.kernels.tiled_csl`) instead."""
    m, tp = wl.model, wl.tensor_parallel
    emb = m.vocab * m.hidden + m.token_types * m.hidden
    if m.positional == "learned":
        emb += m.max_positions * m.hidden
    head = 0 if m.tied_embeddings or m.architecture == "encoder" else m.vocab * m.hidden
    layers = m.parameters() - emb - head
    dense_B = (layers / tp + emb + head / tp) * storage_bytes(wl.dtype)
    w = wl.weights
    if w.format == "dense":
        return dense_B
    shapes = linear_shapes(m, tp, fused_qkv=wl.fuses_qkv)
    linear_B = sum(n * k for n, k in shapes) * storage_bytes(wl.dtype)
    encoded_B = sum(encode_counts(n, k, w.sparsity, w.pattern).storage_bytes for n, k in shapes)
    return dense_B + m.layers * (encoded_B - linear_B)


def kv_cache_bytes(wl: LlmInferenceWorkload, context_tokens: int) -> float:
    """KV cache per rank holding ``context_tokens`` per sequence: 2 (K and V) x layers x KV heads
    per rank x head size x batch x tokens x element size (decoders; an encoder keeps none)."""
    m = wl.model
    if m.architecture == "encoder":
        return 0.0
    per_token = 2 * m.layers * (m.kv_heads // wl.tensor_parallel) * m.head_size
    return float(per_token * wl.batch * context_tokens * storage_bytes(wl.dtype))


def final_context(wl: LlmInferenceWorkload) -> int:
    """Tokens per sequence in the KV cache when the run ends."""
    return wl.prompt_tokens + (0 if wl.phase == "prefill" else wl.generated_tokens)


def memory_metrics(wl: LlmInferenceWorkload, rates: GPURates) -> dict[str, float]:
    """Weights, final KV cache and their sum against the GPU's HBM capacity. A model that does
    not fit is a :class:`SimulationError` (one line: what it needs, what the GPU has)."""
    weights = weights_bytes(wl)
    kv = kv_cache_bytes(wl, final_context(wl))
    need = weights + kv
    capacity = GB_to_B(rates.spec.hbm_capacity_GB)
    if need > capacity:
        raise SimulationError(
            f"model '{wl.model.name}' does not fit: it needs {need / 1e9:.1f} GB of HBM per GPU "
            f"(weights {weights / 1e9:.1f} GB + KV cache {kv / 1e9:.1f} GB at "
            f"{final_context(wl)} tokens x batch {wl.batch}), GPU '{rates.spec.name}' has "
            f"{rates.spec.hbm_capacity_GB:g} GB"
        )
    return {
        "weights_B": weights,
        "kv_cache_B": kv,
        "hbm_required_B": need,
        "hbm_used_fraction": need / capacity,
    }


def _outcome(
    wl: LlmInferenceWorkload,
    ranks: Sequence[str],
    programs: Programs,
    results: list[RankResult],
    records: Sequence[LaunchRecord],
    times: LaunchTimes,
    memory: dict[str, float],
) -> Outcome:
    """The run's outcome; ``records`` must hold the lead rank's (``ranks[0]``) launches, the
    only ones read (other ranks' may be there or not)."""
    lead = ranks[0]
    metrics, _ = skip_metrics(records, lead, times)
    mine = [r for r in records if r.gpu == lead]
    _, series = skip_metrics(mine[: programs.first_pass_launches], lead, times)
    metrics["cpu_bound"] = cpu_bound(results[0].host_s, metrics["kernel_time_s"])
    metrics |= memory
    metrics |= time_split(records, lead)
    metrics["fused_chains"] = float(len(programs.chains))
    metrics["fused_launches_removed"] = float(programs.fused_removed)
    latency = metrics["inference_latency_s"]
    if wl.phase != "decode":
        prefill_end = max(r.kernel_end_s for r in mine[: programs.prefill_launches])
        metrics["prefill_latency_s"] = prefill_end
        metrics["prefill_tokens_per_s"] = wl.batch * wl.prompt_tokens / prefill_end
    else:
        prefill_end = 0.0
    if wl.phase != "prefill":
        decode = latency - prefill_end
        metrics["decode_latency_s"] = decode
        metrics["decode_tokens_per_s"] = wl.batch * wl.generated_tokens / decode
        # Flash-LLM's tokens per GPU-second, over the decode steps (its 64-token prompts'
        # prefill is about 1 % of a 512-token generation)
        metrics["per_gpu_tokens_per_s"] = metrics["decode_tokens_per_s"] / len(ranks)
    per_gpu = {}
    for gpu, res in zip(ranks, results, strict=True):
        row = {f"{p}_s": res.phase_s[p] for p in PHASES}
        row["host_s"] = res.host_s
        row["sync_wait_s"] = res.sync_wait_s
        row["collective_s"] = res.exchange_s
        row["finish_s"] = res.end_s
        per_gpu[gpu] = row
    makespan = max(r.end_s for r in results)
    return Outcome(makespan_s=makespan, metrics=metrics, per_gpu=per_gpu, series=series)


def des(node: Node, wl: LlmInferenceWorkload, *, seed: int) -> Outcome:
    """Simulate the run with the discrete-event engine (no randomness: ``seed`` unused)."""
    ranks = wl.ranks(node.topology)
    rates = node.platform.rates_of(ranks)
    memory = memory_metrics(wl, rates[0])
    nccl_sms = NcclCosts.from_profile(node.profile).sms
    programs = Programs(wl, rates[0], len(ranks), nccl_sms)
    interpreter = ProgramDES(node, ranks, PHASES, solo=True)  # one stream, no `after`
    results = interpreter.run([programs.program(r) for r in range(len(ranks))])
    times = interpreter.times
    return _outcome(wl, ranks, programs, results, interpreter.log.records, times, memory)


def analytic(
    topology: Topology, profile: CalibrationProfile, wl: LlmInferenceWorkload, *, seed: int
) -> Outcome:
    """Evaluate the run in closed form (the launch recurrence of docs/host_runtime.md)."""
    platform = Platform.of(topology, profile)
    ranks = wl.ranks(topology)
    rates = platform.rates_of(ranks)
    memory = memory_metrics(wl, rates[0])
    nccl_sms = NcclCosts.from_profile(profile).sms
    programs = Programs(wl, rates[0], len(ranks), nccl_sms)
    # the outcome reads the lead rank's launches only (_outcome): the others' are not kept
    interpreter = ProgramAnalytic(platform, ranks, PHASES, logged_gpus=ranks[:1])
    results = interpreter.run([programs.program(r) for r in range(len(ranks))])
    times = interpreter.times
    return _outcome(wl, ranks, programs, results, interpreter.log.records, times, memory)


__all__ = [
    "BASE_METRICS",
    "DECODE_METRICS",
    "PREFILL_METRICS",
    "analytic",
    "des",
    "kv_cache_bytes",
    "memory_metrics",
    "metric_names",
    "weights_bytes",
]
