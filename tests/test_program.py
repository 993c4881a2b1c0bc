"""The program format of host-driven work: checks shared by both interpreters, lazy programs,
and the DES and closed form agreeing on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from conftest import make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.errors import SimulationError
from gpusim.execution.program import (
    Exchange,
    ExchangeStep,
    KernelStep,
    Program,
    ProgramCheck,
    RankResult,
    Step,
    SyncStep,
    validate_programs,
)
from gpusim.execution.program_analytic import run_analytic
from gpusim.execution.program_des import run_des
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.spec.moe import DeepEPStrategy, MegatronStrategy
from gpusim.workloads.moe import HOST_DRIVEN
from gpusim.workloads.moe.hostdriven import PHASES, elementwise
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch

G = 4
GPUS = [f"gpu{i}" for i in range(G)]
PHASE_NAMES = ("compute", "talk")

Runner = Callable[[Sequence[Program], Sequence[str]], list[RankResult]]


def _des(programs: Sequence[Program], phases: Sequence[str]) -> list[RankResult]:
    node = Node(make_star_topology(G), make_profile(), Simulation())
    return run_des(node, GPUS, programs, phases)


def _analytic(programs: Sequence[Program], phases: Sequence[str]) -> list[RankResult]:
    return run_analytic(Platform.of(make_star_topology(G), make_profile()), GPUS, programs, phases)


BOTH = pytest.mark.parametrize("run", [_des, _analytic], ids=["des", "analytic"])


def _kernel(phase: str = "compute", stream: int = 0, after: tuple[int, ...] = ()) -> KernelStep:
    rates = Platform.of(make_star_topology(G), make_profile()).gpu_rates("gpu0")
    return KernelStep(elementwise("scale", 1 << 20, 1 << 20, rates), phase, stream, after)


def _exchange(name: str, size_B: float = 1 << 20) -> Exchange:
    send = np.full((G, G), size_B)
    np.fill_diagonal(send, 0.0)
    return Exchange(name, send, "nccl", comm_sms=16)


def _lazy(steps: Sequence[Step]) -> Iterator[Step]:
    yield from steps


@BOTH
def test_ranks_meeting_different_exchanges_is_an_error_naming_rank_and_step(run: Runner) -> None:
    a, b = _exchange("a"), _exchange("b")
    programs: list[list[Step]] = [
        [_kernel(), ExchangeStep(a, "talk"), ExchangeStep(b, "talk")] for _ in GPUS
    ]
    programs[2] = [_kernel(), ExchangeStep(b, "talk"), ExchangeStep(a, "talk")]
    with pytest.raises(SimulationError, match=r"rank 'gpu2' step 1: exchange 'b' where rank "):
        run(programs, PHASE_NAMES)


@BOTH
def test_lazy_programs_meeting_different_exchanges_fail_as_they_are_drawn(run: Runner) -> None:
    a, b = _exchange("a"), _exchange("b")
    steps: list[list[Step]] = [[_kernel(), ExchangeStep(a, "talk"), _kernel()] for _ in GPUS]
    steps[3] = [_kernel(), _kernel(), ExchangeStep(b, "talk")]
    with pytest.raises(
        SimulationError, match=r"rank 'gpu3' step 2: exchange 'b' where rank 'gpu0'"
    ):
        run([_lazy(s) for s in steps], PHASE_NAMES)


@BOTH
@pytest.mark.parametrize("lazy", [False, True])
def test_a_rank_that_skips_an_exchange_is_an_error(run: Runner, lazy: bool) -> None:
    # without the check the DES left the other ranks waiting at the exchange, unfinished
    a = _exchange("a")
    steps: list[list[Step]] = [[_kernel(), ExchangeStep(a, "talk")] for _ in GPUS]
    steps[1] = [_kernel()]
    programs = [_lazy(s) for s in steps] if lazy else steps
    with pytest.raises(SimulationError, match=r"rank 'gpu1'.*never meeting exchange 'a'"):
        run(programs, PHASE_NAMES)


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        (_kernel(after=(1,)), r"after index 1 is not an earlier step"),
        (_kernel(after=(-1,)), r"after index -1 is not an earlier step"),
        (_kernel("gemm"), r"phase 'gemm' is not one of compute, talk"),
        (_kernel(stream=-2), r"stream -2 is not a non-negative integer"),
        ("not a step", r"str is not a program step"),
        (
            ExchangeStep(Exchange("x", np.zeros((2, 2)), "nccl", 16), "talk"),
            r"exchange 'x' has send_B \(2, 2\), not 4x4",
        ),
    ],
)
def test_malformed_steps_fail_before_anything_runs(step: object, reason: str) -> None:
    # the programs hold a non-step on purpose: what a caller outside the type checker can pass
    programs: list[list[Any]] = [[SyncStep(8, "talk"), step] for _ in GPUS]
    with pytest.raises(SimulationError, match=rf"program of rank 'gpu0' step 1: {reason}"):
        validate_programs(GPUS, programs, PHASE_NAMES)


def test_one_program_per_rank() -> None:
    with pytest.raises(SimulationError, match="3 programs for 4 ranks"):
        validate_programs(GPUS, [[], [], []], PHASE_NAMES)


def test_a_program_left_unfinished_is_reported_with_where_it_stopped() -> None:
    # what the DES meets when a rank's host thread blocks for good (e.g. a sync on a stream
    # waiting at an exchange the others never reach)
    check = ProgramCheck(GPUS[:2], PHASE_NAMES)
    check.step(0, _kernel())
    check.ended(0)
    check.step(1, _kernel())
    with pytest.raises(
        SimulationError, match=r"'gpu1': did not run to its end \(stopped before step 1\)"
    ):
        check.finish()


@BOTH
def test_results_account_time_in_the_declared_phases(run: Runner) -> None:
    ex = _exchange("a")
    programs: list[list[Step]] = [
        [_kernel(), ExchangeStep(ex, "talk"), SyncStep(8, "talk")] for _ in GPUS
    ]
    results = run(programs, PHASE_NAMES)
    for res in results:
        assert set(res.phase_s) == set(PHASE_NAMES)
        assert res.phase_s["compute"] > 0 and res.phase_s["talk"] > 0
        assert res.launches == 3


def _moe_programs(strategy: MegatronStrategy | DeepEPStrategy) -> list[list[Step]]:
    g = LayerGeometry(
        gpus=GPUS,
        tokens_per_gpu=512,
        hidden=256,
        intermediate=256,
        experts=8,
        top_k=2,
        capacity_factor=1.0,
        dtype=MegatronStrategy().dtype,
    )
    counts = np.random.default_rng(7).integers(20, 200, size=(G, 8))
    batch = RoutedBatch(counts=counts, dropped=0, maxvio_batch=0.0)
    rates = Platform.of(make_star_topology(G), make_profile()).rates_of(GPUS)
    programs, _ = HOST_DRIVEN[strategy.name](g, batch, strategy, rates, 16)
    return programs


@BOTH
@pytest.mark.parametrize("strategy", [MegatronStrategy(), DeepEPStrategy()], ids=lambda s: s.name)
def test_a_generator_program_gives_the_same_result_as_its_list(
    run: Runner, strategy: MegatronStrategy | DeepEPStrategy
) -> None:
    programs = _moe_programs(strategy)
    eager = run(programs, PHASES)
    lazy = run([_lazy(p) for p in programs], PHASES)
    assert lazy == eager  # exact: the same steps in the same order
    assert max(r.end_s for r in eager) > 0


def test_the_des_draws_each_step_when_the_host_thread_reaches_it() -> None:
    # a decode loop may decide its next step from the simulated state: the DES draws step i+1
    # only after the host issued step i (here: after its launch cost)
    node = Node(make_star_topology(G), make_profile(), Simulation())
    drawn_at: list[float] = []

    def decode() -> Iterator[Step]:
        for _ in range(3):
            drawn_at.append(float(node.sim.env.now))
            yield _kernel()

    run_des(node, GPUS, [decode() for _ in GPUS], PHASE_NAMES)
    per_rank = drawn_at[0::G]
    assert per_rank[0] == 0.0 and per_rank[0] < per_rank[1] < per_rank[2]


def test_the_closed_form_draws_no_rank_past_an_exchange_before_all_reach_it() -> None:
    ex = _exchange("a")
    drawn: list[tuple[int, int]] = []

    def program(rank: int) -> Iterator[Step]:
        steps: list[Step] = [_kernel(), ExchangeStep(ex, "talk"), _kernel()]
        for i, step in enumerate(steps):
            drawn.append((rank, i))
            yield step

    _analytic([program(r) for r in range(G)], PHASE_NAMES)
    first_after = min(drawn.index((r, 2)) for r in range(G))
    last_at = max(drawn.index((r, 1)) for r in range(G))
    assert last_at < first_after
