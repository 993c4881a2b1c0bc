"""The validation ledger: published numbers, the scenario that should reproduce each, and how
close it must come.

A ledger is a JSON file (see docs/validation.md). Every case names a scenario (a file relative to
the ledger, or an inline scenario document), optional ``--set``-style overrides, a metric path
into :meth:`gpusim.result.Result.summary`, the published value with its unit, a tolerance and
whether the point was used to calibrate the shipped profiles (``calibration``) or is held out
(``prediction``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field

from gpusim.quantities import SI_UNIT, Dimension, metric_quantity
from gpusim.spec.base import Identifier, PositiveFloat, Spec
from gpusim.spec.provenance import Provenance, read_json, validate_as

Loc = tuple[int | str, ...]
Problem = tuple[Loc, str]

CaseKind = Literal["calibration", "prediction"]
"""``calibration``: the shipped profile was fitted to this point, so agreement is by construction.
``prediction``: a held-out point; only these say anything about predictive accuracy."""

Unit = Literal["s", "ms", "us", "ns", "GB/s", "TB/s", "TFLOP/s", "B", "MB", "GB", "%", "1"]
"""Units a ledger may state an expected value in (``"1"``: dimensionless)."""


#: Each ledger unit's dimension and its size in that dimension's SI unit.
UNITS: Final[dict[str, tuple[Dimension, float]]] = {
    "s": (Dimension.time, 1.0),
    "ms": (Dimension.time, 1e-3),
    "us": (Dimension.time, 1e-6),
    "ns": (Dimension.time, 1e-9),
    "GB/s": (Dimension.bandwidth, 1e9),
    "TB/s": (Dimension.bandwidth, 1e12),
    "TFLOP/s": (Dimension.flop_rate, 1e12),
    "B": (Dimension.size, 1.0),
    "MB": (Dimension.size, 1e6),
    "GB": (Dimension.size, 1e9),
    "%": (Dimension.dimensionless, 1e-2),
    "1": (Dimension.dimensionless, 1.0),
}

METRIC_PATTERN: Final = r"^[A-Za-z0-9_:\-]+(\.[A-Za-z0-9_:\-]+)*$"


def unit_info(unit: str) -> tuple[Dimension, float]:
    """A ledger unit's dimension and its size in SI units (``"ms"`` -> ``(time, 1e-3)``)."""
    return UNITS[unit]


def metric_unit(metric: str) -> tuple[Dimension, float]:
    """The unit a metric path's value is in, read off its name by
    :func:`gpusim.quantities.metric_quantity`: (dimension, size of one metric unit in SI units).
    ``throughput_tokens_per_s`` is a rate, not a time."""
    quantity = metric_quantity(metric)
    return quantity.dimension, quantity.si_per_unit


class ExpectedValue(Spec):
    """A published number and the unit it was published in."""

    value: PositiveFloat = Field(
        description="The published value (positive: errors are relative to it)."
    )
    unit: Unit = Field(description="Its unit; converted to SI for comparison.")

    @property
    def si_value(self) -> float:
        """The value in SI units (s, B/s, FLOP/s, B; a fraction for %)."""
        return self.value * unit_info(self.unit)[1]


class LedgerCase(Spec):
    """One published number and the simulation that should reproduce it."""

    id: Identifier = Field(description="Unique within the ledger, e.g. 'SK-1'.")
    source: str = Field(min_length=1, description="Where the published number comes from.")
    description: str = Field(
        default="", description="What is compared, and why the tolerance is what it is."
    )
    scenario: str | dict[str, Any] = Field(
        description="A scenario file (path relative to the ledger file) or an inline scenario."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted path -> value, applied to the scenario as `gpusim run --set` does.",
    )
    metric: str = Field(
        pattern=METRIC_PATTERN,
        description="Dotted path into Result.summary(), e.g. 'metrics.kernel_time_s' or "
        "'per_gpu.gpu0.gemm_s'; the metric's unit follows from its name's suffix.",
    )
    expected: ExpectedValue
    tolerance_pct: PositiveFloat = Field(
        description="Largest acceptable |predicted - expected| / expected, in percent."
    )
    kind: CaseKind = Field(
        description="'calibration': a profile was fitted to this point (agreement by "
        "construction); 'prediction': a held-out point."
    )


class Ledger(Spec):
    """A named list of validation cases."""

    name: Identifier = Field(description="Names the ledger and its output files.")
    description: str = ""
    cases: list[LedgerCase] = Field(min_length=1)


def check_ledger(ledger: Ledger) -> Iterator[Problem]:
    """Checks across fields: unique case ids, and each expected unit measuring what its metric
    measures (a time metric compared with a time, ...)."""
    first: dict[str, int] = {}
    for i, case in enumerate(ledger.cases):
        if case.id in first:
            yield (
                ("cases", i, "id"),
                f"duplicate case id '{case.id}' (first at cases[{first[case.id]}])",
            )
        first.setdefault(case.id, i)
    for i, case in enumerate(ledger.cases):
        want, _ = metric_unit(case.metric)
        got, _ = unit_info(case.expected.unit)
        if want != got:
            yield (
                ("cases", i, "expected", "unit"),
                f"unit '{case.expected.unit}' is a {got.value} but metric '{case.metric}' is a "
                f"{want.value} (in {SI_UNIT[want]})",
            )


def load_ledger(path: str | Path) -> Ledger:
    """Load and check a ledger file; every problem is a one-line SpecError naming the file, the
    JSON path and the reason. Scenarios are not loaded here: a bad one is an error row when the
    ledger runs."""
    file = Path(path)
    prov = Provenance()
    prov.add((), file)
    ledger = validate_as(Ledger, read_json(file), prov)
    for loc, reason in check_ledger(ledger):
        raise prov.blame(loc, reason)
    return ledger
