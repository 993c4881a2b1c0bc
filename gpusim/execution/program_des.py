"""The discrete-event interpreter of per-rank programs (:mod:`gpusim.execution.program`).

Each rank's host thread draws its steps one at a time and issues them through the launch model
onto CUDA streams; kernels run on the GPU's SM pool and HBM, exchanges move bytes through the
fluid network and occupy SMs, a sync blocks the host until its copy lands.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, assert_never

import simpy

from gpusim.errors import SimulationError
from gpusim.execution.collectives import AllToAll, all_to_all
from gpusim.execution.launch import LaunchTimes, run_cost
from gpusim.execution.program import (
    Exchange,
    ExchangeStep,
    KernelStep,
    Phases,
    Program,
    RankResult,
    Step,
    SyncStep,
    host_cost_s,
    validate_programs,
)
from gpusim.hardware.fabric import Route
from gpusim.hardware.gpu import GPURuntime, StreamOp
from gpusim.hardware.host import HostThread
from gpusim.hardware.node import Node
from gpusim.kernels.collectives import NcclCosts
from gpusim.kernels.cost import KernelCost

Process = Generator[simpy.Event, Any, None]


class _OneSided:
    """Device-initiated copies for one :class:`Exchange` across all ranks."""

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
    def run() -> Process:
        return gpu.copy(route.resources, route.latency_s, size_B, "d2h")

    return run


def _kernel_op(gpu: GPURuntime, cost: KernelCost) -> StreamOp:
    def run() -> Process:
        return run_cost(gpu, cost)

    return run


@dataclass
class _Rank:
    """One rank while it runs: its GPU, host thread, result and its steps' completion events."""

    index: int
    gpu: GPURuntime
    thread: HostThread
    result: RankResult
    done: list[simpy.Event] = field(default_factory=list)
    finished: bool = False


