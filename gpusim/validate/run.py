"""Running a ledger: simulate every case, compare with the published value, summarise.

A case whose scenario fails to load or simulate, or whose metric path names nothing, becomes an
error row carrying the message; the other cases still run.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gpusim.errors import SimulationError, SpecError, json_path
from gpusim.export.files import write_json_atomic, write_text_atomic
from gpusim.simulate import simulate
from gpusim.spec.loading import load_scenario, scenario_from_dict
from gpusim.spec.scenario import ResolvedScenario
from gpusim.validate.ledger import (
    CaseKind,
    Ledger,
    LedgerCase,
    check_ledger,
    metric_unit,
    unit_info,
)

#: Columns of the CSV report, in order (``CaseResult.to_row`` keys).
CSV_COLUMNS: Final = (
    "id",
    "source",
    "kind",
    "metric",
    "unit",
    "expected",
    "predicted",
    "error_pct",
    "tolerance_pct",
    "within",
    "profile_id",
    "error",
)


class MetricPathError(LookupError):
    """A metric path that names no number in a result summary."""


@dataclass(frozen=True)
class CaseResult:
    """One case's outcome. ``expected`` and ``predicted`` are in the ledger's ``unit``;
    ``error_pct`` is signed, (predicted - expected) / expected * 100. An error row has
    ``predicted``, ``error_pct`` and ``profile_id`` None, ``within`` False and ``error`` set."""

    id: str
    source: str
    kind: CaseKind
    metric: str
    unit: str
    expected: float
    predicted: float | None
    error_pct: float | None
    tolerance_pct: float
    within: bool
    profile_id: str | None = None
    error: str | None = None

    @property
    def ran(self) -> bool:
        """Whether the case produced a prediction (it is not an error row)."""
        return self.error is None

    def to_row(self) -> dict[str, Any]:
        """The case as one flat record with the ``CSV_COLUMNS`` keys."""
        return {col: getattr(self, col) for col in CSV_COLUMNS}


@dataclass(frozen=True)
class _Stats:
    median_abs_error_pct: float | None
    max_abs_error_pct: float | None
    share_within: float | None


def _stats(cases: Sequence[CaseResult]) -> _Stats:
    errors = [abs(c.error_pct) for c in cases if c.ran and c.error_pct is not None]
    if not errors:
        return _Stats(None, None, None)
    within = sum(1 for c in cases if c.ran and c.within)
    return _Stats(statistics.median(errors), max(errors), within / len(errors))


@dataclass(frozen=True)
class ValidationReport:
    """Every case's result and summary statistics. The statistics cover the cases that ran
    (error rows excluded) and are None when none did; the ``prediction_`` ones cover only
    ``kind == "prediction"`` cases, the only ones that measure predictive accuracy."""

    name: str
    cases: tuple[CaseResult, ...]

    @property
    def median_abs_error_pct(self) -> float | None:
        """Median |error_pct| over the cases that ran."""
        return _stats(self.cases).median_abs_error_pct

    @property
    def max_abs_error_pct(self) -> float | None:
        """Largest |error_pct| over the cases that ran."""
        return _stats(self.cases).max_abs_error_pct

    @property
    def share_within(self) -> float | None:
        """Fraction (0-1) of the cases that ran whose error is within their tolerance."""
        return _stats(self.cases).share_within

    @property
    def prediction_median_abs_error_pct(self) -> float | None:
        """Median |error_pct| over the prediction cases that ran."""
        return _stats(self._predictions()).median_abs_error_pct

    @property
    def prediction_max_abs_error_pct(self) -> float | None:
        """Largest |error_pct| over the prediction cases that ran."""
        return _stats(self._predictions()).max_abs_error_pct

    @property
    def prediction_share_within(self) -> float | None:
        """Fraction (0-1) of the prediction cases that ran that are within tolerance."""
        return _stats(self._predictions()).share_within

    @property
    def errors(self) -> int:
        """How many cases failed to run (error rows)."""
        return sum(1 for c in self.cases if not c.ran)

    @property
    def all_within(self) -> bool:
        """Every case ran and is within its tolerance."""
        return all(c.ran and c.within for c in self.cases)

    def _predictions(self) -> list[CaseResult]:
        return [c for c in self.cases if c.kind == "prediction"]

    def to_rows(self) -> list[dict[str, Any]]:
        """One record per case with the ``CSV_COLUMNS`` keys (None for absent values)."""
        return [c.to_row() for c in self.cases]

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data: the summary statistics and every case."""
        return {
            "ledger": self.name,
            "cases_total": len(self.cases),
            "cases_errored": self.errors,
            "median_abs_error_pct": self.median_abs_error_pct,
            "max_abs_error_pct": self.max_abs_error_pct,
            "share_within": self.share_within,
            "prediction_median_abs_error_pct": self.prediction_median_abs_error_pct,
            "prediction_max_abs_error_pct": self.prediction_max_abs_error_pct,
            "prediction_share_within": self.prediction_share_within,
            "cases": self.to_rows(),
        }

    def to_csv(self) -> str:
        """The rows as CSV text with a header (empty cells for absent values)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in self.to_rows():
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})
        return buf.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_report(report: ValidationReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``<name>.csv`` and ``<name>.json`` into ``out_dir`` atomically; returns both paths."""
    folder = Path(out_dir)
    csv_path = folder / f"{report.name}.csv"
    json_path_ = folder / f"{report.name}.json"
    write_text_atomic(csv_path, report.to_csv())
    write_json_atomic(json_path_, report.to_json())
    return csv_path, json_path_


