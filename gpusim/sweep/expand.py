"""Expanding a sweep into points, each a fully resolved, validated scenario (or, for a run,
the overrides that make it from the sweep's base, see :func:`plan_points`).

Expansion is lazy (a product of axes is never materialised; its size is counted first, see
:func:`count_points`), and :func:`validate_points` checks every point, limits included, before
any runs, so an unknown dotted path or a bad value is reported up front with the sweep file and
the axis or system that produced it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpusim.errors import SpecError, json_path
from gpusim.limits import Limits, check_limits, check_point_count
from gpusim.spec.loading import (
    InlineCache,
    only_workload_values,
    resolve_like,
    resolve_validated,
    scenario_from_dict,
)
from gpusim.spec.provenance import read_json
from gpusim.spec.scenario import ResolvedScenario
from gpusim.sweep.spec import SweepSpec, tied_paths
from gpusim.workloads.registry import family_of


@dataclass(frozen=True)
class PointRef:
    """One sweep point without its scenario: its coordinates, the overrides that make it from
    the sweep's base (:class:`SweepBase`) and its scenario's content hash."""

    index: int
    system: str
    axis_values: dict[str, Any]
    seed: int
    scenario_hash: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Point(PointRef):
    """One sweep point with its resolved scenario."""

    scenario: ResolvedScenario

    def ref(self) -> PointRef:
        """This point without its scenario."""
        return PointRef(
            self.index,
            self.system,
            self.axis_values,
            self.seed,
            self.scenario_hash,
            self.overrides,
        )


@dataclass(frozen=True)
class SweepBase:
    """What resolving any point of a sweep needs: the base document, the file it is read from
    (errors name it; relative references start beside it), and the topologies and profiles
    it references, read once (so a worker resolves points without reading them)."""

    raw: Any
    file: Path
    cache: InlineCache = field(default_factory=InlineCache, compare=False)
    token: str = ""

    def resolve(self, overrides: dict[str, Any]) -> ResolvedScenario:
        """The scenario of the base with ``overrides`` (dotted paths), validated. Once a point
        has resolved, the points that only set numbers in the workload and options are made
        from it (see :func:`~gpusim.spec.loading.resolve_like`; what fails goes the general
        way, which blames it)."""
        known, template = _template_of(self, True)
        if template is not None:
            quick = resolve_like(template, self.raw, overrides, checked=True)
            if quick is not None:
                return quick
        scenario = scenario_from_dict(self.raw, self.file, overrides, self.cache)
        if not known and only_workload_values(overrides):
            _keep_template(self, True, overrides, scenario)
        return scenario

    def resolve_validated(self, overrides: dict[str, Any], scenario_hash: str) -> ResolvedScenario:
        """The scenario of a point validated before (by :meth:`resolve`, of this base or a
        pickled copy of it) whose content hash is ``scenario_hash``, without the checks that can
        only refuse it (see :func:`~gpusim.spec.loading.resolve_validated`). When resolving it
        read no file (every document came with the base), it is the scenario validated and
        takes that hash as its own; otherwise its hash is computed and a mismatch (a file
        changed since) is a SpecError. Once a point has resolved without reading a file, the
        points that only set numbers in the workload and options are made from it (see
        :func:`~gpusim.spec.loading.resolve_like`: a per-token MoE point resolves in about half
        the time)."""
        known, template = _template_of(self, False)
        if template is not None:
            quick = resolve_like(template, self.raw, overrides)
            if quick is not None:
                quick.know_content_hash(scenario_hash)
                return quick
        scenario, read_files = resolve_validated(self.raw, self.file, overrides, self.cache)
        if not read_files:
            scenario.know_content_hash(scenario_hash)
            if not known and only_workload_values(overrides):
                _keep_template(self, False, overrides, scenario)
        elif scenario.content_hash != scenario_hash:
            raise SpecError(
                self.file,
                "$",
                f"the scenario is not the one validated (hash {scenario.content_hash}, not "
                f"{scenario_hash}): a file it reads changed during the sweep; rerun",
            )
        return scenario


_TEMPLATES: dict[tuple[int, bool], tuple[weakref.ref[SweepBase], ResolvedScenario | None]] = {}
"""By base (its id, and a weak reference that tells a reused id) and whether checked: a scenario
resolved from it whose overrides only set numbers in the workload and options (checked: by
:meth:`SweepBase.resolve`; unchecked: by :meth:`SweepBase.resolve_validated`, without reading a
file), or None for a base that cannot serve one."""
_TEMPLATES_KEPT = 8


def _template_of(base: SweepBase, checked: bool) -> tuple[bool, ResolvedScenario | None]:
    """Whether the base's template was looked for already, and the template."""
    entry = _TEMPLATES.get((id(base), checked))
    if entry is None or entry[0]() is not base:
        return False, None
    return True, entry[1]


