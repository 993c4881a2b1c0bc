"""The analytic program interpreter trims what it keeps per launch (held SM intervals, launch
queues) so that memory does not grow with a run's launches, and keeps the launch records of the
ranks a family reads only; neither may change a result."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

import gpusim.execution.program_analytic as program_analytic
import gpusim.workloads.llm
from gpusim import simulate
from gpusim.spec.loading import load_scenario
from gpusim.spec.scenario import Fidelity

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("scenario", "overrides"),
    [
        ("llm_opt66b_flash_llm_tp2_a100.json", {"workload.model": "opt-30b", "workload.batch": 16}),
        ("llm_llama31_8b_decode_h100_pcie.json", {}),
        ("launch_bound_chain_h100_pcie.json", {}),
    ],
)
def test_trimming_changes_no_result(
    monkeypatch: pytest.MonkeyPatch, scenario: str, overrides: dict[str, object]
) -> None:
    base = load_scenario(ROOT / "workloads" / scenario, overrides)
    options = base.options.model_copy(update={"fidelity": Fidelity.analytic, "trace": False})
    resolved = base.model_copy(update={"options": options})

    def run(prune_min: int) -> object:
        monkeypatch.setattr(program_analytic, "HELD_PRUNE_MIN", prune_min)
        result = simulate(resolved)
        return (result.makespan_s, result.metrics, result.per_gpu, result.series)

    # trimming at every launch against never trimming (a bound no run reaches)
    assert run(1) == run(10**9)


@pytest.mark.parametrize(("tensor_parallel", "launch"), [(2, "eager"), (4, "eager"), (4, "graph")])
def test_llm_keeps_only_the_lead_ranks_launches(
    monkeypatch: pytest.MonkeyPatch, tensor_parallel: int, launch: str
) -> None:
    """The LLM family logs the lead rank's launches only (the outcome reads no other): the same
    outcome, the same lead records, as an interpreter that logs every rank's."""
    base = load_scenario(
        ROOT / "workloads" / "llm_opt66b_flash_llm_tp2_a100.json",
        {
            "workload.model": "opt-30b",
            "workload.tensor_parallel": tensor_parallel,
            "workload.generated_tokens": 4,
            "workload.launch": launch,
        },
    )
    options = base.options.model_copy(update={"fidelity": Fidelity.analytic, "trace": False})
    resolved = base.model_copy(update={"options": options})
    made: list[program_analytic.ProgramAnalytic] = []

    class Logged(program_analytic.ProgramAnalytic):
        def __init__(self, *args: Any, log_all: bool = False, **kwargs: Any) -> None:
            if log_all:
                kwargs["logged_gpus"] = None
            super().__init__(*args, **kwargs)
            made.append(self)

    def run(log_all: bool) -> tuple[object, list[str], set[str]]:
        made.clear()
        cls = functools.partial(Logged, log_all=log_all)
        monkeypatch.setattr(gpusim.workloads.llm, "ProgramAnalytic", cls)
        result = simulate(resolved)
        (interpreter,) = made
        lead = interpreter.ranks[0]
        records = [repr(r) for r in interpreter.log.records if r.gpu == lead]
        gpus = {r.gpu for r in interpreter.log.records}
        return (result.makespan_s, result.metrics, result.per_gpu, result.series), records, gpus

    kept, kept_records, kept_gpus = run(log_all=False)
    every, every_records, every_gpus = run(log_all=True)
    assert kept == every
    assert kept_records == every_records and kept_records
    assert len(kept_gpus) == 1 and len(every_gpus) == tensor_parallel
