"""Host-driven MoE layers as per-rank programs, run by the DES or evaluated in closed form.

A strategy (Megatron, FasterMoE, COMET, DeepEP) writes, for every rank, the same sequence of
steps: kernels (a PyTorch operator: framework cost + launch on a stream), exchanges between
ranks (an NCCL collective, or device-initiated one-sided copies, optionally fused with a GEMM),
and host synchronisations (a device-to-host copy the host waits for). Both fidelities interpret
the same steps, so they differ only where contention or timing skew matters:

- ``run_des`` issues the steps from each rank's host thread through the launch model onto CUDA
  streams; exchanges move bytes through the fluid network and occupy SMs.
- ``run_analytic`` walks all ranks step by step: a kernel starts at max(host issue + doorbell,
  its stream's tail, its dependencies), or later if the SMs it needs are not free then (kernels
  on other streams and collectives hold theirs), and lasts its modelled time; an exchange
  starts when the last participant enters and lasts its closed form; a sync returns after the
  streams drain.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
import simpy

from gpusim.engine.maxmin import max_min_fair_rates
from gpusim.execution.collectives import all_to_all
from gpusim.execution.launch import LaunchTimes, run_cost
from gpusim.hardware.fabric import Fabric, Route
from gpusim.hardware.gpu import GPURuntime, Stream, StreamOp
from gpusim.hardware.host import HostThread
from gpusim.hardware.node import Node
from gpusim.kernels.collectives import NcclCosts, all_to_all_time_s
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.memcpy import memcpy_time_s
from gpusim.spec.profile import CalibrationProfile

Phase = Literal["gate", "dispatch", "gemm", "combine"]
PHASES: tuple[Phase, ...] = ("gate", "dispatch", "gemm", "combine")


@dataclass(frozen=True)
class KernelStep:
    """One kernel launch; by default a PyTorch operator launching one kernel."""

    cost: KernelCost
    phase: Phase
    stream: int = 0
    after: tuple[int, ...] = ()
    """Indices of earlier steps of this rank the kernel waits for (cudaStreamWaitEvent)."""
    new_op: bool = True
    """The kernel starts a framework operator (pays the framework's per-op cost); False for
    the further kernels of one operator, such as a library's per-expert GEMM loop."""


@dataclass(frozen=True)
class Exchange:
    """Bytes every rank sends every other rank in one step: ``send_B[i][j]`` from rank i to j.

    ``kind`` "nccl": a bulk-synchronous NCCL all-to-all (send/recv pairs start when both ranks
    have entered; setup cost; NCCL's SMs). "onesided": device-initiated copies (DeepEP, COMET)
    that start as soon as the sender enters, on ``comm_sms`` SMs. ``compute_s``/``chunks``: a
    GEMM fused into the same kernel (COMET) on the SMs left over, pipelined over ``chunks``
    chunks of the data: it ends at max(start + compute, data arrival + compute / chunks).
    """

    name: str
    send_B: np.ndarray
    kind: Literal["nccl", "onesided"]
    comm_sms: int
    compute_s: float = 0.0
    chunks: int = 1
    compute_first: bool = False
    """Fused compute produces the data (GEMM1 then combine): sending starts after the first
    chunk is computed, and the step ends at max(compute, compute / chunks + transfer)."""
    holds_all_sms: bool = False


@dataclass(frozen=True)
class ExchangeStep:
    """This rank's part of an :class:`Exchange`."""

    exchange: Exchange
    phase: Phase
    stream: int = 0
    after: tuple[int, ...] = ()


@dataclass(frozen=True)
class SyncStep:
    """A device-to-host copy of ``d2h_bytes`` that the host waits for (``.cpu()`` / ``.item()``):
    the host cannot run ahead of the GPU past this point."""

    d2h_bytes: int
    phase: Phase


Step = KernelStep | ExchangeStep | SyncStep


@dataclass
class RankResult:
    """What one rank's program did."""

    end_s: float = 0.0
    launches: int = 0
    busy_sm_s: float = 0.0
    phase_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))