class ProgramDES:
    """Runs one program per rank on a built node, each from its rank's own host thread."""

    def __init__(self, node: Node, ranks: Sequence[str], phases: Phases) -> None:
        """An interpreter for ``ranks`` (GPU ids, rank order) with the family's ``phases``."""
        self.node = node
        self.env = node.sim.env
        self.ranks = list(ranks)
        self.phases = phases
        self.times = LaunchTimes.from_profile(node.profile)
        nccl = NcclCosts.from_profile(node.profile)
        self.nccl_sms, self.nccl_setup_s = nccl.sms, nccl.setup_s
        self.nccl_host_call_s = nccl.host_call_s
        self._collectives: dict[int, AllToAll] = {}  # id(Exchange) -> its all-to-all
        self._one_sided: dict[int, _OneSided] = {}  # id(Exchange) -> its copies

    def run(self, programs: Sequence[Program]) -> list[RankResult]:
        """Run every rank's program to the end; returns per-rank results."""
        check, steps = validate_programs(self.ranks, programs, self.phases)
        ranks = []
        for r, gpu_id in enumerate(self.ranks):
            thread = self.node.host_thread(self.node.host_of[gpu_id], f"rank {gpu_id}")
            rank = _Rank(r, self.node.gpus[gpu_id], thread, RankResult.zeroed(self.phases))
            ranks.append(rank)
        for rank in ranks:
            self.env.process(self._rank(rank, steps[rank.index]))
        self.node.sim.run()
        check.finish()
        for rank in ranks:
            if not rank.finished:
                raise SimulationError(
                    f"program of rank '{self.ranks[rank.index]}': its streams never drained "
                    f"after {len(rank.done)} steps"
                )
        self.node.finish()
        return [rank.result for rank in ranks]

    def _rank(self, rank: _Rank, steps: Iterator[Step]) -> Process:
        """The rank's host thread: issue every step, then wait for its streams to drain."""
        for step in steps:
            if isinstance(step, KernelStep):
                done = yield from self._kernel(rank, step)
            elif isinstance(step, ExchangeStep):
                done = yield from self._exchange(rank, step)
            elif isinstance(step, SyncStep):
                done = yield from self._sync(rank, step)
            else:
                assert_never(step)
            rank.done.append(done)
        yield self.env.all_of([s.idle() for s in rank.gpu.streams.values()])
        rank.result.end_s = float(self.env.now)
        rank.finished = True

    # -- one handler per step kind: host work, then the stream op; returns its completion ----

    def _kernel(self, rank: _Rank, step: KernelStep) -> Generator[simpy.Event, Any, simpy.Event]:
        stream = rank.gpu.stream(step.stream)
        deps = [rank.done[i] for i in step.after]
        cost = step.cost
        yield from rank.thread.spend(f"launch {cost.name}", host_cost_s(step, self.times))
        op = self._timed(rank, step.phase, _kernel_op(rank.gpu, cost), deps)
        done = stream.submit(cost.name, op, self.times.doorbell_s)
        rank.result.launches += 1
        return done

    def _exchange(
        self, rank: _Rank, step: ExchangeStep
    ) -> Generator[simpy.Event, Any, simpy.Event]:
        stream = rank.gpu.stream(step.stream)
        deps = [rank.done[i] for i in step.after]
        name = step.exchange.name
        host_s = self.nccl_host_call_s if step.exchange.kind == "nccl" else self.times.api_s
        yield from rank.thread.spend(f"launch {name}", host_s)
        op = self._timed(rank, step.phase, partial(self._exchange_op, step.exchange, rank), deps)
        done = stream.submit(name, op, self.times.doorbell_s)
        rank.result.launches += 1
        return done

    def _sync(self, rank: _Rank, step: SyncStep) -> Generator[simpy.Event, Any, simpy.Event]:
        gpu, times = rank.gpu, self.times
        yield from rank.thread.spend("cudaMemcpy D2H", times.api_s)
        gpu_id = self.ranks[rank.index]
        route = self.node.fabric.route(gpu_id, self.node.host_of[gpu_id])
        tails = [s.idle() for s in gpu.streams.values()]
        op = self._timed(rank, step.phase, _copy_op(gpu, route, step.d2h_bytes), tails)
        copy = gpu.stream(0).submit("d2h", op, times.doorbell_s)
        rank.result.launches += 1
        yield from rank.thread.wait("sync", [copy], times.sync_return_s)
        return copy

    # -- on the GPU ----------------------------------------------------------------------

    def _timed(self, rank: _Rank, phase: str, op: StreamOp, deps: list[simpy.Event]) -> StreamOp:
        """``op`` started once ``deps`` fired, its duration added to ``phase``."""
        env, phase_s = self.env, rank.result.phase_s

        def run() -> Process:
            pending = [e for e in deps if not e.processed]
            if pending:
                yield env.all_of(pending)
            t0 = float(env.now)
            yield from op()
            phase_s[phase] += float(env.now) - t0

        return run

    def _exchange_op(self, ex: Exchange, rank: _Rank) -> Process:
        """Rank's part of exchange ``ex`` on its stream."""
        if ex.kind == "nccl":
            yield from self._collective(ex).op(self.ranks[rank.index])()
            return
        one = self._one_sided.get(id(ex))
        if one is None:
            one = self._one_sided[id(ex)] = _OneSided(self.node, self.ranks, ex)
        env, gpu = self.env, rank.gpu
        sms = gpu.rates.sm_count if ex.holds_all_sms else ex.comm_sms
        yield from gpu.occupy_sms(sms)
        start = float(env.now)
        if ex.compute_first and ex.compute_s > 0:
            yield env.timeout(ex.compute_s / ex.chunks)
        yield env.all_of(one.send_from(rank.index) + one.inbound(rank.index))
        if ex.compute_s > 0:
            if ex.compute_first:
                rest = start + ex.compute_s - float(env.now)
            else:
                rest = max(start + ex.compute_s - float(env.now), ex.compute_s / ex.chunks)
            if rest > 0:
                yield env.timeout(rest)
        gpu.vacate_sms(sms)

    def _collective(self, ex: Exchange) -> AllToAll:
        """The NCCL all-to-all of ``ex``, shared by every rank (built on first use)."""
        coll = self._collectives.get(id(ex))
        if coll is None:
            coll = all_to_all(
                self.node,
                self.ranks,
                ex.send_B,
                sms=self.nccl_sms,
                setup_s=self.nccl_setup_s,
                name=ex.name,
            )
            self._collectives[id(ex)] = coll
        return coll


def run_des(
    node: Node, ranks: Sequence[str], programs: Sequence[Program], phases: Phases
) -> list[RankResult]:
    """Run every rank's program on ``node`` from its own host thread; per-rank results.
    ``phases``: the family's phase names (each step's phase is one of them)."""
    return ProgramDES(node, ranks, phases).run(programs)
