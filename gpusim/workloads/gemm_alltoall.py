"""Every participating GPU runs a GEMM, then sends equal shares of its output to every other
participant (an all-to-all issued as one stream operation after the GEMM).

Each rank has its own host thread: launch GEMM, launch all-to-all, synchronise.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from gpusim.execution.launch import LaunchTimes, launch_kernel
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.kernels import kernel_cost
from gpusim.result import Outcome
from gpusim.spec.base import storage_bytes
from gpusim.spec.problems import chosen_gpus
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology
from gpusim.spec.workload import GemmAllToAllWorkload
from gpusim.workloads.common import (
    StaticFlow,
    network_link_bytes,
    static_completion_s,
    static_link_bytes,
)


def participants(topology: Topology, wl: GemmAllToAllWorkload) -> list[str]:
    """GPU ids taking part, in topology order when the workload names none."""
    return chosen_gpus(wl.gpus, topology)


def message_bytes(wl: GemmAllToAllWorkload, n_ranks: int) -> float:
    """Size of one message: the output's share for one peer, split into messages_per_peer."""
    out_B = wl.gemm.m * wl.gemm.n * storage_bytes(wl.gemm.dtype)
    return out_B / n_ranks / wl.messages_per_peer


METRICS = frozenset(
    {
        "makespan_s",
        "gemm_s",
        "alltoall_s",
        "bytes_moved",
        "alltoall_algbw_GBps",
        "kernel_launches",
        "sm_utilisation",
    }
)
"""The metric names both models report (the registry declares them for sweep checks)."""


def _metrics(
    makespan_s: float, gemm_s: float, a2a_s: dict[str, float], moved_B: float, n: int
) -> dict[str, float]:
    slowest = max(a2a_s.values()) if a2a_s else 0.0
    per_rank_B = moved_B / n if n else 0.0
    return {
        "makespan_s": makespan_s,
        "gemm_s": gemm_s,
        "alltoall_s": slowest,
        "bytes_moved": moved_B,
        "alltoall_algbw_GBps": per_rank_B / slowest / 1e9 if slowest > 0 else 0.0,
        "kernel_launches": float(2 * n),
    }


def des(node: Node, wl: GemmAllToAllWorkload, *, seed: int) -> Outcome:
    """Simulate with host launches, SM/HBM-modelled GEMMs and fluid transfers. Nothing is
    drawn at random: ``seed`` is accepted for the family signature and not used."""
    ranks = participants(node.topology, wl)
    times = LaunchTimes.from_profile(node.profile)
    env = node.sim.env
    msg_B = message_bytes(wl, len(ranks))
    a2a_span: dict[str, float] = {}
    gemm_span: dict[str, float] = {}
    finish: dict[str, float] = {}

    def alltoall(src: str) -> Generator[simpy.Event, Any, None]:
        start = float(env.now)
        sends = []
        for dst in ranks:
            if dst == src:
                continue
            route = node.fabric.route(src, dst)
            for _ in range(wl.messages_per_peer):
                sends.append(
                    node.network.transfer(
                        route.resources, msg_B, route.latency_s, label=f"{src}->{dst}"
                    )
                )
        if sends:
            yield env.all_of(sends)
        a2a_span[src] = float(env.now) - start

    def rank(gpu_id: str) -> Generator[simpy.Event, Any, None]:
        gpu = node.gpus[gpu_id]
        thread = node.host_thread(node.host_of[gpu_id], f"rank {gpu_id}")
        stream = gpu.stream(0)
        cost = kernel_cost(wl.gemm, gpu.rates)
        gemm_span[gpu_id] = cost.time_s
        yield from launch_kernel(thread, stream, cost, times)
        yield from thread.spend("launch alltoall", times.api_s)
        done = stream.submit("alltoall", lambda: alltoall(gpu_id), times.doorbell_s)
        yield from thread.wait("cudaStreamSynchronize", [done], times.sync_return_s)
        finish[gpu_id] = float(env.now)

    for gid in ranks:
        env.process(rank(gid))
    makespan = node.sim.run()
    node.finish()
    link_bytes = network_link_bytes(node)
    moved = msg_B * wl.messages_per_peer * len(ranks) * (len(ranks) - 1)
    metrics = _metrics(makespan, max(gemm_span.values()), a2a_span, moved, len(ranks))
    busy = sum(node.gpus[g].busy_sm_s for g in ranks)
    metrics["sm_utilisation"] = busy / sum(node.gpus[g].rates.sm_count * makespan for g in ranks)
    per_gpu = {
        g: {"gemm_s": gemm_span[g], "alltoall_s": a2a_span.get(g, 0.0), "finish_s": finish[g]}
        for g in ranks
    }
    return Outcome(makespan_s=makespan, metrics=metrics, per_gpu=per_gpu, link_bytes=link_bytes)


def analytic(
    topology: Topology, profile: CalibrationProfile, wl: GemmAllToAllWorkload, *, seed: int
) -> Outcome:
    """Closed form: launch recurrence per rank, then every message at its static max-min rate
    (``seed`` not used)."""
    ranks = participants(topology, wl)
    platform = Platform.of(topology, profile)
    fabric = platform.fabric
    times = LaunchTimes.from_profile(profile)
    msg_B = message_bytes(wl, len(ranks))
    flows: list[StaticFlow] = []
    owner: list[str] = []
    a2a_start: dict[str, float] = {}
    gemm_s: dict[str, float] = {}
    sm_busy = 0.0
    for g in ranks:
        rates = platform.gpu_rates(g)
        cost = kernel_cost(wl.gemm, rates)
        gemm_s[g] = cost.time_s
        sm_busy += cost.time_s * cost.sms
        gemm_end = times.api_s + times.doorbell_s + cost.time_s
        a2a_start[g] = max(2 * times.api_s + times.doorbell_s, gemm_end)
        for dst in ranks:
            if dst != g:
                route = fabric.route(g, dst)
                for _ in range(wl.messages_per_peer):
                    flows.append(StaticFlow(route, msg_B, a2a_start[g]))
                    owner.append(g)
    done = static_completion_s(platform, flows)
    sent_end = {g: a2a_start[g] for g in ranks}
    for g, t in zip(owner, done, strict=True):
        sent_end[g] = max(sent_end[g], t)
    finish = {g: sent_end[g] + times.sync_return_s for g in ranks}
    makespan = max(finish.values())
    a2a_span = {g: sent_end[g] - a2a_start[g] for g in ranks}
    moved = msg_B * len(flows)
    metrics = _metrics(makespan, max(gemm_s.values()), a2a_span, moved, len(ranks))
    total_sms = sum(platform.gpu_rates(g).sm_count for g in ranks)
    metrics["sm_utilisation"] = sm_busy / (total_sms * makespan)
    per_gpu = {
        g: {"gemm_s": gemm_s[g], "alltoall_s": a2a_span[g], "finish_s": finish[g]} for g in ranks
    }
    return Outcome(
        makespan_s=makespan,
        metrics=metrics,
        per_gpu=per_gpu,
        link_bytes=static_link_bytes(fabric, flows),
    )
