"""Host-driven work as per-rank programs: the format both fidelities interpret, and its checks.

A workload family writes, for every rank, a program: an iterable of steps that rank's host
thread issues in order. The step kinds:

- :class:`KernelStep`: one kernel launch (a framework operator of an :class:`OpKind`: its
  dispatch, then a runtime call such as cudaLaunchKernel or a cuBLAS call, on a stream),
  optionally waiting for earlier steps of the same rank (``after``);
- :class:`HostStep`: host-only work that launches nothing (a view op's dispatch, Python work
  such as a loop body or the processing of a ``.tolist()``);
- :class:`ExchangeStep`: this rank's part of an :class:`Exchange`, bytes moved between ranks
  (an NCCL all-to-all, all-gather, reduce-scatter or all-reduce, or device-initiated one-sided
  copies, optionally fused with a GEMM): every rank meets the same exchanges in the same order;
- :class:`GraphStep`: one ``cudaGraphLaunch`` of a straight-line CUDA graph of kernels (one host
  call whatever its size; the graph executor's per-node cost on the device);
- :class:`SyncStep`: a host synchronisation: a device-to-host copy the host waits for
  (``to_host``), ``cudaStreamSynchronize`` (``stream``) or ``torch.cuda.synchronize()``
  (``device``).

Host costs come from :class:`~gpusim.execution.host_costs.HostCosts` (the profile's ``launch``
and ``host`` sections; ``docs/host_runtime.md``): :func:`host_cost_s` is the one formula both
interpreters charge, so they agree exactly.

Each step names its phase; the family declares its phase names once (MoE: gate, dispatch,
gemm, combine) and every :class:`RankResult` accounts time per declared phase. A program may be
a sequence (checked whole before it runs) or a lazy iterator, such as a generator drawing decode
lengths as it goes (checked step by step as the interpreter consumes it). Both interpreters,
:func:`gpusim.execution.program_des.run_des` and
:func:`gpusim.execution.program_analytic.run_analytic`, consume steps lazily and check them with
:func:`validate_programs`; a program that breaks the format is a :class:`SimulationError` naming
the rank and the step, in either fidelity.

Adding a step kind: a frozen dataclass deriving :class:`StepBase` (``stream``/``after`` fields
if it runs on a stream; ``meets`` if ranks meet at it), listed in :data:`Step`, and one handler
in each interpreter (mypy's exhaustiveness check names an interpreter that lacks one).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from gpusim.errors import SimulationError
from gpusim.execution.host_costs import HostCosts, OpKind, RuntimeCall
from gpusim.kernels.cost import KernelCost

Phases = Sequence[str]
"""A family's phase names, in the order its metrics list them."""


class StepBase:
    """What every step kind offers the checks: its phase, the stream it runs on, the earlier
    steps of its rank it waits for, and the exchange (if any) at which it meets other ranks.
    Step kinds are frozen dataclasses that override these as fields where they have them."""

    phase: str
    stream: int = 0
    after: tuple[int, ...] = ()

    @property
    def meets(self) -> Exchange | None:
        """The exchange every rank meets at this step (None: a step of this rank alone)."""
        return None


@dataclass(frozen=True)
class KernelStep(StepBase):
    """One kernel launch; by default a PyTorch operator launching one kernel."""

    cost: KernelCost
    phase: str
    stream: int = 0
    after: tuple[int, ...] = ()
    """Indices of earlier steps of this rank the kernel waits for (cudaStreamWaitEvent)."""
    new_op: bool = True
    """The kernel starts a framework operator (pays the framework's per-op cost); False for
    the further kernels of one operator, such as a library's per-expert GEMM loop."""
    op_kind: OpKind = OpKind.elementwise
    """The framework operator's kind (its dispatch cost, ``HostCosts.framework_op_s``); only
    charged when ``new_op``."""
    records_graph: bool = False
    """The forward records an autograd graph (training mode): the op also pays the autograd
    bookkeeping (``host.autograd_op_us``); only charged when ``new_op``."""
    call: RuntimeCall = RuntimeCall.launch_kernel
    """The runtime call that launches the kernel: cudaLaunchKernel, or ``cublasGemmEx`` for a
    library GEMM (heuristic + launch, ``host.cublas_call_us``)."""