def _keep_template(
    base: SweepBase, checked: bool, overrides: dict[str, Any], scenario: ResolvedScenario
) -> None:
    """Keep ``scenario`` as the base's template if it makes itself again: a base whose workload
    the general path changes on the way (a relative routing trace file made absolute, a model
    or resource report inlined) never serves as one (and is not tried again)."""
    again = resolve_like(scenario, base.raw, overrides, checked)
    same = again == scenario and again.model_dump_json() == scenario.model_dump_json()
    while len(_TEMPLATES) >= _TEMPLATES_KEPT:
        _TEMPLATES.pop(next(iter(_TEMPLATES)))
    _TEMPLATES[(id(base), checked)] = (weakref.ref(base), scenario if same else None)


def sweep_base(sweep: SweepSpec, sweep_file: str | Path) -> SweepBase:
    """The base of ``sweep`` (a SpecError when its base file does not exist)."""
    file = Path(sweep_file)
    if isinstance(sweep.base, str):
        base_file = file.parent / sweep.base
        if not base_file.is_file():
            raise SpecError(file, "$.base", f"base scenario file not found: {base_file}")
        base_raw = read_json(base_file)
    else:
        base_file, base_raw = file, sweep.base
    text = json.dumps([str(base_file.resolve()), base_raw], sort_keys=True, default=str)
    token = hashlib.sha256(text.encode()).hexdigest()[:16]
    return SweepBase(base_raw, base_file, token=token)


def _axis_combinations(sweep: SweepSpec) -> Iterator[tuple[dict[str, Any], dict[str, int]]]:
    """The axis values of each point and their indices in the axes, one point at a time (never
    the whole product in memory)."""
    paths = list(sweep.axes)
    if not paths:
        yield {}, {}
        return
    columns = [(key, sweep.axes[key], tied_paths(key)) for key in paths]
    ranges = [range(len(column)) for _, column, _ in columns]
    rows: Iterable[tuple[int, ...]] = (
        zip(*ranges, strict=True) if sweep.combine == "zip" else itertools.product(*ranges)
    )
    for indices in rows:
        values: dict[str, Any] = {}
        for (key, column, tied), i in zip(columns, indices, strict=True):
            if len(tied) == 1:
                values[key] = column[i]
            else:
                values.update(zip(tied, column[i], strict=True))
        yield values, dict(zip(paths, indices, strict=True))


def _blame_point(
    exc: SpecError, system: str, system_overrides: dict[str, Any], indices: dict[str, int]
) -> str:
    """The place in the sweep file that produced a point's error: the axis value or system
    override whose dotted path leads to the error's path, else the system or the axes."""
    for key, i in indices.items():
        if any(_leads_to(dotted, exc.path) for dotted in tied_paths(key)):
            return json_path(("axes", key, i))
    for dotted in system_overrides:
        if _leads_to(dotted, exc.path):
            return json_path(("systems", system, dotted))
    return json_path(("systems", system)) if system else "$.axes"


def _leads_to(dotted: str, path: str) -> bool:
    own = json_path(dotted.split("."))
    return path == own or path.startswith((own + ".", own + "["))


