"""The analytic program interpreter trims what it keeps per launch (held SM intervals, launch
queues) so that memory does not grow with a run's launches; trimming must change no result."""

from __future__ import annotations

from pathlib import Path

import pytest

import gpusim.execution.program_analytic as program_analytic
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
