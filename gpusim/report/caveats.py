"""Where the model is known to be off, for the systems a report compares, from the validation
ledger.

A ledger case *covers* a compared system when both run the same workload kind, with the same
strategy (for workloads that have one, such as ``moe_layer``), on the same GPU model: FM-2
(Megatron's MoE layer on H100 SXM) covers every Megatron system of an H100 SXM MoE sweep, whatever
the GPU count. Each covering case is simulated (:func:`gpusim.validate.run_case`) and reported as:

* ``off``: a held-out prediction outside its tolerance; the report warns that comparisons with
  these systems may reflect the model's error, not a finding;
* ``within``: a held-out prediction within its tolerance;
* ``fitted``: a calibration point, agreeing by construction, so it shows nothing about accuracy;
* ``error``: the case could not run.

A report whose systems no case covers says that they are unvalidated. The sweep's systems are
read from its sweep file (the manifest's ``sweep_file``); the ledger is the shipped
``validation/calibration_points.json`` unless the caller names another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gpusim.errors import SpecError
from gpusim.spec.scenario import ResolvedScenario
from gpusim.sweep.expand import iter_points
from gpusim.sweep.spec import load_sweep
from gpusim.validate import load_ledger
from gpusim.validate.ledger import LedgerCase
from gpusim.validate.run import CaseResult, case_scenario, run_case

Standing = Literal["off", "within", "fitted", "error"]


@dataclass(frozen=True)
class Footprint:
    """What a scenario exercises, as far as matching it to ledger cases goes."""

    kind: str
    strategy: str
    gpu_models: frozenset[str]

    def covers(self, other: Footprint) -> bool:
        """Same workload kind and strategy, and a GPU model in common."""
        same = (self.kind, self.strategy) == (other.kind, other.strategy)
        return same and bool(self.gpu_models & other.gpu_models)


@dataclass(frozen=True)
class Caveat:
    """One ledger case that covers some of a report's systems, and how the model fares on it."""

    case_id: str
    source: str
    systems: tuple[str, ...]
    standing: Standing
    metric: str
    unit: str
    expected: float
    predicted: float | None
    error_pct: float | None
    tolerance_pct: float
    error: str | None = None

    @property
    def sentence(self) -> str:
        """The caveat as one sentence for the report."""
        who = ", ".join(self.systems)
        if self.standing == "error":
            return f"{self.case_id} ({who}): the validation case did not run: {self.error}"
        got = (
            f"{self.predicted:.4g} {self.unit} against the published {self.expected:.4g} "
            f"{self.unit}"
        )
        err = f"{self.error_pct:+.1f} %" if self.error_pct is not None else "n/a"
        if self.standing == "fitted":
            return f"{self.case_id} ({who}): calibration point, fitted ({err}); shows no accuracy."
        if self.standing == "within":
            return (
                f"{self.case_id} ({who}): predicted {got} ({err}, tolerance "
                f"{self.tolerance_pct:g} %)."
            )
        return (
            f"{self.case_id} ({who}): the model predicts {got} ({err}, tolerance "
            f"{self.tolerance_pct:g} %): differences involving these systems may be the model's "
            "error, not a finding."
        )


def footprint(scenario: ResolvedScenario) -> Footprint:
    """The workload kind, strategy name (``""`` when the workload has none) and GPU models of
    ``scenario``."""
    workload = scenario.workload
    strategy = getattr(getattr(workload, "strategy", None), "name", "")
    models = frozenset(gpu.model.name for gpu in scenario.topology.gpus())
    return Footprint(workload.kind, str(strategy), models)


def sweep_footprints(sweep_file: Path) -> dict[str, Footprint]:
    """Each system of the sweep in ``sweep_file`` -> the footprint of its first point (the axes
    at their first values, one seed: the workload kind, strategy and GPU models of a system do not
    change along the usual axes). A sweep without systems has one, named ``""``."""
    sweep = load_sweep(sweep_file)
    first = sweep.model_copy(
        update={"axes": {p: v[:1] for p, v in sweep.axes.items()}, "seeds": [], "replicas": None}
    )
    return {point.system: footprint(point.scenario) for point in iter_points(first, sweep_file)}


def _standing(case: LedgerCase, result: CaseResult) -> Standing:
    if not result.ran:
        return "error"
    if case.kind == "calibration":
        return "fitted"
    return "within" if result.within else "off"


def _caveat(case: LedgerCase, systems: Sequence[str], result: CaseResult) -> Caveat:
    return Caveat(
        case_id=case.id,
        source=case.source,
        systems=tuple(systems),
        standing=_standing(case, result),
        metric=case.metric,
        unit=case.expected.unit,
        expected=case.expected.value,
        predicted=result.predicted,
        error_pct=result.error_pct,
        tolerance_pct=case.tolerance_pct,
        error=result.error,
    )


def covering_cases(
    cases: Iterable[LedgerCase],
    ledger_dir: Path,
    systems: Mapping[str, Footprint],
) -> list[tuple[LedgerCase, list[str]]]:
    """Each case that covers at least one of ``systems`` (name -> footprint), with those names.
    A case whose scenario does not load covers nothing."""
    out = []
    for case in cases:
        try:
            case_print = footprint(case_scenario(case, ledger_dir))
        except Exception:  # a broken case is the ledger's problem (gpusim validate says so)
            continue
        covered = [name for name, fp in systems.items() if case_print.covers(fp)]
        if covered:
            out.append((case, covered))
    return out


def known_deviations(ledger_path: Path, systems: Mapping[str, Footprint]) -> list[Caveat]:
    """Run the cases of the ledger at ``ledger_path`` that cover ``systems`` and return them as
    caveats, the cases the model is off on first."""
    ledger = load_ledger(ledger_path)
    found = covering_cases(ledger.cases, ledger_path.parent, systems)
    caveats = [_caveat(c, names, run_case(c, ledger_path.parent)) for c, names in found]
    order = {"off": 0, "error": 1, "within": 2, "fitted": 3}
    return sorted(caveats, key=lambda c: order[c.standing])


def report_caveats(manifest: Mapping[str, Any], ledger_path: Path) -> list[Caveat] | None:
    """The caveats for the sweep of ``manifest`` from the ledger at ``ledger_path``; None when
    they cannot be found (the sweep file or the ledger is missing or does not load), so the
    report can say that it was not checked."""
    sweep_file = Path(str(manifest.get("sweep_file") or ""))
    if not sweep_file.is_file() or not ledger_path.is_file():
        return None
    try:
        return known_deviations(ledger_path, sweep_footprints(sweep_file))
    except SpecError:
        return None
