"""The closed-form interpreter of per-rank programs (:mod:`gpusim.execution.program`).

Ranks run independently between exchanges, so the interpreter walks every rank's steps up to
its next exchange, then evaluates that exchange once every rank has reached it:

- a kernel starts at max(host issue + doorbell, its stream's tail, its dependencies), or later if
  the SMs it needs are not free then (kernels on other streams and collectives hold theirs), and
  lasts its modelled time;
- an exchange starts when the last participant enters and lasts its closed form (all-to-all,
  or the ring all-gather / reduce-scatter / all-reduce of size N x shard);
- a host step advances the host clock by its cost;
- a sync returns the return latency after the awaited work drains (its copy, one stream, or
  every stream);
- a launch waits for a queue slot while its stream holds ``host.launch_queue_depth``
  unfinished operations (r_j = max(h_j + c_j, e_(j - depth)), docs/host_runtime.md).

Host costs are :func:`gpusim.execution.program.host_cost_s`, the formula the DES spends.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import assert_never

from gpusim.execution.host_costs import HostCosts, RuntimeCall
from gpusim.execution.program import (
    RING_PASSES,
    Exchange,
    ExchangeStep,
    GraphStep,
    HostStep,
    KernelStep,
    Phases,
    Program,
    RankResult,
    Step,
    StepCosts,
    SyncStep,
    validate_programs,
)
from gpusim.execution.runtime import LaunchLog, LaunchRecord
from gpusim.hardware.platform import Platform
from gpusim.hardware.static_flows import StaticFlow, static_completion_s
from gpusim.kernels.collectives import NcclCosts, all_to_all_time_s, ring_time_s
from gpusim.kernels.memcpy import memcpy_time_s


def exchange_time_s(
    platform: Platform, ranks: Sequence[str], ex: Exchange, setup_s: float
) -> float:
    """Closed form of one exchange from the last rank's entry: NCCL's all-to-all, or every
    one-sided copy at its static max-min rate (plus the fused compute's share)."""
    if ex.kind == "nccl":
        if ex.collective != "all_to_all":
            size_B = len(ranks) * ex.shard_B
            passes = RING_PASSES[ex.collective]
            return ring_time_s(platform.fabric, list(ranks), size_B, passes, setup_s)
        return all_to_all_time_s(platform.fabric, list(ranks), ex.send_B, setup_s)
    flows = [
        StaticFlow(platform.route(src, dst), float(ex.send_B[i][j]))
        for i, src in enumerate(ranks)
        for j, dst in enumerate(ranks)
        if i != j and ex.send_B[i][j] > 0
    ]
    comm = max(static_completion_s(platform, flows)) if flows else 0.0
    if ex.compute_s > 0:
        return max(ex.compute_s, comm + ex.compute_s / ex.chunks)
    return comm


def first_fit_s(
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


HELD_PRUNE_MIN = 256
"""Kept launches below which a rank's ``held`` and launch queues are not trimmed (trimming
keeps them short, so memory does not grow with a run's launches; it changes no result)."""


def _prune_held(rank: _Rank) -> None:
    """Drop the held intervals that ended by the host clock: every later start is at or after
    it, and first_fit_s ignores intervals that end by its ready time. The next trim waits for
    twice as many intervals (amortised constant time a launch)."""
    rank.held = [iv for iv in rank.held if iv[1] > rank.host_s]
    rank.prune_at = max(HELD_PRUNE_MIN, 2 * len(rank.held))


@dataclass
class _Rank:
    """One rank's clocks: host time, each stream's tail, each step's end, the SMs held."""

    gpu_id: str
    steps: Iterator[Step]
    result: RankResult
    host_s: float = 0.0
    tails: dict[int, float] = field(default_factory=dict)
    ends: list[float] = field(default_factory=list)
    held: list[tuple[float, float, int]] = field(default_factory=list)
    """(start, end, SMs) of the kernels and collectives that may still hold SMs."""
    held_end: float = 0.0
    """The latest end in ``held`` so far: a kernel ready then or later overlaps none of them."""
    prune_at: int = 0
    """``held``'s length at which the intervals ended by the host clock are dropped (set at the
    first trim, from :data:`HELD_PRUNE_MIN`)."""
    queued: dict[int, list[float]] = field(default_factory=dict)
    """Per stream: the ends of its operations, in launch order (the launch queue)."""
    external_id: int = 0
    """The framework op still open (0: none), as the DES numbers them."""
    logged: bool = True
    """Whether the launch log keeps this rank's records."""


class ProgramAnalytic:
    """Evaluates one program per rank in closed form on a static platform."""

    def __init__(
        self,
        platform: Platform,
        ranks: Sequence[str],
        phases: Phases,
        costs: HostCosts | None = None,
        logged_gpus: Collection[str] | None = None,
    ) -> None:
        """An interpreter for ``ranks`` (GPU ids, rank order) with the family's ``phases``;
        host ``costs`` from the platform's profile unless given. ``logged_gpus``: the GPUs
        whose launches :attr:`log` keeps (None: every rank's). Ids are numbered as if every
        launch were kept, so a kept record is the same either way; a caller that reads one
        rank's records need not hold every rank's (a record per launch, 8 ranks of a long
        decode run hold about 100 MB)."""
        self.platform = platform
        self.ranks = list(ranks)
        self.phases = phases
        self.costs = HostCosts.from_profile(platform.profile) if costs is None else costs
        self.times = self.costs.launch
        nccl = NcclCosts.from_profile(platform.profile)
        self.setup_s, self.nccl_sms = nccl.setup_s, nccl.sms
        self.nccl_host_call_s = nccl.host_call_s
        self.step_costs = StepCosts(self.costs, nccl.host_call_s)
        self.sm_count = platform.gpu_rates(self.ranks[0]).sm_count
        self.logged_gpus = None if logged_gpus is None else frozenset(logged_gpus)
        self.log = LaunchLog()
        """Every launch (of ``logged_gpus``), with the timestamps the DES records (within a
        rank, in the same order; across ranks, rank by rank between exchanges rather than by
        time)."""

    def run(self, programs: Sequence[Program]) -> list[RankResult]:
        """Every rank's steps up to its next exchange, that exchange, and so on to the end."""
        check, steps = validate_programs(self.ranks, programs, self.phases)
        logged = self.logged_gpus
        ranks = [
            _Rank(
                gpu_id,
                it,
                RankResult.zeroed(self.phases),
                logged=logged is None or gpu_id in logged,
            )
            for gpu_id, it in zip(self.ranks, steps, strict=True)
        ]
        while True:
            meets = [self._until_exchange(rank) for rank in ranks]
            if all(m is None for m in meets):
                break
            at = [m for m in meets if m is not None]
            if len(at) < len(meets):
                check.finish()  # names the rank that ended before this exchange
            self._exchange(ranks, at)
        check.finish()
        for rank in ranks:
            # as the DES: the host has issued its last step and every stream has drained
            rank.result.end_s = max(rank.host_s, *rank.tails.values())
        return [rank.result for rank in ranks]

    def _until_exchange(self, rank: _Rank) -> ExchangeStep | None:
        """Run the rank's local steps; returns the exchange it stops at (None: its end)."""
        for step in rank.steps:
            if isinstance(step, KernelStep):
                end = self._kernel(rank, step)
            elif isinstance(step, HostStep):
                end = self._host(rank, step)
            elif isinstance(step, SyncStep):
                end = self._sync(rank, step)
            elif isinstance(step, GraphStep):
                end = self._graph(rank, step)
            elif isinstance(step, ExchangeStep):
                return step
            else:
                assert_never(step)
            rank.ends.append(end)
        return None

    # -- one handler per step kind; each returns the step's end ---------------------------

    def _issue(self, rank: _Rank, step: Step) -> float:
        """Pay ``step``'s host cost; returns a kernel's framework dispatch (see StepCosts)."""
        cost, op = self.step_costs.of(step)
        rank.host_s += cost
        rank.result.host_s += cost
        return op

    def _enter_queue(self, rank: _Rank, stream: int) -> None:
        """The launch call returns once its stream holds fewer than ``depth`` unfinished ops."""
        ends = rank.queued.get(stream)
        depth = self.costs.queue_depth
        if ends is not None and len(ends) >= depth:
            rank.host_s = max(rank.host_s, ends[-depth])

    def _queued(self, rank: _Rank, stream: int, end: float) -> None:
        ends = rank.queued.setdefault(stream, [])
        ends.append(end)
        depth = self.costs.queue_depth
        if len(ends) >= 2 * depth + HELD_PRUNE_MIN:
            del ends[:-depth]  # only the last ``depth`` ends are ever read (_enter_queue)

    def _record(
        self, rank: _Rank, name: str, call: RuntimeCall, stream: int, begin_s: float
    ) -> LaunchRecord:
        """A launch whose runtime call began at ``begin_s`` and returns now (host clock)."""
        corr = self.log.next_correlation()
        rec = LaunchRecord(corr, rank.external_id, name, call, rank.gpu_id, stream, begin_s)
        rec.runtime_end_s = rank.host_s
        if rank.logged:
            self.log.records.append(rec)
        return rec

    def _kernel(self, rank: _Rank, step: KernelStep) -> float:
        res, cost = rank.result, step.cost
        res.launches += 1
        begin = rank.host_s
        if step.new_op:
            rank.external_id = self.log.next_external()
        begin += self._issue(rank, step)  # the runtime call follows the framework dispatch
        self._enter_queue(rank, step.stream)
        tail = rank.tails.get(step.stream, 0.0)
        ready = rank.host_s + self.times.doorbell_s
        if tail > ready:
            ready = tail
        for i in step.after:
            if rank.ends[i] > ready:
                ready = rank.ends[i]
        time_s = cost.time_s
        if ready >= rank.held_end:
            start = ready  # what first_fit_s returns when every held interval has ended
            if len(rank.held) >= rank.prune_at:
                _prune_held(rank)
        else:
            _prune_held(rank)
            start = first_fit_s(rank.held, ready, time_s, cost.sms, self.sm_count)
        end = start + time_s
        if end > rank.held_end:
            rank.held_end = end
        rec = self._record(rank, cost.name, step.call, step.stream, begin)
        rec.kernel_start_s, rec.kernel_end_s = start, end
        rank.held.append((start, end, cost.sms))
        res.phase_s[step.phase] += time_s
        res.busy_sm_s += time_s * cost.sms
        rank.tails[step.stream] = end
        self._queued(rank, step.stream, end)
        return end

    def _host(self, rank: _Rank, step: HostStep) -> float:
        rank.external_id = 0
        self._issue(rank, step)
        return rank.host_s

    def _graph(self, rank: _Rank, step: GraphStep) -> float:
        """One graph launch: node i starts at max(graph start + i x per-node cost, the end of
        node i-1); the graph holds one queue slot and ends with its last node."""
        rank.external_id = 0
        res = rank.result
        begin = rank.host_s
        self._issue(rank, step)
        self._enter_queue(rank, step.stream)
        deps = [rank.ends[i] for i in step.after]
        tail = rank.tails.get(step.stream, 0.0)
        start = max([rank.host_s + self.times.doorbell_s, tail, *deps])
        corr = self.log.next_correlation()
        end = start
        node_s = self.times.graph_per_kernel_s
        for i, cost in enumerate(step.nodes, start=1):
            s0 = max(start + i * node_s, end)
            end = s0 + cost.time_s
            rec = LaunchRecord(
                corr, 0, cost.name, RuntimeCall.graph_launch, rank.gpu_id, step.stream, begin
            )
            rec.runtime_end_s = rank.host_s
            rec.kernel_start_s, rec.kernel_end_s = s0, end
            if rank.logged:
                self.log.records.append(rec)
            res.phase_s[step.phase] += cost.time_s
            res.busy_sm_s += cost.time_s * cost.sms
        res.launches += len(step.nodes)
        rank.tails[step.stream] = end
        self._queued(rank, step.stream, end)
        return end

    def _sync(self, rank: _Rank, step: SyncStep) -> float:
        times, res = self.times, rank.result
        rank.external_id = 0
        if step.kind == "to_host":
            res.launches += 1
            begin = rank.host_s
            self._issue(rank, step)
            self._enter_queue(rank, 0)
            route = self.platform.route(rank.gpu_id, self.platform.host_of[rank.gpu_id])
            copy_s = memcpy_time_s(step.d2h_bytes, route.bottleneck_Bps, route.latency_s)
            start = max([rank.host_s + times.doorbell_s, *rank.tails.values()])
            end = start + copy_s
            rec = self._record(rank, "Memcpy DtoH", RuntimeCall.memcpy_async, 0, begin)
            rec.kernel_start_s, rec.kernel_end_s = start, end
            res.phase_s[step.phase] += copy_s
            rank.tails[0] = end
            self._queued(rank, 0, end)
        elif step.kind == "stream":
            end = max(rank.host_s, rank.tails.get(step.stream, 0.0))
        else:
            end = max([rank.host_s, *rank.tails.values()])
        returned = end + times.sync_return_s
        res.sync_wait_s += returned - rank.host_s
        rank.host_s = returned
        return end

    def _exchange(self, ranks: Sequence[_Rank], steps: Sequence[ExchangeStep]) -> None:
        """Every rank's part of one exchange (the checks made sure it is the same one)."""
        entry, records = [], []
        for rank, step in zip(ranks, steps, strict=True):
            rank.external_id = 0
            begin = rank.host_s
            self._issue(rank, step)
            self._enter_queue(rank, step.stream)
            deps = [rank.ends[i] for i in step.after]
            tail = rank.tails.get(step.stream, 0.0)
            entry.append(max([rank.host_s + self.times.doorbell_s, tail, *deps]))
            nccl = step.exchange.kind == "nccl"
            call = step.call or (RuntimeCall.collective if nccl else RuntimeCall.launch_kernel)
            records.append(self._record(rank, step.exchange.name, call, step.stream, begin))
        ex = steps[0].exchange
        end = max(entry) + exchange_time_s(self.platform, self.ranks, ex, self.setup_s)
        if ex.kind == "nccl":
            sms = self.nccl_sms
        else:
            sms = self.sm_count if ex.holds_all_sms else ex.comm_sms
        for rank, step, t0, rec in zip(ranks, steps, entry, records, strict=True):
            rec.kernel_start_s, rec.kernel_end_s = t0, end
            res = rank.result
            res.phase_s[step.phase] += end - t0
            res.exchange_s += end - t0
            res.busy_sm_s += (end - t0) * sms
            res.launches += 1
            rank.tails[step.stream] = end
            rank.ends.append(end)
            rank.held.append((t0, end, sms))
            rank.held_end = max(rank.held_end, end)
            self._queued(rank, step.stream, end)


def run_analytic(
    platform: Platform,
    ranks: Sequence[str],
    programs: Sequence[Program],
    phases: Phases,
    costs: HostCosts | None = None,
) -> list[RankResult]:
    """Evaluate every rank's program in closed form; per-rank results. Ranks run independently
    between exchanges; an exchange starts when the last participant enters. ``phases``: the
    family's phase names (each step's phase is one of them); ``costs``: the host costs (the
    platform profile's unless given)."""
    return ProgramAnalytic(platform, ranks, phases, costs).run(programs)
