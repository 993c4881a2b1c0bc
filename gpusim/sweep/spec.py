"""The sweep file: a base scenario, axes to vary, systems to compare, seeds, metrics to keep."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from gpusim.errors import SpecError
from gpusim.spec.base import FileName, Identifier, PositiveInt, Spec
from gpusim.spec.provenance import Provenance, read_json, validate_as


class SweepSpec(Spec):
    """What to run: every combination of ``axes`` (``product``) or their element-wise pairs
    (``zip``), for every system, for every seed."""

    name: FileName
    description: str = ""
    base: str | dict[str, Any] = Field(
        description="Base scenario: a path relative to the sweep file, or an inline scenario."
    )
    axes: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Dotted path -> values (as `gpusim run --set`). A key of comma-separated "
        "paths ties them: each value is a list of one value per path (e.g. a weight shape's m "
        "and k), varied together.",
    )
    combine: Literal["product", "zip"] = "product"
    systems: dict[Identifier, dict[str, Any]] = Field(
        default_factory=dict,
        description="Named sets of overrides compared side by side (e.g. strategies, topologies).",
    )
    seeds: list[int] = Field(
        default_factory=list, description="Seeds to run; the base's when empty."
    )
    replicas: PositiveInt | None = Field(
        default=None, description="Run seeds base_seed .. base_seed+replicas-1 (instead of seeds)."
    )
    metrics: list[str] = Field(
        default_factory=list, description="Metrics to show in reports; all scalars when empty."
    )
    baseline: Identifier | None = Field(
        default=None, description="System to compute speedups against."
    )

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        if self.seeds and self.replicas is not None:
            raise ValueError("give seeds or replicas, not both")
        for path, values in self.axes.items():
            if not values:
                raise ValueError(f"axis '{path}' has no values")
            tied = tied_paths(path)
            if len(tied) > 1:
                for value in values:
                    if not isinstance(value, list) or len(value) != len(tied):
                        raise ValueError(
                            f"axis '{path}' ties {len(tied)} paths: each value must be a list of "
                            f"{len(tied)}, got {value!r}"
                        )
        if self.combine == "zip" and len({len(v) for v in self.axes.values()}) > 1:
            lengths = ", ".join(f"{p}: {len(v)}" for p, v in self.axes.items())
            raise ValueError(f"zip needs axes of equal length ({lengths})")
        if self.baseline is not None and self.baseline not in self.systems:
            raise ValueError(f"baseline '{self.baseline}' is not one of the systems")
        return self


def tied_paths(axis: str) -> list[str]:
    """The dotted paths an axis key sets: one, or several tied by commas."""
    return [p.strip() for p in axis.split(",")]


def load_sweep(path: str | Path) -> SweepSpec:
    """Load and validate a sweep file (one-line SpecErrors)."""
    file = Path(path)
    prov = Provenance()
    prov.add((), file)
    raw = read_json(file)
    if isinstance(raw, dict) and "base" not in raw:
        raise SpecError(file, "$.base", "Field required")
    return validate_as(SweepSpec, raw, prov)
