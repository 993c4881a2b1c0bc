"""Host-driven work as per-rank programs: the format both fidelities interpret, and its checks.

A workload family writes, for every rank, a program: an iterable of steps that rank's host
thread issues in order. The step kinds:

- :class:`KernelStep`: one kernel launch (a framework operator: framework cost + launch on a
  stream), optionally waiting for earlier steps of the same rank (``after``);
- :class:`ExchangeStep`: this rank's part of an :class:`Exchange`, bytes moved between ranks
  (an NCCL collective, or device-initiated one-sided copies, optionally fused with a GEMM):
  every rank meets the same exchanges in the same order;
- :class:`SyncStep`: a device-to-host copy the host waits for.

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
from gpusim.execution.launch import LaunchTimes
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


@dataclass(frozen=True)
class Exchange:
    """Bytes every rank sends every other rank in one step: ``send_B[i][j]`` from rank i to j.

    ``kind`` "nccl": a bulk-synchronous NCCL all-to-all (send/recv pairs start when both ranks
    have entered; setup cost; NCCL's SMs). "onesided": device-initiated copies (DeepEP, COMET)
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


@dataclass(frozen=True)
class ExchangeStep(StepBase):
    """This rank's part of an :class:`Exchange`."""

    exchange: Exchange
    phase: str
    stream: int = 0
    after: tuple[int, ...] = ()

    @property
    def meets(self) -> Exchange:
        """The exchange every rank meets at this step."""
        return self.exchange


@dataclass(frozen=True)
class SyncStep(StepBase):
    """A device-to-host copy of ``d2h_bytes`` that the host waits for (``.cpu()`` / ``.item()``):
    the host cannot run ahead of the GPU past this point. It follows every stream of its rank."""

    d2h_bytes: int
    phase: str


Step = KernelStep | ExchangeStep | SyncStep
"""Every step kind the interpreters run."""

STEP_KINDS: tuple[type[StepBase], ...] = (KernelStep, ExchangeStep, SyncStep)

Program = Iterable[Step]
"""One rank's steps: a sequence, or an iterator the interpreters consume lazily."""


@dataclass
class RankResult:
    """What one rank's program did: when it ended, its launches, SM-seconds and time per phase."""

    end_s: float = 0.0
    launches: int = 0
    busy_sm_s: float = 0.0
    phase_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def zeroed(cls, phases: Phases) -> RankResult:
        """A result with every declared phase at zero."""
        return cls(phase_s=dict.fromkeys(phases, 0.0))


def host_cost_s(step: Step, times: LaunchTimes) -> float:
    """Host time to issue a launching step: the framework's per-op cost for a kernel that
    starts an operator, plus the runtime API call."""
    if isinstance(step, KernelStep) and step.new_op:
        return times.framework_op_s + times.api_s
    return times.api_s


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

    def _fail(self, rank: int, step: int | None, reason: str) -> SimulationError:
        where = f"rank '{self.ranks[rank]}'" + ("" if step is None else f" step {step}")
        return SimulationError(f"program of {where}: {reason}")

    def step(self, rank: int, step: object) -> None:
        """Check the next step of ``rank``'s program."""
        k = self._next_step[rank]
        self._next_step[rank] = k + 1
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
        exchange = step.meets
        if exchange is not None:
            self._meet(rank, k, exchange)

    def _meet(self, rank: int, k: int, exchange: Exchange) -> None:
        n = len(self.ranks)
        if np.shape(exchange.send_B) != (n, n):
            shape = np.shape(exchange.send_B)
            raise self._fail(rank, k, f"exchange '{exchange.name}' has send_B {shape}, not {n}x{n}")
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
