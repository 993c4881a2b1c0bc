"""Expanding a sweep into points, each a fully resolved, validated scenario.

Every point is validated before any runs, so an unknown dotted path or a bad value is reported
up front with the sweep file and the axis or system that produced it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpusim.errors import SpecError
from gpusim.simulate import scenario_hash
from gpusim.spec.loading import read_json, scenario_from_dict
from gpusim.spec.scenario import ResolvedScenario
from gpusim.sweep.spec import SweepSpec


@dataclass(frozen=True)
class Point:
    """One sweep point: its coordinates and its resolved scenario."""

    index: int
    system: str
    axis_values: dict[str, Any]
    seed: int
    scenario: ResolvedScenario
    scenario_hash: str


def _axis_combinations(sweep: SweepSpec) -> list[dict[str, Any]]:
    paths = list(sweep.axes)
    if not paths:
        return [{}]
    rows: Iterable[tuple[Any, ...]]
    if sweep.combine == "zip":
        rows = zip(*(sweep.axes[p] for p in paths), strict=True)
    else:
        rows = itertools.product(*(sweep.axes[p] for p in paths))
    return [dict(zip(paths, values, strict=True)) for values in rows]


def expand(sweep: SweepSpec, sweep_file: str | Path) -> list[Point]:
    """All points of ``sweep`` (systems outermost, then axes, then seeds), validated."""
    file = Path(sweep_file)
    if isinstance(sweep.base, str):
        base_file = file.parent / sweep.base
        base_raw = read_json(base_file)
    else:
        base_file, base_raw = file, sweep.base
    base_seed = _base_seed(base_raw)
    if sweep.seeds:
        seeds = list(sweep.seeds)
    elif sweep.replicas is not None:
        seeds = [base_seed + i for i in range(sweep.replicas)]
    else:
        seeds = [base_seed]
    systems: dict[str, dict[str, Any]] = dict(sweep.systems) or {"": {}}
    points: list[Point] = []
    for system, system_overrides in systems.items():
        for axis_values in _axis_combinations(sweep):
            for seed in seeds:
                overrides = {**system_overrides, **axis_values, "options.seed": seed}
                try:
                    scenario = scenario_from_dict(base_raw, base_file, overrides)
                except SpecError as exc:
                    where = f"$.systems.{system}" if system else "$.axes"
                    coords = ", ".join(f"{k}={v!r}" for k, v in axis_values.items())
                    raise SpecError(
                        file,
                        where,
                        f"point ({system or 'base'}{', ' if coords else ''}{coords}): {exc}",
                    ) from None
                points.append(
                    Point(
                        index=len(points),
                        system=system,
                        axis_values=axis_values,
                        seed=seed,
                        scenario=scenario,
                        scenario_hash=scenario_hash(scenario),
                    )
                )
    return points


def _base_seed(raw: Any) -> int:
    options = raw.get("options") if isinstance(raw, dict) else None
    seed = options.get("seed", 0) if isinstance(options, dict) else 0
    return seed if isinstance(seed, int) else 0