HostKind = Literal["python"] | OpKind
"""What a :class:`HostStep` does: Python work (``host.python_step_us`` each), or the dispatch
of framework ops of one kind that launch nothing (a view op: ``host.view_op_us`` each)."""


@dataclass(frozen=True)
class HostStep(StepBase):
    """Host-only work that launches nothing: ``count`` times a Python step (a loop body, the
    processing of a ``.tolist()``) or the dispatch of a framework op of ``kind`` (a view op).
    It delays the rank's next launch by its cost and occupies no stream."""

    phase: str
    kind: HostKind = "python"
    count: int = 1
    records_graph: bool = False
    """Framework ops (not Python work) also pay the autograd bookkeeping."""


Collective = Literal["all_to_all", "all_gather", "reduce_scatter", "all_reduce"]
"""The NCCL collectives an :class:`Exchange` runs."""
RING_PASSES: dict[Collective, int] = {"all_gather": 1, "reduce_scatter": 1, "all_reduce": 2}
"""Ring passes of each ring collective (all-to-all is not a ring)."""


@dataclass(frozen=True)
class Exchange:
    """Bytes every rank sends every other rank in one step: ``send_B[i][j]`` from rank i to j.

    ``kind`` "nccl": a bulk-synchronous NCCL collective (setup cost; NCCL's SMs), which one
    ``collective`` says:

    - ``all_to_all`` (default): send/recv pairs start when both ranks have entered;
      ``send_B[i][j]`` is what rank i sends rank j (any matrix).
    - ``all_gather``: every rank contributes one shard of ``S`` bytes and ends with all N shards
      (output ``N*S`` per rank); ``send_B[i][j] = S`` for every i != j (build it with
      :meth:`ring`), so each rank receives ``(N-1)*S``. Run as NCCL's ring over the ranks in
      order (:class:`gpusim.execution.collectives.AllGather` of size ``N*S``).
    - ``reduce_scatter``: every rank holds an input of ``N*S`` bytes and ends with its reduced
      shard of ``S``; ``send_B[i][j] = S`` (the part of rank i's input that j reduces). Ring,
      size ``N*S``.
    - ``all_reduce``: every rank holds a buffer of ``N*S`` bytes; ``send_B[i][j] = S`` (one ring
      chunk). Ring, two passes, size ``N*S``.

    The ring collectives need the same shard from every rank (NCCL's all-gather and
    reduce-scatter take equal counts); the checks hold it. The moved bytes a workload reports
    (``send_B`` off the diagonal) are then the logical payload: (N-1)*S into each rank.

     "onesided": device-initiated copies (DeepEP, COMET)
    that start as soon as the sender enters, on ``comm_sms`` SMs. ``compute_s``/``chunks``: a
    GEMM fused into the same kernel (COMET) on the SMs left over, pipelined over ``chunks``
    chunks of the data: it ends at max(start + compute, data arrival + compute / chunks).
    Ranks meet at the same object: one instance per exchange, shared by every rank's program.
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
    collective: Collective = "all_to_all"
    """Which NCCL collective (``kind`` "nccl" only); see the class docstring for the bytes."""

    @classmethod
    def ring(
        cls, name: str, collective: Collective, n_ranks: int, shard_B: float, comm_sms: int
    ) -> Exchange:
        """An NCCL all-gather, reduce-scatter or all-reduce of ``shard_B`` bytes per rank."""
        send = np.full((n_ranks, n_ranks), float(shard_B))
        np.fill_diagonal(send, 0.0)
        return cls(name, send, "nccl", comm_sms, collective=collective)

    @property
    def shard_B(self) -> float:
        """A ring collective's per-rank shard ``S`` (the first off-diagonal entry)."""
        n = len(self.send_B)
        return float(self.send_B[0][1]) if n > 1 else 0.0


@dataclass(frozen=True)
class ExchangeStep(StepBase):
    """This rank's part of an :class:`Exchange`.

    Host cost: by default today's bare NCCL call (``nccl.host_call_us``) for an NCCL exchange
    and ``cudaLaunchKernel`` for a one-sided one. ``call=RuntimeCall.collective`` charges a
    torch.distributed call instead: the framework dispatch of ``op_kind`` (plus autograd
    bookkeeping when ``records_graph``) and the c10d ProcessGroupNCCL call
    (``host.collective_call_us``)."""

    exchange: Exchange
    phase: str
    stream: int = 0
    after: tuple[int, ...] = ()
    call: RuntimeCall | None = None
    op_kind: OpKind = OpKind.elementwise
    records_graph: bool = False

    @property
    def meets(self) -> Exchange:
        """The exchange every rank meets at this step."""
        return self.exchange


