"""Validation ledger: published numbers, the scenarios that should reproduce them, and a report
of how close gpusim comes (``gpusim validate LEDGER.json``; see docs/validation.md)."""

from gpusim.validate.ledger import (
    ExpectedValue,
    Ledger,
    LedgerCase,
    check_ledger,
    load_ledger,
    metric_unit,
    unit_info,
)
from gpusim.validate.run import (
    CSV_COLUMNS,
    CaseResult,
    MetricPathError,
    ValidationReport,
    case_scenario,
    check_case_scenarios,
    lookup_metric,
    run_case,
    validate_ledger,
    write_report,
)

__all__ = [
    "CSV_COLUMNS",
    "CaseResult",
    "ExpectedValue",
    "Ledger",
    "LedgerCase",
    "MetricPathError",
    "ValidationReport",
    "case_scenario",
    "check_case_scenarios",
    "check_ledger",
    "load_ledger",
    "lookup_metric",
    "metric_unit",
    "run_case",
    "unit_info",
    "validate_ledger",
    "write_report",
]