def iter_points(
    sweep: SweepSpec,
    sweep_file: str | Path,
    limits: Limits | None = None,
    base: SweepBase | None = None,
) -> Iterator[Point]:
    """Points of ``sweep`` one by one (systems outermost, then axes, then seeds), each validated
    (and, with ``limits``, checked against them) as it is produced. Bad overrides raise a
    SpecError naming the sweep file and the point. ``base``: the sweep's base, when already
    read (see :func:`sweep_base`)."""
    file = Path(sweep_file)
    if base is None:
        base = sweep_base(sweep, file)
    base_raw, base_file = base.raw, base.file
    base_seed = _base_seed(base_raw)
    if sweep.seeds:
        seeds = list(sweep.seeds)
    elif sweep.replicas is not None:
        seeds = [base_seed + i for i in range(sweep.replicas)]
    else:
        seeds = [base_seed]
    systems: dict[str, dict[str, Any]] = dict(sweep.systems) or {"": {}}
    index = 0
    for system, system_overrides in systems.items():
        for axis_values, indices in _axis_combinations(sweep):
            for seed in seeds:
                overrides = {**system_overrides, **axis_values, "options.seed": seed}
                try:
                    scenario = base.resolve(overrides)
                    if limits is not None:
                        check_limits(scenario, base_file, limits)
                except SpecError as exc:
                    where = _blame_point(exc, system, system_overrides, indices)
                    coords = ", ".join(f"{k}={v!r}" for k, v in axis_values.items())
                    label = ", ".join(x for x in (system or "base", coords) if x)
                    raise SpecError(file, where, f"point ({label}): {exc}") from None
                yield Point(
                    index=index,
                    system=system,
                    axis_values=axis_values,
                    seed=seed,
                    scenario_hash=scenario.content_hash,
                    overrides=overrides,
                    scenario=scenario,
                )
                index += 1


def plan_points(
    sweep: SweepSpec, sweep_file: str | Path, limits: Limits
) -> tuple[SweepBase, list[PointRef]]:
    """Check the sweep's size, then validate every point against the schema, the semantic
    checks and ``limits``; the sweep's base and its points without their scenarios (what a
    run needs: workers resolve each point from the base). The first bad point raises its
    SpecError before anything has run."""
    check_point_count(count_points(sweep), sweep_file, limits)
    base = sweep_base(sweep, sweep_file)
    return base, [point.ref() for point in iter_points(sweep, sweep_file, limits, base)]


def validate_points(sweep: SweepSpec, sweep_file: str | Path, limits: Limits) -> int:
    """:func:`plan_points`, keeping only the number of points."""
    return len(plan_points(sweep, sweep_file, limits)[1])


RECORD_FIELDS = ("makespan_s", "events", "wall_s")
"""Numbers every stored point has besides its workload's metrics."""


def reported_metrics(scenario: ResolvedScenario) -> frozenset[str]:
    """The names a run of ``scenario`` stores: its workload family's declared metric names (at
    the scenario's fidelity) and :data:`RECORD_FIELDS`. Nothing is simulated."""
    workload, topology = scenario.workload, scenario.topology
    declared = family_of(workload).metric_names(workload, topology, scenario.options.fidelity)
    return declared | frozenset(RECORD_FIELDS)


def check_metrics(sweep: SweepSpec, sweep_file: str | Path) -> None:
    """Check that every metric the sweep names is one its workload reports, statically: the
    first point of each system is expanded (validated, not simulated) and its workload family's
    declared metric names collected (``metric_names`` in ``gpusim/workloads/registry.py``),
    whatever the point would cost to run. A name no system reports is a SpecError at
    ``$.metrics[i]`` listing the names they do."""
    if not sweep.metrics:
        return
    first_axes = {path: values[:1] for path, values in sweep.axes.items()}
    probe = sweep.model_copy(update={"axes": first_axes, "seeds": [], "replicas": None})
    reported: set[str] = set()
    for point in iter_points(probe, sweep_file):
        reported |= reported_metrics(point.scenario)
    for i, metric in enumerate(sweep.metrics):
        if metric not in reported:
            known = ", ".join(sorted(reported))
            raise SpecError(
                sweep_file,
                json_path(("metrics", i)),
                f"'{metric}' is not a metric this workload reports (it reports: {known})",
            )


def count_points(sweep: SweepSpec) -> int:
    """How many points ``sweep`` expands to (without validating them)."""
    if not sweep.axes:
        combos = 1
    elif sweep.combine == "zip":
        combos = len(next(iter(sweep.axes.values())))
    else:
        combos = 1
        for values in sweep.axes.values():
            combos *= len(values)
    seeds = len(sweep.seeds) or sweep.replicas or 1
    return max(1, len(sweep.systems)) * combos * seeds


def expand(sweep: SweepSpec, sweep_file: str | Path) -> list[Point]:
    """All points of ``sweep``, validated, in a list (small sweeps and tests; runs iterate)."""
    return list(iter_points(sweep, sweep_file))


def _base_seed(raw: Any) -> int:
    options = raw.get("options") if isinstance(raw, dict) else None
    seed = options.get("seed", 0) if isinstance(options, dict) else 0
    return seed if isinstance(seed, int) else 0