@dataclass(frozen=True)
class GraphStep(StepBase):
    """One ``cudaGraphLaunch`` of a straight-line graph of ``nodes`` (kernels), captured from
    the framework ops that would otherwise launch them one by one.

    Host cost: the graph launch call (``host.graph_launch_us``) whatever the node count; the
    graph holds one launch-queue slot. On the device the graph starts the doorbell latency after
    the call returns, once its stream's earlier work (and ``after``) is done; node i (1-based)
    starts at max(graph start + i x ``launch.graph_launch_per_kernel_us``, end of node i-1), as
    :meth:`gpusim.execution.runtime.HostRuntime.graph_launch`. Every node is recorded as a
    launch whose runtime call is the graph launch (one correlation id for all)."""

    nodes: tuple[KernelCost, ...]
    phase: str
    stream: int = 0
    after: tuple[int, ...] = ()
    name: str = "graph"


SyncKind = Literal["to_host", "stream", "device"]
"""What a :class:`SyncStep` waits for."""


@dataclass(frozen=True)
class SyncStep(StepBase):
    """A host synchronisation: the host waits until the awaited work has drained, pays the
    sync return latency (``launch.sync_return_us``), and only then issues its next step.

    - ``to_host`` (default): a device-to-host copy of ``d2h_bytes`` the host needs (``.item()``,
      ``.cpu()``, ``.tolist()``, the count of ``nonzero``); the copy follows every stream of
      its rank; the host pays the framework dispatch of ``op_kind`` (None: none, today's cost)
      and a cudaMemcpyAsync call.
    - ``stream``: ``cudaStreamSynchronize`` on ``stream``: waits for that stream only.
    - ``device``: ``torch.cuda.synchronize()``: waits for every stream of the rank's GPU.

    The waits of ``stream`` and ``device`` launch nothing and cost no call time beyond the
    return latency (``HostRuntime.stream_synchronize``); ``d2h_bytes`` must be 0 for them."""

    d2h_bytes: int
    phase: str
    kind: SyncKind = "to_host"
    stream: int = 0
    op_kind: OpKind | None = None


Step = KernelStep | HostStep | ExchangeStep | SyncStep | GraphStep
"""Every step kind the interpreters run."""

STEP_KINDS: tuple[type[StepBase], ...] = (KernelStep, HostStep, ExchangeStep, SyncStep, GraphStep)

Program = Iterable[Step]
"""One rank's steps: a sequence, or an iterator the interpreters consume lazily."""


@dataclass
class RankResult:
    """What one rank's program did: when it ended, its launches, SM-seconds and time per phase."""

    end_s: float = 0.0
    launches: int = 0
    busy_sm_s: float = 0.0
    phase_s: dict[str, float] = field(default_factory=dict)
    host_s: float = 0.0
    """Host time spent issuing steps (framework, runtime and Python costs; sync waits not)."""
    sync_wait_s: float = 0.0
    """Host time blocked in synchronisations (the wait and the return latency)."""
    exchange_s: float = 0.0
    """Time on the GPU in exchanges (collectives), from this rank's entry to its part's end."""

    @classmethod
    def zeroed(cls, phases: Phases) -> RankResult:
        """A result with every declared phase at zero."""
        return cls(phase_s=dict.fromkeys(phases, 0.0))