def _host_cost_s(step: Step, times: LaunchTimes) -> float:
    if isinstance(step, KernelStep) and step.new_op:
        return times.framework_op_s + times.api_s
    return times.api_s


# -- DES -------------------------------------------------------------------------------------


class _OneSided:
    """Device-initiated copies for one :class:`Exchange` across all ranks (DES)."""

    def __init__(self, node: Node, ranks: Sequence[str], exchange: Exchange) -> None:
        self.node, self.ranks, self.exchange = node, list(ranks), exchange
        env = node.sim.env
        self.sent = {(i, j): env.event() for i in range(len(ranks)) for j in range(len(ranks))}

    def send_from(self, i: int) -> list[simpy.Event]:
        """Start rank i's copies; returns their completion events."""
        events = []
        for j, dst in enumerate(self.ranks):
            size = float(self.exchange.send_B[i][j])
            placeholder = self.sent[(i, j)]
            if i == j or size <= 0:
                placeholder.succeed()
                continue
            route = self.node.fabric.route(self.ranks[i], dst)
            done = self.node.network.transfer(
                route.resources, size, route.latency_s, label=f"{self.exchange.name} {i}->{j}"
            )
            done.callbacks.append(partial(_relay, placeholder))
            events.append(placeholder)
        return events

    def inbound(self, j: int) -> list[simpy.Event]:
        """Events of every copy into rank j."""
        return [self.sent[(i, j)] for i in range(len(self.ranks))]


def _relay(target: simpy.Event, _source: simpy.Event) -> None:
    target.succeed()


def _copy_op(gpu: GPURuntime, route: Route, size_B: float) -> StreamOp:
    def run() -> Generator[simpy.Event, Any, None]:
        return gpu.copy(route.resources, route.latency_s, size_B, "d2h")

    return run


def _kernel_op(gpu: GPURuntime, cost: KernelCost) -> StreamOp:
    def run() -> Generator[simpy.Event, Any, None]:
        return run_cost(gpu, cost)

    return run


