"""The numerical fit: robust least squares on log residuals, one connected group of parameters
at a time, with standard errors from the Jacobian.

Method (per group of free parameters that share measurements):

- Residual of point i: ``r_i = (ln predicted_i - ln measured_i) / s_i`` with ``s_i`` the point's
  relative uncertainty. A point without one gets the median of the group's stated ones (or a
  nominal 5 % when none is stated); that weight only matters when the group is overdetermined.
- ``scipy.optimize.least_squares`` (trf) with physical bounds (fractions in (0, 1], costs >= 0)
  and the robust ``soft_l1`` loss (``f_scale = 3``: points more than about three standard errors
  off are progressively down-weighted). Where a model has a ``max``, the first passes replace it
  by p-norms of rising order (4, 16, 64, 256) so that both sides of the kink get gradients; the
  last pass, from there, uses the exact model.
- Identifiability: the weighted Jacobian must have full column rank; parameters in its null space
  (only a combination of them is measured, or they sit on the losing side of a ``max``) are an
  :class:`UndeterminedError` naming them.
- Uncertainty: the linearised estimate ``d theta = S d(ln y)`` with ``S = (Jw^T Jw)^-1 Jw^T W``
  gives ``cov = S diag(var) S^T`` plus, for parameters held by assumptions with a stated
  uncertainty, ``(S J_fixed) diag(sigma_fixed^2) (S J_fixed)^T``. ``var_i = s_i^2`` for stated
  uncertainties; with more points than parameters it is scaled by ``max(1, chi^2 / dof)`` (the
  residual variance, never below what the points state), and a group where no point states an
  uncertainty uses the residual variance ``sum(delta^2) / dof`` alone (``inv(J^T J)`` times the
  residual variance). A parameter with a single informing point thus gets that point's
  uncertainty. In an exactly determined group a point without a stated uncertainty contributes
  none, and a parameter resting only on such points has no uncertainty (``None``). A sensitivity
  below ``SENSITIVITY_TOL`` (relative to the parameter) counts as none: the point does not inform
  the parameter and passes it no variance, so rounding residue cannot decide between ``None``
  and a 1e-20 uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from gpusim.calibrate.model import EXACT, Observation
from gpusim.calibrate.params import is_fraction, order_key

NOMINAL_REL_SIGMA: Final = 0.05
SMOOTHING: Final = (4.0, 16.0, 64.0, 256.0)
F_SCALE: Final = 3.0
FRACTION_FLOOR: Final = 1e-9
TINY: Final = 1e-300
SENSITIVITY_TOL: Final = 1e-7
RANK_TOL: Final = 1e-8

Vector = NDArray[np.float64]


@dataclass(frozen=True)
class FitPoint:
    """One observation with its relative standard error (``None``: not stated)."""

    obs: Observation
    rel_sigma: float | None


@dataclass(frozen=True)
class Fixed:
    """A parameter held at a given value (an assumption), with its absolute uncertainty."""

    value: float
    uncertainty: float | None


@dataclass(frozen=True)
class Estimate:
    """A fitted parameter."""

    value: float
    uncertainty: float | None
    informing: tuple[int, ...]
    """Indices (into the fit's points) of the points the estimate depends on."""
    uncertainty_basis: str
    """How the uncertainty was obtained, for provenance."""
    at_bound: bool


@dataclass(frozen=True)
class GroupFit:
    """The estimates of one group and the points it used."""

    estimates: dict[str, Estimate]
    points: tuple[int, ...]
    residuals: tuple[float, ...]
    """Weighted residual of each of ``points`` (in its standard errors)."""
    chi2: float
    dof: int


class UndeterminedError(Exception):
    """The measurements do not determine these parameters separately."""

    def __init__(self, params: Sequence[str]) -> None:
        super().__init__(", ".join(params))
        self.params = tuple(params)


def groups(points: Sequence[FitPoint], fixed: Mapping[str, Fixed]) -> list[list[str]]:
    """Free parameters partitioned into groups that share points (union-find), each sorted."""
    parent: dict[str, str] = {}

    def find(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for pt in points:
        free = [p for p in pt.obs.params if p not in fixed]
        for p in free:
            parent.setdefault(p, p)
        for p in free[1:]:
            parent[find(p)] = find(free[0])
    out: dict[str, list[str]] = {}
    for p in parent:
        out.setdefault(find(p), []).append(p)
    return sorted((sorted(g, key=order_key) for g in out.values()), key=lambda g: order_key(g[0]))


def fit_group(
    params: Sequence[str], points: Sequence[FitPoint], fixed: Mapping[str, Fixed]
) -> GroupFit:
    """Fit the free ``params`` to the ``points`` that involve them (see the module docstring)."""
    # imported here: scipy.optimize costs half a second, and every CLI command imports this module
    from scipy.optimize import least_squares

    index = [i for i, pt in enumerate(points) if any(p in params for p in pt.obs.params)]
    pts = [points[i] for i in index]
    fixed_values = {p: f.value for p, f in fixed.items()}
    stated = [pt.rel_sigma for pt in pts if pt.rel_sigma is not None]
    s_ref = float(np.median(stated)) if stated else NOMINAL_REL_SIGMA
    sigma = np.array([pt.rel_sigma if pt.rel_sigma is not None else s_ref for pt in pts])
    weights = 1.0 / sigma
    log_y = np.log([pt.obs.value for pt in pts])

    def delta(theta: Vector, p: float, extra: Mapping[str, float] | None = None) -> Vector:
        values = {**fixed_values, **dict(zip(params, theta.tolist(), strict=True)), **(extra or {})}
        pred = np.array([pt.obs.predict(values, p) for pt in pts])
        return np.asarray(np.log(np.maximum(pred, TINY)) - log_y, dtype=np.float64)

    lower = np.array([FRACTION_FLOOR if is_fraction(p) else 0.0 for p in params])
    upper = np.array([1.0 if is_fraction(p) else np.inf for p in params])
    theta0 = _initial(params, pts, fixed_values, lower, upper)
    theta = theta0
    stages = (*SMOOTHING, EXACT) if any(pt.obs.kinked for pt in pts) else (EXACT,)
    for order in stages:
        result = least_squares(
            lambda t, order=order: weights * delta(t, order),
            theta,
            bounds=(lower, upper),
            loss="soft_l1",
            f_scale=F_SCALE,
            x_scale="jac",
            xtol=1e-14,
            ftol=1e-14,
            gtol=1e-14,
            max_nfev=2000,
        )
        theta = np.clip(result.x, lower, upper)

    jac = _jacobian(lambda t: delta(t, EXACT), theta, lower)
    weighted = weights[:, None] * jac
    _check_rank(params, weighted)
    normal = weighted.T @ weighted
    sens = np.asarray(np.linalg.solve(normal, weighted.T * weights), dtype=np.float64)
    # sens: k x n, d theta per d ln(measured value); a point that does not inform a parameter
    # (below SENSITIVITY_TOL, relative) passes it no variance: its sensitivity is rounding
    # residue, which differs between numpy/BLAS builds (0 on one, 1e-20 on another)
    scales = np.maximum(np.abs(theta), TINY)
    informs = np.abs(sens) / scales[:, None] > SENSITIVITY_TOL
    sens = np.where(informs, sens, 0.0)
    residual = delta(theta, EXACT)
    chi2 = float(np.sum((weights * residual) ** 2))
    dof = len(pts) - len(params)
    var, basis = _point_variances(pts, residual, sigma, dof, chi2)
    cov = np.asarray(sens @ np.diag(var) @ sens.T, dtype=np.float64)
    cov += _fixed_covariance(params, pts, fixed, theta, sens, delta)
    estimates: dict[str, Estimate] = {}
    unstated = np.array([pt.rel_sigma is None for pt in pts])
    for j, p in enumerate(params):
        informing = informs[j]
        variance = float(max(cov[j, j], 0.0))
        uncertainty: float | None = math.sqrt(variance)
        if dof == 0 and variance == 0.0 and bool(np.any(informing & unstated)):
            uncertainty = None
        at_bound = bool(theta[j] <= lower[j] or theta[j] >= upper[j])
        estimates[p] = Estimate(
            value=float(theta[j]),
            uncertainty=uncertainty,
            informing=tuple(index[i] for i in np.flatnonzero(informing)),
            uncertainty_basis=basis,
            at_bound=at_bound,
        )
    return GroupFit(estimates, tuple(index), tuple((weights * residual).tolist()), chi2, dof)


def _initial(
    params: Sequence[str],
    pts: Sequence[FitPoint],
    fixed_values: Mapping[str, float],
    lower: Vector,
    upper: Vector,
) -> Vector:
    """Start each parameter at the geometric mean, over its points, of the value that would
    explain the point if every free parameter of it were equal (one evaluation at 1)."""
    logs: dict[str, list[float]] = {p: [] for p in params}
    ones = {**fixed_values, **dict.fromkeys(params, 1.0)}
    for pt in pts:
        at_one = pt.obs.predict(ones, SMOOTHING[0])
        if at_one > 0:
            for p in pt.obs.params:
                if p in logs:
                    logs[p].append(math.log(pt.obs.value / at_one))
    theta = np.array([math.exp(float(np.mean(logs[p]))) if logs[p] else 1.0 for p in params])
    margin = np.where(np.isfinite(upper), 1e-6, 0.0)
    return np.asarray(np.clip(theta, lower + 1e-12, upper - margin), dtype=np.float64)


def _jacobian(fun: object, theta: Vector, lower: Vector) -> Vector:
    """Central differences (forward at a lower bound) of ``fun`` at ``theta``."""
    assert callable(fun)
    base = np.asarray(fun(theta), dtype=np.float64)
    jac = np.zeros((base.size, theta.size))
    for j in range(theta.size):
        step = 1e-6 * max(abs(theta[j]), 1e-9)
        up = theta.copy()
        up[j] += step
        if theta[j] - step >= lower[j]:
            down = theta.copy()
            down[j] -= step
            jac[:, j] = (np.asarray(fun(up)) - np.asarray(fun(down))) / (2 * step)
        else:
            jac[:, j] = (np.asarray(fun(up)) - base) / step
    return jac


def _check_rank(params: Sequence[str], weighted: Vector) -> None:
    norms = np.linalg.norm(weighted, axis=0)
    dead = [p for p, n in zip(params, norms, strict=True) if n == 0.0]
    if dead:
        raise UndeterminedError(dead)
    _, sv, vt = np.linalg.svd(weighted / norms, full_matrices=True)
    rank = int(np.sum(sv > RANK_TOL * sv[0]))
    if rank < len(params):
        null = vt[rank:]
        involved = np.any(np.abs(null) > 0.1, axis=0)
        raise UndeterminedError([p for p, hit in zip(params, involved, strict=True) if hit])


def _point_variances(
    pts: Sequence[FitPoint], residual: Vector, sigma: Vector, dof: int, chi2: float
) -> tuple[Vector, str]:
    """Variance of each point's ln value (see the module docstring) and how it was obtained."""
    stated = np.array([pt.rel_sigma is not None for pt in pts])
    if dof > 0 and not stated.any():
        scatter = float(np.sum(residual**2)) / dof
        basis = f"residual scatter of {len(pts)} points ({dof} dof)"
        return np.full(len(pts), scatter), basis
    if dof > 0:
        birge = max(1.0, chi2 / dof)
        basis = (
            f"propagated from the stated uncertainties of {len(pts)} points, scaled by "
            f"max(1, chi2/dof = {chi2 / dof:.3g})"
        )
        return sigma**2 * birge, basis
    return np.where(stated, sigma**2, 0.0), "propagated from the stated uncertainties"


def _fixed_covariance(
    params: Sequence[str],
    pts: Sequence[FitPoint],
    fixed: Mapping[str, Fixed],
    theta: Vector,
    sens: Vector,
    delta: object,
) -> Vector:
    """Covariance the uncertainty of assumed parameters passes on to the fitted ones."""
    assert callable(delta)
    cov = np.zeros((len(params), len(params)))
    used = {p for pt in pts for p in pt.obs.params}
    for name, f in fixed.items():
        if name not in used or not f.uncertainty:
            continue
        step = 1e-6 * max(abs(f.value), 1e-9)
        up = np.asarray(delta(theta, EXACT, {name: f.value + step}))
        down = np.asarray(delta(theta, EXACT, {name: max(f.value - step, 0.0)}))
        column = (up - down) / (f.value + step - max(f.value - step, 0.0))
        shift = -(sens @ column) * f.uncertainty
        cov += np.outer(shift, shift)
    return cov
