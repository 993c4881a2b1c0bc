"""The discrete-event interpreter's closed form for a rank that has its GPU to itself.

One rank whose program runs on stream 0 with no ``after`` and no exchange, on a node nothing
else uses, never contends: its host issues steps in order, its stream drains them in order, and
every kernel or copy runs alone (:class:`~gpusim.hardware.solo_gpu.SoloGPU`). Its timeline is
then the recurrence of docs/host_runtime.md, evaluated with the float operations
:class:`~gpusim.execution.program_des.ProgramDES` performs through SimPy: per launch, the host
pays the step's cost (``h + c``), waits for a queue slot while the stream holds
``host.launch_queue_depth`` unfinished operations (``max(h, end of the operation that many
launches back)``), and the operation starts at ``max(h + doorbell, previous end)``. The records,
correlation and framework-op ids and the rank's result are the ones the event-driven run leaves
(``tests/test_program_solo.py`` holds them equal); the GPU's and host thread's own counters
(busy SM-seconds, calls) are not advanced, and nothing is traced.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import assert_never

from gpusim.errors import SimulationError
from gpusim.execution.host_costs import HostCosts, RuntimeCall
from gpusim.execution.program import (
    ExchangeStep,
    GraphStep,
    HostStep,
    KernelStep,
    Phases,
    RankResult,
    Step,
    StepCosts,
    SyncStep,
)
from gpusim.execution.runtime import LaunchLog, LaunchRecord
from gpusim.hardware.fabric import Route
from gpusim.hardware.solo_gpu import SoloGPU


class SoloRank:
    """Runs one rank's program in closed form (see the module docstring)."""

    def __init__(
        self,
        gpu: SoloGPU,
        to_host: Route,
        costs: HostCosts,
        nccl_host_call_s: float,
        log: LaunchLog,
        phases: Phases,
    ) -> None:
        """The rank's GPU, the route of its device-to-host copies, the host costs and the
        log its launches go to."""
        self.gpu = gpu
        self.gpu_id = gpu.gpu.id
        self.doorbell_s = costs.launch.doorbell_s
        self.to_host = to_host
        self.costs = costs
        self.step_costs = StepCosts(costs, nccl_host_call_s)
        self.log = log
        self.result = RankResult.zeroed(phases)
        self.host_s = 0.0
        """The host thread's clock."""
        self.tail_s = -math.inf
        """When the stream's last operation ends (-inf: none yet)."""
        self.ends: list[float] = []
        """Every stream operation's end, in launch order (the launch queue)."""
        self.op: tuple[int, float, int] | None = None
        """The framework op still open: its external id, begin and first record index."""

    def run(self, steps: Iterator[Step]) -> RankResult:
        """Issue every step, then wait for the stream to drain; returns the rank's result."""
        for step in steps:
            if step.stream or step.after:
                raise SimulationError(
                    f"a solo program runs on stream 0 with no 'after' ({type(step).__name__} "
                    f"on stream {step.stream}, after {step.after})"
                )
            if isinstance(step, KernelStep):
                self._kernel(step)
            elif isinstance(step, HostStep):
                self._close_op()
                self._pay(step)
            elif isinstance(step, SyncStep):
                self._sync(step)
            elif isinstance(step, GraphStep):
                self._graph(step)
            elif isinstance(step, ExchangeStep):
                raise SimulationError(f"a solo program has no exchange ({step.exchange.name})")
            else:
                assert_never(step)
        self._close_op()
        self.result.end_s = max(self.host_s, self.tail_s)
        return self.result

    # -- the host --------------------------------------------------------------------------

    def _pay(self, step: Step) -> float:
        """Pay the step's host cost (the host clock advances by it); returns, for a kernel
        opening a framework op, the dispatch before its runtime call (else 0)."""
        cost, op = self.step_costs.of(step)
        self.result.host_s += cost
        if cost > 0:
            self.host_s += cost
        return op

    def _enter_queue(self) -> None:
        """The launch call returns once the stream holds fewer than ``depth`` unfinished ops."""
        depth, ends = self.costs.queue_depth, self.ends
        if len(ends) >= depth and ends[-depth] > self.host_s:
            self.host_s = ends[-depth]

    def _close_op(self) -> None:
        """End the open framework op now: its records get its begin and end."""
        if self.op is None:
            return
        ext, begin, first = self.op
        self.op = None
        end = self.host_s
        for rec in self.log.records[first:]:
            if rec.external_id == ext:
                rec.op_begin_s, rec.op_end_s = begin, end

    def _record(self, name: str, call: RuntimeCall, ext: int, begin: float) -> LaunchRecord:
        """A launch whose runtime call began at ``begin`` and returns now."""
        rec = LaunchRecord(self.log.next_correlation(), ext, name, call, self.gpu_id, 0, begin)
        rec.runtime_end_s = self.host_s
        self.log.records.append(rec)
        return rec

    def _start(self) -> float:
        """When an operation submitted now may start: after the doorbell and the stream's tail
        (``Stream.submit``'s doorbell timeout, then its wait for the previous operation)."""
        ready = self.host_s + self.doorbell_s if self.doorbell_s > 0 else self.host_s
        return ready if ready >= self.tail_s else self.tail_s

    def _ended(self, end: float) -> None:
        self.tail_s = end
        self.ends.append(end)

    # -- one handler per step kind ---------------------------------------------------------

    def _kernel(self, step: KernelStep) -> None:
        """The hottest path (decode runs launch hundreds of thousands): the helpers inlined."""
        log, records = self.log, self.log.records
        h0 = self.host_s
        if step.new_op:
            self._close_op()
            self.op = (log.next_external(), h0, len(records))
        op_s = self._pay(step)
        begin = h0 + op_s if step.new_op else h0  # the runtime call follows the dispatch
        self._enter_queue()
        cost, h = step.cost, self.host_s
        ext = self.op[0] if self.op else 0
        rec = LaunchRecord(log.next_correlation(), ext, cost.name, step.call, self.gpu_id, 0, begin)
        rec.runtime_end_s = h
        records.append(rec)
        ready = h + self.doorbell_s if self.doorbell_s > 0 else h
        start = ready if ready >= self.tail_s else self.tail_s
        end = self.gpu.kernel_end_s(cost, start)
        rec.kernel_start_s, rec.kernel_end_s = start, end
        self.result.phase_s[step.phase] += end - start
        self.result.launches += 1
        self.tail_s = end
        self.ends.append(end)

    def _graph(self, step: GraphStep) -> None:
        """cudaGraphLaunch: node i starts no earlier than i per-node costs after the graph."""
        self._close_op()
        begin = self.host_s
        self._pay(step)
        self._enter_queue()
        corr = self.log.next_correlation()
        call, gpu_id = RuntimeCall.graph_launch, self.gpu_id
        now = self._start()
        start, node_s = now, self.costs.launch.graph_per_kernel_s
        phase_s = self.result.phase_s
        for i, cost in enumerate(step.nodes, start=1):
            rec = LaunchRecord(corr, 0, cost.name, call, gpu_id, 0, begin)
            rec.runtime_end_s = self.host_s
            ready = start + i * node_s
            if ready > now:
                now = now + (ready - now)  # the timeout SimPy adds to its clock
            end = self.gpu.kernel_end_s(cost, now)
            rec.kernel_start_s, rec.kernel_end_s = now, end
            phase_s[step.phase] += end - now
            self.log.records.append(rec)
            now = end
        self.result.launches += len(step.nodes)
        self._ended(now)

    def _sync(self, step: SyncStep) -> None:
        self._close_op()
        res = self.result
        if step.kind == "to_host":
            begin = self.host_s
            self._pay(step)
            self._enter_queue()
            rec = self._record("Memcpy DtoH", RuntimeCall.memcpy_async, 0, begin)
            start = self._start()
            route = self.to_host
            end = self.gpu.copy_end_s(route.resources, route.latency_s, step.d2h_bytes, start)
            rec.kernel_start_s, rec.kernel_end_s = start, end
            res.phase_s[step.phase] += end - start
            res.launches += 1
            self._ended(end)
        t0 = self.host_s
        if self.tail_s > self.host_s:
            self.host_s = self.tail_s
        back = self.costs.sync_return_s
        if back > 0:
            self.host_s += back
        res.sync_wait_s += self.host_s - t0