def host_cost_s(step: Step, costs: HostCosts, nccl_host_call_s: float) -> float:
    """Host time to issue ``step`` (before any wait), the one formula both interpreters use.

    Kernel: ``framework_op_s(op_kind, records_graph)`` if it starts an op, plus
    ``runtime_call_s(call)`` (with the defaults: ``launch.framework_op_us + launch_api_us``).
    Host step: ``count`` x its Python or dispatch cost. Exchange: see :class:`ExchangeStep`
    (``nccl_host_call_s``: the bare NCCL call, ``nccl.host_call_us``). Sync: the copy's
    dispatch and cudaMemcpyAsync for ``to_host``, nothing for ``stream``/``device``. Graph: one
    ``cudaGraphLaunch``."""
    if isinstance(step, GraphStep):
        return costs.runtime_call_s(RuntimeCall.graph_launch)
    if isinstance(step, KernelStep):
        op = costs.framework_op_s(step.op_kind, step.records_graph) if step.new_op else 0.0
        return op + costs.runtime_call_s(step.call)
    if isinstance(step, HostStep):
        if step.kind == "python":
            return step.count * costs.python_step_s
        return step.count * costs.framework_op_s(step.kind, step.records_graph)
    if isinstance(step, ExchangeStep):
        if step.call is not None:
            op = costs.framework_op_s(step.op_kind, step.records_graph)
            return op + costs.runtime_call_s(step.call)
        if step.exchange.kind == "nccl":
            return nccl_host_call_s
        return costs.runtime_call_s(RuntimeCall.launch_kernel)
    if step.kind != "to_host":
        return 0.0
    op = 0.0 if step.op_kind is None else costs.framework_op_s(step.op_kind)
    return op + costs.runtime_call_s(RuntimeCall.memcpy_async)


class StepCosts:
    """:func:`host_cost_s` of each step, and a kernel's framework dispatch before its runtime
    call, computed once per step object: programs repeat their step objects (the layers of a
    forward, the passes of a decode), and the interpreters ask for every step they issue."""

    def __init__(self, costs: HostCosts, nccl_host_call_s: float) -> None:
        self.costs = costs
        self.nccl_host_call_s = nccl_host_call_s
        self._known: dict[int, tuple[Step, float, float]] = {}

    def of(self, step: Step) -> tuple[float, float]:
        """``(host cost, dispatch)``: the dispatch is the framework op's share of the host cost
        for a kernel that opens an op (its runtime call begins after it), else 0."""
        known = self._known.get(id(step))
        if known is None or known[0] is not step:
            cost = host_cost_s(step, self.costs, self.nccl_host_call_s)
            op = 0.0
            if isinstance(step, KernelStep) and step.new_op:
                op = self.costs.framework_op_s(step.op_kind, step.records_graph)
            known = self._known[id(step)] = (step, cost, op)
        return known[1], known[2]


@dataclass
class _Meeting:
    """The first rank seen at one exchange (the n-th exchange of every program)."""

    exchange: Exchange
    rank: int
    step: int


