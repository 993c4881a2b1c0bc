"""Closed forms for NCCL-style collectives: the analytic oracles of the DES models in
:mod:`gpusim.execution.collectives`.

Every rank enters at the same instant, pays the collective's fixed setup once, then moves its
bytes as flows that share links max-min fairly at the rates they get with all of them active at
once. Bandwidth is the fabric's link capacity, which already holds the profile's link efficiency
(on H100 NVLink that is NCCL's ~370 of 450 GB/s, hardware.md section 3): no second bandwidth
efficiency is applied here.

Pure (no SimPy); depends only on the fabric, the max-min solver and the profile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpusim.engine.maxmin import max_min_fair_rates
from gpusim.hardware.fabric import Fabric, Route
from gpusim.spec.profile import CalibrationProfile
from gpusim.units import GB, us_to_s

SendMatrix = np.ndarray | Sequence[Sequence[float]]
"""Bytes ``[i][j]`` that ``ranks[i]`` sends to ``ranks[j]``."""


@dataclass(frozen=True)
class NcclCosts:
    """Per-call costs of an NCCL collective kernel from a calibration profile."""

    sms: int
    """SMs the collective's kernel occupies on every rank for its whole duration (channels)."""
    setup_s: float
    """Fixed cost each rank pays on entering, beyond its data movement."""

    @classmethod
    def from_profile(cls, profile: CalibrationProfile) -> NcclCosts:
        """Read ``device.nccl_sms`` and ``device.nccl_setup_us``."""
        return cls(
            sms=round(profile.device.nccl_sms.value),
            setup_s=us_to_s(profile.device.nccl_setup_us.value),
        )


def check_ranks(ranks: Sequence[str]) -> list[str]:
    """The ranks as a list; raises ValueError when empty or repeated."""
    out = list(ranks)
    if not out:
        raise ValueError("a collective needs at least one rank")
    if len(set(out)) != len(out):
        raise ValueError(f"collective ranks must be distinct, got {out}")
    return out


def send_matrix(send_B: SendMatrix, n_ranks: int) -> np.ndarray:
    """``send_B`` as an ``n_ranks x n_ranks`` float array with a zero diagonal (a rank's bytes to
    itself are a local copy, free here). Raises ValueError on a wrong shape or a negative or
    non-finite entry."""
    m = np.array(send_B, dtype=float)
    if m.shape != (n_ranks, n_ranks):
        raise ValueError(f"send matrix must be {n_ranks}x{n_ranks}, got shape {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError("send matrix entries must be finite and non-negative")
    np.fill_diagonal(m, 0.0)
    return m


def ring_hops(ranks: Sequence[str]) -> list[tuple[str, str]]:
    """The ring's hops in the order of ``ranks``: each rank sends to the next, the last to the
    first. Empty for one rank."""
    n = len(ranks)
    if n < 2:
        return []
    return [(ranks[i], ranks[(i + 1) % n]) for i in range(n)]


def _rates_Bps(fabric: Fabric, routes: Sequence[Route]) -> list[float]:
    n = len(routes)
    return max_min_fair_rates(
        [r.resources for r in routes], [1] * n, [math.inf] * n, fabric.capacities_Bps
    )


def all_to_all_time_s(
    fabric: Fabric, ranks: Sequence[str], send_B: SendMatrix, setup_s: float
) -> float:
    """Duration of a direct all-to-all with every rank entering together: ``setup_s`` plus the
    latest completion (route latency + bytes / static max-min rate) of the non-empty flows
    ``ranks[i] -> ranks[j]``.

    Exact for the DES model when all flows finish together (uniform traffic on a symmetric
    fabric); otherwise an approximation that ignores rates rising as flows finish.
    """
    if setup_s < 0:
        raise ValueError("setup_s must be non-negative")
    names = check_ranks(ranks)
    m = send_matrix(send_B, len(names))
    routes: list[Route] = []
    sizes: list[float] = []
    for i, src in enumerate(names):
        for j, dst in enumerate(names):
            if m[i, j] > 0:
                routes.append(fabric.route(src, dst))
                sizes.append(float(m[i, j]))
    if not routes:
        return setup_s
    rates = _rates_Bps(fabric, routes)
    return setup_s + max(
        r.latency_s + size / rate for r, size, rate in zip(routes, sizes, rates, strict=True)
    )


def ring_all_reduce_time_s(
    fabric: Fabric, ranks: Sequence[str], size_B: float, setup_s: float
) -> float:
    """Duration of a ring all-reduce of ``size_B`` bytes with every rank entering together:
    ``setup_s + 2(R-1) x max over hops of (latency + (size_B / R) / rate)``, each hop's rate
    being its max-min share with all ``R`` hops active at once (the ring follows the order of
    ``ranks``). One rank, or zero bytes, costs only the setup.

    Exact for the DES model when every hop takes the same time (a symmetric fabric); otherwise
    the lock-step bound, which ignores faster hops running ahead.
    """
    if setup_s < 0:
        raise ValueError("setup_s must be non-negative")
    if not size_B >= 0:
        raise ValueError("size_B must be non-negative")
    names = check_ranks(ranks)
    hops = ring_hops(names)
    if not hops or size_B == 0:
        return setup_s
    routes = [fabric.route(src, dst) for src, dst in hops]
    chunk_B = size_B / len(names)
    rates = _rates_Bps(fabric, routes)
    step_s = max(r.latency_s + chunk_B / rate for r, rate in zip(routes, rates, strict=True))
    return setup_s + 2 * (len(names) - 1) * step_s


def alltoall_bus_bandwidth_GBps(size_B: float, time_s: float, n_ranks: int) -> float:
    """nccl-tests' all-to-all bus bandwidth, ``algBw x (n-1)/n`` in GB/s, where ``size_B`` is one
    rank's whole send buffer (its share for itself included) and ``algBw = size_B / time_s``."""
    return _bus_bandwidth_GBps(size_B, time_s, n_ranks, 1)


def all_reduce_bus_bandwidth_GBps(size_B: float, time_s: float, n_ranks: int) -> float:
    """nccl-tests' all-reduce bus bandwidth, ``algBw x 2(n-1)/n`` in GB/s, where ``size_B`` is
    the reduced buffer and ``algBw = size_B / time_s``."""
    return _bus_bandwidth_GBps(size_B, time_s, n_ranks, 2)


def _bus_bandwidth_GBps(size_B: float, time_s: float, n_ranks: int, passes: int) -> float:
    if n_ranks < 1:
        raise ValueError(f"n_ranks must be at least 1, got {n_ranks}")
    if not time_s > 0:
        raise ValueError(f"time_s must be positive, got {time_s}")
    return size_B / time_s * passes * (n_ranks - 1) / n_ranks / GB
