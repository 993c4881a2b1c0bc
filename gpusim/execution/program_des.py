"""The discrete-event interpreter of per-rank programs (:mod:`gpusim.execution.program`).

Each rank's host thread draws its steps one at a time and issues them through the launch model
onto CUDA streams; kernels run on the GPU's SM pool and HBM, exchanges move bytes through the
fluid network and occupy SMs, a sync blocks the host until its copy lands (or its stream, or
the device, drains) and the return latency has passed.

Host costs are :func:`gpusim.execution.program.host_cost_s` (HostCosts by op kind and runtime
call), spent as one host slice per step. A launch blocks while its stream holds
``host.launch_queue_depth`` unfinished operations (``enter_queue``, as
:class:`gpusim.execution.runtime.HostRuntime` does). Every launch leaves a
:class:`~gpusim.execution.runtime.LaunchRecord` in :attr:`ProgramDES.log` (framework op,
runtime call and kernel timestamps, correlation ids) and, when tracing, ``cpu_op`` /
``cuda_runtime`` / ``kernel`` slices in the PyTorch profiler's layout (docs/host_runtime.md).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, assert_never

import simpy

from gpusim.errors import SimulationError
from gpusim.execution.collectives import (
    Collective,
    all_gather,
    all_to_all,
    reduce_scatter,
    ring_all_reduce,
)
from gpusim.execution.host_costs import HostCosts, RuntimeCall
from gpusim.execution.launch import enter_queue, run_cost
from gpusim.execution.program import (
    Exchange,
    ExchangeStep,
    GraphStep,
    HostStep,
    KernelStep,
    Phases,
    Program,
    ProgramCheck,
    RankResult,
    Step,
    SyncStep,
    host_cost_s,
    validate_programs,
)
from gpusim.execution.program_solo import SoloRank
from gpusim.execution.runtime import LaunchLog, LaunchRecord, run_graph_nodes
from gpusim.hardware.fabric import Route
from gpusim.hardware.gpu import GPURuntime, Stream, StreamOp
from gpusim.hardware.host import HostThread
from gpusim.hardware.node import Node
from gpusim.hardware.solo_gpu import SoloGPU
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
    op: tuple[str, int, float, int] | None = None
    """The framework op still open: its name, external id, begin and first record index."""


class ProgramDES:
    """Runs one program per rank on a built node, each from its rank's own host thread."""

    def __init__(
        self, node: Node, ranks: Sequence[str], phases: Phases, *, solo: bool = False
    ) -> None:
        """An interpreter for ``ranks`` (GPU ids, rank order) with the family's ``phases``.

        ``solo``: the family's programs run on stream 0 with no ``after`` and no exchange. With
        one rank and no trace nothing then contends, and the rank is timed in closed form
        (:mod:`gpusim.execution.program_solo`, the same records and results; the GPU's own
        counters, such as ``busy_sm_s``, are not advanced); a step breaking the promise is a
        :class:`SimulationError`."""
        self.solo = solo
        self.node = node
        self.env = node.sim.env
        self.ranks = list(ranks)
        self.phases = phases
        self.costs = HostCosts.from_profile(node.profile)
        self.times = self.costs.launch
        nccl = NcclCosts.from_profile(node.profile)
        self.nccl_sms, self.nccl_setup_s = nccl.sms, nccl.setup_s
        self.nccl_host_call_s = nccl.host_call_s
        self.log = LaunchLog()
        """Every launch of the run (framework op, runtime call and kernel timestamps)."""
        self._collectives: dict[int, Collective] = {}  # id(Exchange) -> its collective
        self._one_sided: dict[int, _OneSided] = {}  # id(Exchange) -> its copies

    def run(self, programs: Sequence[Program]) -> list[RankResult]:
        """Run every rank's program to the end; returns per-rank results."""
        check, steps = validate_programs(self.ranks, programs, self.phases)
        if self.solo and len(self.ranks) == 1 and not self.node.sim.recorder.enabled:
            return [self._run_solo(check, steps[0])]
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

    def _run_solo(self, check: ProgramCheck, steps: Iterator[Step]) -> RankResult:
        """The one rank's program, timed in closed form (see ``solo``)."""
        gpu_id = self.ranks[0]
        to_host = self.node.fabric.route(gpu_id, self.node.host_of[gpu_id])
        gpu = SoloGPU(self.node.gpus[gpu_id])
        rank = SoloRank(gpu, to_host, self.costs, self.nccl_host_call_s, self.log, self.phases)
        result = rank.run(steps)
        check.finish()
        self.node.finish()
        return result

    def _rank(self, rank: _Rank, steps: Iterator[Step]) -> Process:
        """The rank's host thread: issue every step, then wait for its streams to drain."""
        for step in steps:
            if isinstance(step, KernelStep):
                done = yield from self._kernel(rank, step)
            elif isinstance(step, HostStep):
                done = yield from self._host(rank, step)
            elif isinstance(step, ExchangeStep):
                done = yield from self._exchange(rank, step)
            elif isinstance(step, SyncStep):
                done = yield from self._sync(rank, step)
            elif isinstance(step, GraphStep):
                done = yield from self._graph(rank, step)
            else:
                assert_never(step)
            rank.done.append(done)
        self._close_op(rank)
        yield self.env.all_of([s.idle() for s in rank.gpu.streams.values()])
        rank.result.end_s = float(self.env.now)
        rank.finished = True

    # -- one handler per step kind: host work, then the stream op; returns its completion ----

    def _spend(self, rank: _Rank, label: str, step: Step) -> Generator[simpy.Event, Any, float]:
        """The step's host cost as one slice; returns when it began."""
        begin = float(self.env.now)
        cost = host_cost_s(step, self.costs, self.nccl_host_call_s)
        rank.result.host_s += cost
        yield from rank.thread.spend(label, cost)
        return begin

    def _close_op(self, rank: _Rank) -> None:
        """End the open framework op (its cpu_op slice encloses its launches)."""
        if rank.op is None:
            return
        name, ext, begin, first = rank.op
        rank.op = None
        end = float(self.env.now)
        for rec in self.log.records[first:]:
            if rec.external_id == ext:
                rec.op_begin_s, rec.op_end_s = begin, end
        args = {"External id": ext}
        rank.thread.recorder.slice(rank.thread.track, name, begin, end, args, "cpu_op")

    def _launch(
        self,
        rank: _Rank,
        stream: Stream,
        name: str,
        call: RuntimeCall,
        begin: float,
        op: StreamOp,
        deps: list[simpy.Event],
        phase: str,
        cat: str = "kernel",
    ) -> Generator[simpy.Event, Any, simpy.Event]:
        """After the host cost (paid from ``begin``): wait for a launch-queue slot, record the
        launch and submit ``op`` (started once ``deps`` fired, its time added to ``phase``)."""
        reserved = yield from enter_queue(stream, self.costs.queue_depth)
        ext = rank.op[1] if rank.op is not None else 0
        corr = self.log.next_correlation()
        rec = LaunchRecord(corr, ext, name, call, rank.gpu.id, stream.id, begin)
        rec.runtime_end_s = float(self.env.now)
        self.log.records.append(rec)
        recorder = rank.thread.recorder
        if recorder.enabled:
            call_args = {"correlation": corr, "External id": ext}
            track = rank.thread.track
            recorder.slice(track, call.value, begin, rec.runtime_end_s, call_args, "cuda_runtime")
        args = {"correlation": corr, "External id": ext, "device": rec.gpu, "stream": stream.id}
        timed = self._timed(rank, phase, op, deps, rec)
        done = stream.submit(
            name, timed, self.times.doorbell_s, reserved=reserved, cat=cat, args=args
        )
        rank.result.launches += 1
        return done

    def _kernel(self, rank: _Rank, step: KernelStep) -> Generator[simpy.Event, Any, simpy.Event]:
        stream = rank.gpu.stream(step.stream)
        deps = [rank.done[i] for i in step.after]
        cost = step.cost
        if step.new_op:
            self._close_op(rank)
            ext = self.log.next_external()
            rank.op = (f"aten::{cost.name}", ext, float(self.env.now), len(self.log.records))
        begin = yield from self._spend(rank, f"launch {cost.name}", step)
        if step.new_op:  # the runtime call follows the framework dispatch
            begin += self.costs.framework_op_s(step.op_kind, step.records_graph)
        op = _kernel_op(rank.gpu, cost)
        return (
            yield from self._launch(rank, stream, cost.name, step.call, begin, op, deps, step.phase)
        )

    def _host(self, rank: _Rank, step: HostStep) -> Generator[simpy.Event, Any, simpy.Event]:
        self._close_op(rank)
        yield from self._spend(rank, f"host {step.kind} x{step.count}", step)
        done = self.env.event()
        done.succeed()
        return done

    def _exchange(
        self, rank: _Rank, step: ExchangeStep
    ) -> Generator[simpy.Event, Any, simpy.Event]:
        self._close_op(rank)
        stream = rank.gpu.stream(step.stream)
        deps = [rank.done[i] for i in step.after]
        name = step.exchange.name
        begin = yield from self._spend(rank, f"launch {name}", step)
        nccl = step.exchange.kind == "nccl"
        call = step.call or (RuntimeCall.collective if nccl else RuntimeCall.launch_kernel)
        op = self._counted(rank, partial(self._exchange_op, step.exchange, rank))
        return (yield from self._launch(rank, stream, name, call, begin, op, deps, step.phase))

    def _graph(self, rank: _Rank, step: GraphStep) -> Generator[simpy.Event, Any, simpy.Event]:
        """cudaGraphLaunch: one host call, one queue slot; node i starts no earlier than i
        per-node costs after the graph starts (HostRuntime.graph_launch's device model)."""
        self._close_op(rank)
        stream = rank.gpu.stream(step.stream)
        deps = [rank.done[i] for i in step.after]
        call = RuntimeCall.graph_launch
        begin = yield from self._spend(rank, f"launch {step.name}", step)
        reserved = yield from enter_queue(stream, self.costs.queue_depth)
        corr = self.log.next_correlation()
        end = float(self.env.now)
        gpu, env, phase_s = rank.gpu, self.env, rank.result.phase_s
        records = []
        for cost in step.nodes:
            rec = LaunchRecord(corr, 0, cost.name, call, gpu.id, stream.id, begin)
            rec.runtime_end_s = end
            records.append(rec)
        self.log.records.extend(records)
        recorder = rank.thread.recorder
        if recorder.enabled:
            args = {"correlation": corr, "External id": 0}
            recorder.slice(rank.thread.track, call.value, begin, end, args, "cuda_runtime")
        node_s = self.times.graph_per_kernel_s

        def body() -> Process:
            pending = [e for e in deps if not e.processed]
            if pending:
                yield env.all_of(pending)
            yield from run_graph_nodes(gpu, step.nodes, records, node_s, kernel_ended)

        def kernel_ended(cost: KernelCost, rec: LaunchRecord) -> None:
            phase_s[step.phase] += rec.kernel_end_s - rec.kernel_start_s
            if recorder.enabled:
                kargs = {"correlation": corr, "External id": 0, "device": gpu.id}
                recorder.slice(
                    stream.track,
                    cost.name,
                    rec.kernel_start_s,
                    rec.kernel_end_s,
                    kargs | {"stream": stream.id},
                    "kernel",
                )

        done = stream.submit(step.name, body, self.times.doorbell_s, reserved=reserved)
        rank.result.launches += len(step.nodes)
        return done

    def _sync(self, rank: _Rank, step: SyncStep) -> Generator[simpy.Event, Any, simpy.Event]:
        self._close_op(rank)
        gpu, times = rank.gpu, self.times
        res = rank.result
        if step.kind == "to_host":
            begin = yield from self._spend(rank, "cudaMemcpy D2H", step)
            gpu_id = self.ranks[rank.index]
            route = self.node.fabric.route(gpu_id, self.node.host_of[gpu_id])
            tails = [s.idle() for s in gpu.streams.values()]
            copy_op = _copy_op(gpu, route, step.d2h_bytes)
            awaited = yield from self._launch(
                rank,
                gpu.stream(0),
                "Memcpy DtoH",
                RuntimeCall.memcpy_async,
                begin,
                copy_op,
                tails,
                step.phase,
                "gpu_memcpy",
            )
            label = "sync"
        elif step.kind == "stream":
            awaited = gpu.stream(step.stream).idle()
            label = "cudaStreamSynchronize"
        else:
            awaited = self.env.all_of([s.idle() for s in gpu.streams.values()])
            label = "cudaDeviceSynchronize"
        t0 = float(self.env.now)
        yield from rank.thread.wait(label, [awaited], times.sync_return_s, "cuda_runtime")
        res.sync_wait_s += float(self.env.now) - t0
        return awaited

    # -- on the GPU ----------------------------------------------------------------------

    def _timed(
        self,
        rank: _Rank,
        phase: str,
        op: StreamOp,
        deps: list[simpy.Event],
        rec: LaunchRecord,
    ) -> StreamOp:
        """``op`` started once ``deps`` fired, its duration added to ``phase`` and ``rec``."""
        env, phase_s = self.env, rank.result.phase_s

        def run() -> Process:
            pending = [e for e in deps if not e.processed]
            if pending:
                yield env.all_of(pending)
            t0 = float(env.now)
            rec.kernel_start_s = t0
            yield from op()
            t1 = float(env.now)
            rec.kernel_end_s = t1
            phase_s[phase] += t1 - t0

        return run

    def _counted(self, rank: _Rank, op: StreamOp) -> StreamOp:
        """``op`` with its duration added to the rank's exchange time."""
        env, res = self.env, rank.result

        def run() -> Process:
            t0 = float(env.now)
            yield from op()
            res.exchange_s += float(env.now) - t0

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

    def _collective(self, ex: Exchange) -> Collective:
        """The NCCL collective of ``ex``, shared by every rank (built on first use): the
        all-to-all of ``send_B``, or the ring collective of size N x shard (see Exchange)."""
        coll = self._collectives.get(id(ex))
        if coll is None:
            kw: dict[str, Any] = {"sms": self.nccl_sms, "setup_s": self.nccl_setup_s}
            node, ranks = self.node, self.ranks
            size_B = len(ranks) * ex.shard_B
            if ex.collective == "all_to_all":
                coll = all_to_all(node, ranks, ex.send_B, name=ex.name, **kw)
            elif ex.collective == "all_gather":
                coll = all_gather(node, ranks, size_B, name=ex.name, **kw)
            elif ex.collective == "reduce_scatter":
                coll = reduce_scatter(node, ranks, size_B, name=ex.name, **kw)
            else:
                coll = ring_all_reduce(node, ranks, size_B, name=ex.name, **kw)
            self._collectives[id(ex)] = coll
        return coll


def run_des(
    node: Node, ranks: Sequence[str], programs: Sequence[Program], phases: Phases
) -> list[RankResult]:
    """Run every rank's program on ``node`` from its own host thread; per-rank results.
    ``phases``: the family's phase names (each step's phase is one of them)."""
    return ProgramDES(node, ranks, phases).run(programs)