class ProgramCheck:
    """Checks per-rank programs step by step, as an interpreter consumes them.

    Per step: a known kind, a declared phase, a non-negative stream, ``after`` indices of earlier
    steps of the same rank, and, at an exchange, the same :class:`Exchange` object every other
    rank met as its exchange of that number, with one row and column of ``send_B`` per rank.
    At the end (:meth:`finish`): every program ran to its end and met every exchange.
    """

    def __init__(self, ranks: Sequence[str], phases: Phases) -> None:
        """Checks for ``ranks``' programs with the family's declared ``phases``."""
        self.ranks = list(ranks)
        self.phases = frozenset(phases)
        self._next_step = [0] * len(ranks)
        self._met: list[list[int]] = [[] for _ in ranks]
        """Per rank: the step index of each exchange it met."""
        self._meetings: list[_Meeting] = []
        self._ended = [False] * len(ranks)
        self._passed: dict[int, object] = {}
        """id -> step for steps that passed and whose checks do not depend on where they stand
        (no ``after``, no exchange): a program repeating one step object is checked once."""

    def _fail(self, rank: int, step: int | None, reason: str) -> SimulationError:
        where = f"rank '{self.ranks[rank]}'" + ("" if step is None else f" step {step}")
        return SimulationError(f"program of {where}: {reason}")

    def step(self, rank: int, step: object) -> None:
        """Check the next step of ``rank``'s program."""
        k = self._next_step[rank]
        self._next_step[rank] = k + 1
        if self._passed.get(id(step)) is step:
            return
        if not isinstance(step, STEP_KINDS):
            raise self._fail(rank, k, f"{type(step).__name__} is not a program step")
        if step.phase not in self.phases:
            known = ", ".join(sorted(self.phases))
            raise self._fail(rank, k, f"phase '{step.phase}' is not one of {known}")
        if not (isinstance(step.stream, int) and step.stream >= 0):
            raise self._fail(rank, k, f"stream {step.stream!r} is not a non-negative integer")
        for i in step.after:
            if not (isinstance(i, int) and 0 <= i < k):
                raise self._fail(rank, k, f"after index {i!r} is not an earlier step")
        if isinstance(step, HostStep) and not (isinstance(step.count, int) and step.count >= 0):
            raise self._fail(rank, k, f"host step count {step.count!r} is not a count")
        if isinstance(step, GraphStep) and not step.nodes:
            raise self._fail(rank, k, "a graph needs at least one node")
        if isinstance(step, SyncStep) and step.kind != "to_host" and step.d2h_bytes:
            raise self._fail(rank, k, f"a '{step.kind}' sync copies nothing (d2h_bytes 0)")
        exchange = step.meets
        if exchange is not None:
            self._meet(rank, k, exchange)
        elif not step.after:
            self._passed[id(step)] = step

    def _meet(self, rank: int, k: int, exchange: Exchange) -> None:
        n = len(self.ranks)
        if np.shape(exchange.send_B) != (n, n):
            shape = np.shape(exchange.send_B)
            raise self._fail(rank, k, f"exchange '{exchange.name}' has send_B {shape}, not {n}x{n}")
        if exchange.collective != "all_to_all":
            off = exchange.send_B[~np.eye(n, dtype=bool)]
            if exchange.kind != "nccl" or (off.size and not np.all(off == off[0])):
                raise self._fail(
                    rank,
                    k,
                    f"exchange '{exchange.name}': an NCCL {exchange.collective} needs the same "
                    "shard from every rank (send_B[i][j] = S off the diagonal)",
                )
        met = self._met[rank]
        number = len(met)
        met.append(k)
        if number == len(self._meetings):
            self._meetings.append(_Meeting(exchange, rank, k))
            return
        first = self._meetings[number]
        if first.exchange is not exchange:
            raise self._fail(
                rank,
                k,
                f"exchange '{exchange.name}' where rank '{self.ranks[first.rank]}' step "
                f"{first.step} met exchange '{first.exchange.name}' (exchange {number} of "
                "every program): ranks must meet the same exchanges in the same order",
            )

    def ended(self, rank: int) -> None:
        """``rank``'s program has no more steps."""
        self._ended[rank] = True

    def finish(self) -> None:
        """Check that every program ended and every exchange was met by every rank."""
        for r, met in enumerate(self._met):
            if self._ended[r] and len(met) < len(self._meetings):
                first = self._meetings[len(met)]
                raise self._fail(
                    r,
                    None,
                    f"ended after {len(met)} exchanges, never meeting exchange "
                    f"'{first.exchange.name}' (rank '{self.ranks[first.rank]}' step {first.step})",
                )
        for r, ended in enumerate(self._ended):
            if not ended:
                stopped = f"stopped before step {self._next_step[r]}"
                raise self._fail(r, None, f"did not run to its end ({stopped})")

    def checked(self, rank: int, program: Program) -> Iterator[Step]:
        """``rank``'s steps, each checked as it is drawn; the end is recorded."""
        for step in program:
            self.step(rank, step)
            yield step
        self.ended(rank)


def validate_programs(
    ranks: Sequence[str], programs: Sequence[Program], phases: Phases
) -> tuple[ProgramCheck, list[Iterator[Step]]]:
    """The one check both interpreters call before running ``programs`` (one per rank).

    Sequences are checked whole now (a broken program fails before any time passes); iterators
    are wrapped to be checked as they are consumed. Returns the check, whose :meth:`finish` the
    interpreter calls once every rank is done, and each rank's steps to run.
    """
    if len(programs) != len(ranks):
        raise SimulationError(f"{len(programs)} programs for {len(ranks)} ranks")
    check = ProgramCheck(ranks, phases)
    steps: list[Iterator[Step]] = []
    lazy = any(not isinstance(p, Sequence) for p in programs)
    if lazy:
        return check, [check.checked(r, p) for r, p in enumerate(programs)]
    for r, program in enumerate(programs):
        for step in program:
            check.step(r, step)
        check.ended(r)
        steps.append(iter(program))
    check.finish()
    return check, steps
