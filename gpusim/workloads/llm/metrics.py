"""SKIP's trace metrics from the launch records of one rank (skip_tklqt.md section 2), and the
CPU-bound / GPU-bound classification (``docs/llm_inference.md``).

Per kernel j (every launch but host copies; a collective's NCCL kernel counts): t_lj = kernel
start - start of its runtime call (a graph node: of its ``cudaGraphLaunch``). TKLQT = sum t_lj;
AKD = mean kernel duration; inference latency = end of the last GPU operation, from the run's
start (host time 0, where the first framework op begins); GPU idle = latency - sum of kernel
durations. ``tklqt_no_queue_s`` is what TKLQT would be if no kernel waited behind earlier GPU
work: per kernel the launch path alone, (runtime call end - its start) + doorbell (+ i x the
graph's per-node cost for node i); ``queueing_s`` is the rest.

CPU-bound or GPU-bound (:func:`cpu_bound`): a run is CPU-bound when its host spends longer
issuing work than its GPU spends running kernels, the coarse closed form F = max(C, N g) of
skip_tklqt.md section 8 (SimLLM's ``HostInitiationModel``) applied to the totals: C the kernel
time, N g the host's issue time. In the CPU-bound region no queue outlasts the host's issue
interval and TKLQT stays on its plateau; past the transition the GPU's backlog grows with every
launch and TKLQT rises with the batch. The transition batch of a sweep
(:func:`transition_batch`) is the smallest batch from which every larger one is GPU-bound.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Final

from gpusim.execution.host_costs import RuntimeCall
from gpusim.execution.launch import LaunchTimes
from gpusim.execution.runtime import LaunchRecord
from gpusim.kernels.names import SPLITK_REDUCTION_NAME, SPMM_KERNEL_PREFIX

TOP_K: Final = 5
"""Kernels in the top-k share (``top5_kernel_fraction``)."""
TIME_SPLIT: Final = (
    "matmul_time_s",
    "attention_time_s",
    "communication_time_s",
    "other_kernel_time_s",
)
SPMM_KERNELS: Final = (SPMM_KERNEL_PREFIX, SPLITK_REDUCTION_NAME)
"""Name prefixes of the SpMM kernels (gpusim.kernels.names)."""
ATTENTION_KERNELS: Final = ("flash_attn",)


def kernel_records(records: Sequence[LaunchRecord], gpu: str) -> list[LaunchRecord]:
    """The kernels of ``gpu`` (host copies excluded), in launch order."""
    return [r for r in records if r.gpu == gpu and r.call != RuntimeCall.memcpy_async]


def time_split(records: Sequence[LaunchRecord], gpu: str) -> dict[str, float]:
    """GPU time of ``gpu``'s kernels by what they do (Flash-LLM's breakdown of GPU-seconds):
    ``matmul_time_s`` (cuBLAS GEMMs and SpMM kernels), ``attention_time_s`` (the attention
    kernels), ``communication_time_s`` (NCCL collectives) and ``other_kernel_time_s``."""
    split = dict.fromkeys(TIME_SPLIT, 0.0)
    for r in kernel_records(records, gpu):
        split[_split_of(r)] += r.kernel_end_s - r.kernel_start_s
    return split


def _split_of(r: LaunchRecord) -> str:
    if r.call == RuntimeCall.collective:
        return "communication_time_s"
    if r.call == RuntimeCall.cublas or r.name.startswith(SPMM_KERNELS):
        return "matmul_time_s"
    if r.name.startswith(ATTENTION_KERNELS):
        return "attention_time_s"
    return "other_kernel_time_s"


def no_queue_s(records: Sequence[LaunchRecord], times: LaunchTimes) -> list[float]:
    """Per kernel: t_lj had it not waited behind earlier GPU work."""
    out, node, corr = [], 0, -1
    for r in records:
        path = r.runtime_end_s - r.runtime_begin_s + times.doorbell_s
        if r.call == RuntimeCall.graph_launch:
            node = node + 1 if r.correlation == corr else 1
            corr = r.correlation
            path += node * times.graph_per_kernel_s
        out.append(path)
    return out


def skip_metrics(
    records: Sequence[LaunchRecord], gpu: str, times: LaunchTimes
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """SKIP's metrics of ``gpu``'s launches, and the per-kernel series of the first
    ``len(records)`` kernels (launch + queue time and duration)."""
    mine = [r for r in records if r.gpu == gpu]
    kernels = kernel_records(mine, gpu)
    n = len(kernels)
    t_l = [r.kernel_start_s - r.runtime_begin_s for r in kernels]
    dur = [r.kernel_end_s - r.kernel_start_s for r in kernels]
    latency = max((r.kernel_end_s for r in mine), default=0.0)
    busy = sum(dur)
    tklqt = sum(t_l)
    plateau = sum(no_queue_s(kernels, times))
    queueing = tklqt - plateau
    top = sum(heapq.nlargest(TOP_K, dur))
    metrics = {
        "kernels": float(n),
        "tklqt_s": tklqt,
        "tklqt_no_queue_s": plateau,
        "queueing_s": queueing,
        "akd_s": busy / n if n else 0.0,
        "kernel_time_s": busy,
        "inference_latency_s": latency,
        "gpu_idle_s": latency - busy,
        "top5_kernel_fraction": top / busy if busy else 0.0,
    }
    return metrics, {"launch_queue_s": t_l, "kernel_duration_s": dur}


def cpu_bound(host_s: float, kernel_time_s: float) -> float:
    """1.0 when the host's issue time exceeds the GPU's kernel time (CPU-bound), else 0.0."""
    return 1.0 if host_s > kernel_time_s else 0.0


def transition_batch(batches: Sequence[int], cpu_bound: Sequence[float]) -> int | None:
    """The CPU-bound / GPU-bound transition over a batch sweep: the smallest batch from which
    every larger batch is GPU-bound (``cpu_bound`` 0); None if the largest is still CPU-bound."""
    pairs = sorted(zip(batches, cpu_bound, strict=True))
    found: int | None = None
    for b, c in reversed(pairs):
        if c:
            break
        found = b
    return found