def run_des(
    node: Node, ranks: Sequence[str], programs: Sequence[Sequence[Step]]
) -> list[RankResult]:
    """Run every rank's program from its own host thread; returns per-rank results."""
    env = node.sim.env
    times = LaunchTimes.from_profile(node.profile)
    nccl = NcclCosts.from_profile(node.profile)
    nccl_sms, nccl_setup_s = nccl.sms, nccl.setup_s
    results = [RankResult() for _ in ranks]
    shared: dict[int, Any] = {}  # id(Exchange) -> its DES object, built on first use

    def exchange_op(
        step: ExchangeStep, r: int, gpu: GPURuntime
    ) -> Generator[simpy.Event, Any, None]:
        ex = step.exchange
        if ex.kind == "nccl":
            coll = shared.get(id(ex))
            if coll is None:
                coll = all_to_all(
                    node, list(ranks), ex.send_B, sms=nccl_sms, setup_s=nccl_setup_s, name=ex.name
                )
                shared[id(ex)] = coll
            yield from coll.op(ranks[r])()
            return
        one = shared.get(id(ex))
        if one is None:
            one = shared[id(ex)] = _OneSided(node, ranks, ex)
        sms = gpu.rates.sm_count if ex.holds_all_sms else ex.comm_sms
        yield from gpu.occupy_sms(sms)
        start = float(env.now)
        if ex.compute_first and ex.compute_s > 0:
            yield env.timeout(ex.compute_s / ex.chunks)
        yield env.all_of(one.send_from(r) + one.inbound(r))
        if ex.compute_s > 0:
            if ex.compute_first:
                rest = start + ex.compute_s - float(env.now)
            else:
                rest = max(start + ex.compute_s - float(env.now), ex.compute_s / ex.chunks)
            if rest > 0:
                yield env.timeout(rest)
        gpu.vacate_sms(sms)

    def rank_proc(r: int) -> Generator[simpy.Event, Any, None]:
        gpu = node.gpus[ranks[r]]
        thread: HostThread = node.host_thread(node.host_of[ranks[r]], f"rank {ranks[r]}")
        done: list[simpy.Event] = []
        res = results[r]

        def timed(
            phase: Phase,
            op: Callable[[], Generator[simpy.Event, Any, None]],
            deps: list[simpy.Event],
        ) -> Callable[[], Generator[simpy.Event, Any, None]]:
            def run() -> Generator[simpy.Event, Any, None]:
                pending = [e for e in deps if not e.processed]
                if pending:
                    yield env.all_of(pending)
                t0 = float(env.now)
                yield from op()
                res.phase_s[phase] += float(env.now) - t0

            return run

        for step in programs[r]:
            if isinstance(step, SyncStep):
                yield from thread.spend("cudaMemcpy D2H", times.api_s)
                route = node.fabric.route(ranks[r], node.host_of[ranks[r]])
                tails = [s.idle() for s in gpu.streams.values()]
                copy = gpu.stream(0).submit(
                    "d2h",
                    timed(step.phase, _copy_op(gpu, route, step.d2h_bytes), tails),
                    times.doorbell_s,
                )
                res.launches += 1
                yield from thread.wait("sync", [copy], times.sync_return_s)
                done.append(copy)
                continue
            stream: Stream = gpu.stream(step.stream)
            deps = [done[i] for i in step.after]
            if isinstance(step, KernelStep):
                yield from thread.spend(f"launch {step.cost.name}", _host_cost_s(step, times))
                cost = step.cost
                ev = stream.submit(
                    cost.name, timed(step.phase, _kernel_op(gpu, cost), deps), times.doorbell_s
                )
            else:
                host_s = nccl.host_call_s if step.exchange.kind == "nccl" else times.api_s
                yield from thread.spend(f"launch {step.exchange.name}", host_s)
                ev = stream.submit(
                    step.exchange.name,
                    timed(step.phase, partial(exchange_op, step, r, gpu), deps),
                    times.doorbell_s,
                )
            res.launches += 1
            done.append(ev)
        yield env.all_of([s.idle() for s in gpu.streams.values()])
        res.end_s = float(env.now)

    for r in range(len(ranks)):
        env.process(rank_proc(r))
    node.sim.run()
    node.finish()
    return results


# -- closed form -----------------------------------------------------------------------------


def _exchange_time_s(fabric: Fabric, ranks: Sequence[str], ex: Exchange, setup_s: float) -> float:
    if ex.kind == "nccl":
        return all_to_all_time_s(fabric, list(ranks), ex.send_B, setup_s)
    routes, sizes = [], []
    for i, src in enumerate(ranks):
        for j, dst in enumerate(ranks):
            if i != j and ex.send_B[i][j] > 0:
                routes.append(fabric.route(src, dst))
                sizes.append(float(ex.send_B[i][j]))
    comm = 0.0
    if routes:
        rates = max_min_fair_rates(
            [r.resources for r in routes],
            [1] * len(routes),
            [float("inf")] * len(routes),
            fabric.capacities_Bps,
        )
        comm = max(r.latency_s + s / v for r, s, v in zip(routes, sizes, rates, strict=True))
    if ex.compute_s > 0:
        return max(ex.compute_s, comm + ex.compute_s / ex.chunks)
    return comm


def _first_fit_s(
    held: Sequence[tuple[float, float, int]],
    ready_s: float,
    duration_s: float,
    sms: int,
    total: int,
) -> float:
    """The earliest start at or after ``ready_s`` at which ``sms`` SMs stay free for
    ``duration_s`` beside the intervals already ``held`` (start, end, SMs): kernels on different
    streams overlap only as far as the GPU's SMs allow, as the DES's SM pool lets them."""
    candidates = sorted({ready_s, *(end for _, end, _ in held if end > ready_s)})
    for at in candidates:
        window_end = at + duration_s
        points = [at, *(s for s, _, _ in held if at < s < window_end)]
        busiest = max(sum(k for s, e, k in held if s <= p < e) for p in points)
        if busiest + sms <= total:
            return at
    return candidates[-1]


