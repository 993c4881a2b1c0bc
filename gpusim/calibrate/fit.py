"""Fit a calibration profile to a folder of measurement documents.

``fit_folder(folder, nameplates)``: every measurement goes through the forward model
(:mod:`gpusim.calibrate.model`); the parameters it informs are fitted
(:mod:`gpusim.calibrate.solve`: robust least squares on log residuals, standard errors from the
Jacobian); the assumptions document gives the others (:mod:`gpusim.calibrate.dataset`). An
assumption holds its parameter fixed even where a measurement also depends on it. A parameter the
profile needs that neither a measurement nor an assumption gives is an error naming it; so is one
the measurements cannot separate from another.

Every value's ``source`` says where it came from: ``measured by <program> on <device>, <date>,
<n> points`` or ``published: <source>`` for each kind of point it rests on, then ``fit: <the models
used, with their nameplates> (<n> points)`` and how its uncertainty was obtained; a given value's is
``given: <the assumption's source>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gpusim.calibrate.dataset import Assumption, Dataset, Located, load_folder
from gpusim.calibrate.model import Context, Unused, observe
from gpusim.calibrate.nameplates import Nameplates
from gpusim.calibrate.params import (
    always_required,
    build_profile,
    is_fraction,
    order_key,
    sections_complete,
)
from gpusim.calibrate.reading import ModelError
from gpusim.calibrate.solve import (
    Estimate,
    FitPoint,
    Fixed,
    GroupFit,
    UndeterminedError,
    fit_group,
    groups,
)
from gpusim.errors import SpecError
from gpusim.spec.profile import (
    CalibrationProfile,
    InstructionPath,
    Measured,
    native_tensor_path,
)

VALUE_DIGITS = 6
UNCERTAINTY_DIGITS = 2
STEM_SE = 1.2533
"""Standard error of a median = 1.2533 x stdev / sqrt(n) (normal samples)."""
OUTLIER_SE = 3.0


@dataclass(frozen=True)
class UnusedPoint:
    """A known measurement that informs no profile parameter, and why."""

    where: Located
    reason: str


@dataclass(frozen=True)
class FitReport:
    """The fitted profile and what went into it."""

    profile: CalibrationProfile
    points: int
    """Measurements the fit used."""
    unused: tuple[UnusedPoint, ...]
    warnings: tuple[str, ...]
    documents: int
    no_device: int
    given: int
    """Values taken from the assumptions document."""


@dataclass(frozen=True)
class _Point:
    fit: FitPoint
    where: Located


def fit_folder(
    folder: str | Path,
    nameplates: Nameplates | None = None,
    profile_id: str | None = None,
    description: str | None = None,
) -> FitReport:
    """Fit the profile of the documents in ``folder`` (see the module docstring)."""
    return fit_dataset(load_folder(folder), nameplates, profile_id, description)


def required_paths(nameplates: Nameplates | None) -> list[str]:
    """Parameters a profile must hold: launch and device costs and the CUDA-core fraction always;
    with a GPU, the efficiency of its memory kind (hbm, or a unified pool's lpddr) and the
    tensor fraction of every dtype it has a peak for on every path it runs (``wgmma`` from
    compute capability 9.0, ``mma_sync`` always; none without tensor cores); with a topology,
    the link kinds of its links (those without their own efficiency) and its host memory kinds."""
    req = set(always_required())
    if nameplates is not None:
        gpu = nameplates.gpu
        req.add(f"memory_efficiency.{gpu.memory_kind.value}")
        paths = [InstructionPath.mma_sync]
        if native_tensor_path(gpu.compute_capability) is InstructionPath.wgmma:
            paths.append(InstructionPath.wgmma)
        req |= {
            f"tensor_efficiency.{p.value}.{d.value}" for p in paths for d in gpu.tensor_peak_TFLOPS
        }
        topo = nameplates.topology
        if topo is not None:
            req |= {
                f"link_efficiency.{lk.kind.value}" for lk in topo.links if lk.efficiency is None
            }
            req |= {f"memory_efficiency.{c.memory.kind.value}" for c in topo.cpus()}
    return sorted(req, key=order_key)


def fit_dataset(
    data: Dataset,
    nameplates: Nameplates | None,
    profile_id: str | None = None,
    description: str | None = None,
) -> FitReport:
    """Fit a loaded folder (see :func:`fit_folder`)."""
    points, unused, warnings = _observe_all(data, nameplates)
    fixed = {p: Fixed(a.value, a.uncertainty) for p, a in data.assumptions.items()}
    free = {p for pt in points for p in pt.fit.obs.params if p not in fixed}
    known = free | set(fixed)
    missing = [p for p in required_paths(nameplates) if p not in known]
    missing += sections_complete(known)
    if missing:
        raise SpecError(
            data.folder,
            "$",
            f"no measurement or assumption informs {', '.join(sorted(missing, key=order_key))}: "
            "measure them or give them in the assumptions document (program 'assumptions')",
        )
    fit_points = [pt.fit for pt in points]
    values: dict[str, Measured] = {}
    for group in groups(fit_points, fixed):
        try:
            result = fit_group(group, fit_points, fixed)
        except UndeterminedError as exc:
            raise SpecError(
                data.folder,
                "$",
                f"the measurements do not determine {', '.join(exc.params)} separately: add a "
                "measurement that separates them or give one in the assumptions document",
            ) from None
        warnings += _group_warnings(result, points)
        for path, est in result.estimates.items():
            values[path] = _measured(path, est, points, data.assumptions)
    for path, a in data.assumptions.items():
        values[path] = _given(a)
    warnings += _override_warnings(points, data.assumptions)
    warnings += _check_given(points, fixed)
    settings = data.settings
    pid = profile_id or str(settings.get("profile_id") or data.folder.name)
    desc = description if description is not None else str(settings.get("description", ""))
    try:
        profile = build_profile(pid, desc, values)
    except ValueError as exc:  # a bad --id, say
        raise SpecError(data.folder, "$", f"cannot build the profile: {exc}") from None
    return FitReport(
        profile=profile,
        points=len(points),
        unused=tuple(unused),
        warnings=tuple(warnings),
        documents=len(data.documents),
        no_device=len(data.no_device),
        given=len(data.assumptions),
    )


def relative_sigma(loc: Located) -> float | None:
    """A measurement's relative standard error: its ``uncertainty``, else the standard error of
    the median of its samples (``1.2533 stdev / sqrt(n)``), else None."""
    m = loc.measurement
    if m.uncertainty:
        return m.uncertainty / m.stats.median
    if m.stats.n >= 2 and m.stats.stdev > 0:
        return STEM_SE * m.stats.stdev / math.sqrt(m.stats.n) / m.stats.median
    return None


def _observe_all(
    data: Dataset, nameplates: Nameplates | None
) -> tuple[list[_Point], list[UnusedPoint], list[str]]:
    points: list[_Point] = []
    unused: list[UnusedPoint] = []
    warnings: list[str] = []
    for file, doc in data.documents:
        device = doc.device
        if nameplates is None or device is None:
            continue
        if device.sm_count != nameplates.gpu.sm_count:
            warnings.append(
                f"{file}: measured on {device.name} with {device.sm_count} SMs; the "
                f"spec ({nameplates.gpu.name}) has {nameplates.gpu.sm_count}"
            )
    for loc in data.measurements():
        ctx = Context(nameplates, loc.doc.device, loc.doc.measurements)
        try:
            outcome = observe(loc.measurement, ctx)
        except ModelError as exc:
            raise loc.error(exc.reason, exc.at) from None
        if isinstance(outcome, Unused):
            unused.append(UnusedPoint(loc, outcome.reason))
        else:
            points.append(_Point(FitPoint(outcome, relative_sigma(loc)), loc))
    return points, unused, warnings


def _round(value: float, digits: int) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def _origins(informing: Sequence[Located]) -> list[str]:
    """``published: ...`` per distinct source and ``measured by ...`` per program run."""
    published: list[str] = []
    measured: dict[str, int] = {}
    for loc in informing:
        m, doc = loc.measurement, loc.doc
        if m.source:
            if m.source not in published:
                published.append(m.source)
            continue
        device = doc.device.name if doc.device is not None else "an unnamed device"
        date = doc.run.timestamp_utc[:10] if doc.run is not None else "undated"
        label = f"{doc.program} on {device}, {date}"
        measured[label] = measured.get(label, 0) + 1
    out = [f"measured by {label}, {n} point{'s' * (n != 1)}" for label, n in measured.items()]
    return out + [f"published: {src}" for src in published]


def _measured(
    path: str, est: Estimate, points: Sequence[_Point], assumptions: dict[str, Assumption]
) -> Measured:
    informing = [points[i] for i in est.informing]
    formulas: list[str] = []
    for pt in informing:
        if pt.fit.obs.formula not in formulas:
            formulas.append(pt.fit.obs.formula)
    given = sorted(
        {p for pt in informing for p in pt.fit.obs.params if p in assumptions}, key=order_key
    )
    n = len(informing)
    detail = f"{n} point{'s' * (n != 1)}" + (f"; given: {', '.join(given)}" if given else "")
    fit = f"fit: {'; '.join(formulas)} ({detail})"
    basis = est.uncertainty_basis if est.uncertainty is not None else "none stated"
    source = " | ".join([*_origins([pt.where for pt in informing]), fit, f"uncertainty: {basis}"])
    uncertainty = None if est.uncertainty is None else _round(est.uncertainty, UNCERTAINTY_DIGITS)
    return Measured(value=_round(est.value, VALUE_DIGITS), source=source, uncertainty=uncertainty)


def _given(a: Assumption) -> Measured:
    return Measured(
        value=a.value,
        source=f"given: {a.source}",
        uncertainty=a.uncertainty,
        low=a.low,
        high=a.high,
    )


def _group_warnings(result: GroupFit, points: Sequence[_Point]) -> list[str]:
    out: list[str] = []
    for path, est in result.estimates.items():
        if est.at_bound:
            bound = "1 (a measurement at or above nameplate?)" if is_fraction(path) else "0"
            out.append(f"{path} ended at its bound {bound}")
    for i, r in zip(result.points, result.residuals, strict=True):
        if abs(r) > OUTLIER_SE and result.dof > 0:
            loc = points[i].where
            out.append(
                f"{loc.file} {loc.at()} ({loc.measurement.name}) is {abs(r):.1f} standard errors "
                "from the fit (down-weighted by the robust loss)"
            )
    return out


def _override_warnings(points: Sequence[_Point], assumptions: dict[str, Assumption]) -> list[str]:
    """An assumption that overrides a direct measurement of its parameter."""
    out: list[str] = []
    for path in sorted(assumptions, key=order_key):
        direct = [pt for pt in points if pt.fit.obs.params == (path,)]
        if direct:
            out.append(
                f"{path} is given in the assumptions document although {len(direct)} "
                "measurement(s) of it exist; the assumption wins (remove it to use them)"
            )
    return out


def _check_given(points: Sequence[_Point], fixed: dict[str, Fixed]) -> list[str]:
    """Points resting only on given values: they cannot move anything, but should agree."""
    out: list[str] = []
    values = {p: f.value for p, f in fixed.items()}
    for pt in points:
        obs = pt.fit.obs
        if all(p in fixed for p in obs.params):
            predicted = obs.predict(values, math.inf)
            off = math.log(predicted / obs.value)
            sigma = pt.fit.rel_sigma
            if (sigma is not None and abs(off) > OUTLIER_SE * sigma) or abs(off) > 0.1:
                out.append(
                    f"{pt.where.file} {pt.where.at()} ({obs.formula.split(' =')[0]}) differs by "
                    f"{100 * math.expm1(-off):+.1f} % from what the given values predict"
                )
    return out