def lookup_metric(summary: dict[str, Any], metric: str) -> float:
    """The number at a dotted ``metric`` path of a result summary. Keys may themselves contain
    dots (GPU ids such as ``n0.gpu0``): at each level the longest matching key wins. List
    elements are addressed by index. Raises MetricPathError naming the path."""
    parts = metric.split(".")
    node: Any = summary
    i = 0
    where = "the result summary"
    while i < len(parts):
        if isinstance(node, dict):
            for j in range(len(parts), i, -1):
                key = ".".join(parts[i:j])
                if key in node:
                    node, where, i = node[key], f"'{'.'.join(parts[:j])}'", j
                    break
            else:
                known = ", ".join(sorted(str(k) for k in node)[:12]) or "nothing"
                raise MetricPathError(
                    f"metric '{metric}': no '{parts[i]}' in {where} (has: {known})"
                )
        elif isinstance(node, list) and parts[i].isdigit() and int(parts[i]) < len(node):
            node, i = node[int(parts[i])], i + 1
        else:
            raise MetricPathError(f"metric '{metric}': {where} is not an object")
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise MetricPathError(f"metric '{metric}': {where} is not a number")
    return float(node)


def case_scenario(case: LedgerCase, ledger_dir: str | Path) -> ResolvedScenario:
    """A case's scenario with its overrides applied as ``gpusim run --set`` applies them (file
    paths and an inline scenario's references relative to ``ledger_dir``)."""
    base = Path(ledger_dir)
    if isinstance(case.scenario, str):
        path = Path(case.scenario)
        return load_scenario(path if path.is_absolute() else base / path, case.overrides)
    # an inline scenario is named after its case in errors and resolves references like a file
    # in the ledger's folder would
    label = base / f"<inline scenario of case {case.id}>"
    return scenario_from_dict(case.scenario, label, case.overrides)


def check_case_scenarios(ledger: Ledger, ledger_file: str | Path) -> None:
    """Load every case's scenario (what ``gpusim check`` does for a ledger): the first that
    does not load is a SpecError at that case's ``scenario``, with the scenario's own error."""
    for i, case in enumerate(ledger.cases):
        try:
            case_scenario(case, Path(ledger_file).parent)
        except SpecError as exc:
            raise SpecError(ledger_file, json_path(("cases", i, "scenario")), str(exc)) from None


def run_case(case: LedgerCase, ledger_dir: str | Path) -> CaseResult:
    """Simulate one case and compare it with its expected value; failures become error rows."""
    unit_dim, unit_si = unit_info(case.expected.unit)
    metric_dim, metric_si = metric_unit(case.metric)

    def row(**kw: Any) -> CaseResult:
        base: dict[str, Any] = {
            "id": case.id,
            "source": case.source,
            "kind": case.kind,
            "metric": case.metric,
            "unit": case.expected.unit,
            "expected": case.expected.value,
            "tolerance_pct": case.tolerance_pct,
        }
        return CaseResult(**base, **kw)

    def failed(message: str) -> CaseResult:
        return row(predicted=None, error_pct=None, within=False, error=message)

    if unit_dim != metric_dim:
        return failed(f"unit '{case.expected.unit}' does not measure what '{case.metric}' does")
    try:
        result = simulate(case_scenario(case, ledger_dir))
        raw = lookup_metric(result.summary(), case.metric)
    except (SpecError, SimulationError, MetricPathError) as exc:
        return failed(str(exc))
    except Exception as exc:  # a simulator bug must not cost the other cases their rows
        return failed(f"internal error: {type(exc).__name__}: {exc}")
    predicted = raw * metric_si / unit_si
    if not math.isfinite(predicted):
        return failed(f"metric '{case.metric}' is not finite ({raw})")
    error_pct = (predicted - case.expected.value) / case.expected.value * 100.0
    return row(
        predicted=predicted,
        error_pct=error_pct,
        within=abs(error_pct) <= case.tolerance_pct,
        profile_id=result.profile_id,
    )


def validate_ledger(ledger: Ledger, ledger_dir: str | Path) -> ValidationReport:
    """Run every case of ``ledger`` (scenario paths relative to ``ledger_dir``).

    Raises SpecError if the ledger fails :func:`check_ledger` (possible only for a ledger built
    in Python; :func:`load_ledger` already checks)."""
    for loc, reason in check_ledger(ledger):
        raise SpecError(None, json_path(loc), reason)
    return ValidationReport(
        name=ledger.name, cases=tuple(run_case(case, ledger_dir) for case in ledger.cases)
    )