def run_analytic(
    fabric: Fabric,
    profile: CalibrationProfile,
    ranks: Sequence[str],
    programs: Sequence[Sequence[Step]],
) -> list[RankResult]:
    """Evaluate every rank's program in closed form. Ranks run independently between exchanges;
    at an exchange every rank must have arrived at the same one, which starts when the last
    participant enters."""
    times = LaunchTimes.from_profile(profile)
    nccl = NcclCosts.from_profile(profile)
    setup_s, nccl_sms = nccl.setup_s, nccl.sms
    sm_count = next(g.model.sm_count for g in fabric.topology.gpus() if g.id == ranks[0])
    n = len(ranks)
    host_cpu = {g.id: g.host for g in fabric.topology.gpus()}
    results = [RankResult() for _ in ranks]
    host = [0.0] * n
    tails: list[dict[int, float]] = [{} for _ in ranks]
    ends: list[list[float]] = [[] for _ in ranks]
    held: list[list[tuple[float, float, int]]] = [[] for _ in ranks]
    """Per rank: (start, end, SMs) of the kernels and collectives that may still hold SMs."""
    pos = [0] * n

    def local_step(r: int, step: KernelStep | SyncStep) -> None:
        res = results[r]
        res.launches += 1
        if isinstance(step, SyncStep):
            host[r] += times.api_s
            route = fabric.route(ranks[r], host_cpu[ranks[r]])
            copy_s = memcpy_time_s(step.d2h_bytes, route.bottleneck_Bps, route.latency_s)
            start = max([host[r] + times.doorbell_s, *tails[r].values()])
            end = start + copy_s
            res.phase_s[step.phase] += copy_s
            tails[r][0] = end
            host[r] = end + times.sync_return_s
        else:
            host[r] += _host_cost_s(step, times)
            deps = [ends[r][i] for i in step.after]
            ready = max([host[r] + times.doorbell_s, tails[r].get(step.stream, 0.0), *deps])
            held[r] = [iv for iv in held[r] if iv[1] > host[r]]  # finished before any new start
            start = _first_fit_s(held[r], ready, step.cost.time_s, step.cost.sms, sm_count)
            end = start + step.cost.time_s
            held[r].append((start, end, step.cost.sms))
            res.phase_s[step.phase] += step.cost.time_s
            res.busy_sm_s += step.cost.time_s * step.cost.sms
            tails[r][step.stream] = end
        ends[r].append(end)

    while True:
        for r in range(n):
            while pos[r] < len(programs[r]):
                step = programs[r][pos[r]]
                if isinstance(step, ExchangeStep):
                    break
                local_step(r, step)
                pos[r] += 1
        if all(pos[r] == len(programs[r]) for r in range(n)):
            break
        steps: list[ExchangeStep] = []
        for r in range(n):
            at = programs[r][pos[r]] if pos[r] < len(programs[r]) else None
            if not isinstance(at, ExchangeStep):
                raise TypeError("every rank must reach the same exchanges in the same order")
            steps.append(at)
        if len({id(s.exchange) for s in steps}) != 1:
            raise TypeError("every rank must reach the same exchanges in the same order")
        entry = []
        for r, step in enumerate(steps):
            host[r] += nccl.host_call_s if step.exchange.kind == "nccl" else times.api_s
            deps = [ends[r][i] for i in step.after]
            entry.append(max([host[r] + times.doorbell_s, tails[r].get(step.stream, 0.0), *deps]))
        ex = steps[0].exchange
        end = max(entry) + _exchange_time_s(fabric, ranks, ex, setup_s)
        sms = nccl_sms if ex.kind == "nccl" else (sm_count if ex.holds_all_sms else ex.comm_sms)
        for r, step in enumerate(steps):
            results[r].phase_s[step.phase] += end - entry[r]
            results[r].busy_sm_s += (end - entry[r]) * sms
            results[r].launches += 1
            tails[r][step.stream] = end
            ends[r].append(end)
            held[r].append((entry[r], end, sms))
            pos[r] += 1
    for r in range(n):
        results[r].end_s = max(tails[r].values(), default=0.0)
    return results
