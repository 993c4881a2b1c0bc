"""Closed forms for NCCL collectives: the analytic oracles of the DES models in
:mod:`gpusim.execution.collectives`.

Every rank enters at the same instant and pays the call's fixed latency (NCCL's base latency for
the protocol it uses, plus any extra ``setup_s``); its messages then move as flows that share the
fabric max-min fairly at the rates they get with all of them active at once. Each message takes
its transport's path (:mod:`gpusim.hardware.transport`: P2P, SHM through host memory, or NET),
pays its protocol's per-step latency and carries its protocol's wire bytes
(:mod:`gpusim.kernels.nccl`). Bandwidth is the fabric's capacity, which holds the profile's link
and host-memory efficiencies; the protocol's fraction is the only other bandwidth factor.

Pure (no SimPy); depends only on the fabric, the transport choice, the max-min solver and the
profile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpusim.engine.maxmin import max_min_fair_rates
from gpusim.hardware.fabric import Fabric
from gpusim.hardware.transport import NcclPath, nccl_path
from gpusim.kernels.nccl import NcclProtocolModel
from gpusim.spec.profile import CalibrationProfile, NcclHardware, NcclProtocol
from gpusim.units import GB, us_to_s

SendMatrix = np.ndarray | Sequence[Sequence[float]]
"""Bytes ``[i][j]`` that ``ranks[i]`` sends to ``ranks[j]``."""


@dataclass(frozen=True)
class NcclCosts:
    """Per-call costs of an NCCL collective from a calibration profile."""

    sms: int
    """SMs the collective's kernel occupies on every rank for its whole duration (channels)."""
    setup_s: float
    """Extra fixed cost each rank pays on entering, beyond NCCL's protocol latency (which the
    collective models charge from the profile's ``nccl`` section). 0 from a profile."""
    host_call_s: float = 0.0
    """Host time of the NCCL call (``nccl.host_call_us``)."""

    @classmethod
    def from_profile(cls, profile: CalibrationProfile) -> NcclCosts:
        """Read ``device.nccl_sms`` and ``nccl.host_call_us``."""
        return cls(
            sms=round(profile.device.nccl_sms.value),
            setup_s=0.0,
            host_call_s=us_to_s(profile.nccl.host_call_us.value),
        )


@dataclass(frozen=True)
class Message:
    """One message of a collective: its path, data bytes and protocol."""

    path: NcclPath
    size_B: float
    protocol: NcclProtocol


@dataclass(frozen=True)
class RingPlan:
    """A ring collective's hops (each rank to the next), its protocol and its step count."""

    paths: tuple[NcclPath, ...]
    protocol: NcclProtocol
    steps: int
    chunk_B: float


def protocol_model(fabric: Fabric) -> NcclProtocolModel:
    """The NCCL protocol model of the profile ``fabric`` was built with."""
    if fabric.profile is None:
        raise ValueError("NCCL collectives need a calibration profile (fabric built without one)")
    return NcclProtocolModel.from_profile(fabric.profile)


def channels_of(fabric: Fabric, sms: int | None) -> int:
    """NCCL channels of a call: ``sms`` when given, else the profile's ``device.nccl_sms``."""
    if sms is not None:
        return sms
    if fabric.profile is None:
        raise ValueError("NCCL collectives need a calibration profile (fabric built without one)")
    return round(fabric.profile.device.nccl_sms.value)


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


def path_rates_Bps(fabric: Fabric, paths: Sequence[NcclPath]) -> list[float]:
    """Each path's static rate with every path active at once: every leg of every path is a
    flow sharing the fabric max-min fairly, and a path moves at its slowest leg's rate."""
    legs = [leg.resources for p in paths for leg in p.legs]
    n = len(legs)
    flat = max_min_fair_rates(legs, [1] * n, [math.inf] * n, fabric.capacities_Bps)
    out: list[float] = []
    i = 0
    for p in paths:
        out.append(min(flat[i : i + len(p.legs)]))
        i += len(p.legs)
    return out


def all_to_all_messages(
    fabric: Fabric, names: Sequence[str], m: np.ndarray, channels: int, model: NcclProtocolModel
) -> list[Message]:
    """The non-empty messages of an all-to-all (row ``i`` to column ``j``), each with its
    transport path and NCCL's send/receive protocol for its size."""
    return [
        Message(nccl_path(fabric, src, dst), float(m[i, j]), model.p2p_protocol(m[i, j], channels))
        for i, src in enumerate(names)
        for j, dst in enumerate(names)
        if m[i, j] > 0
    ]


def all_to_all_time_s(
    fabric: Fabric,
    ranks: Sequence[str],
    send_B: SendMatrix,
    setup_s: float,
    *,
    sms: int | None = None,
) -> float:
    """Duration of a direct all-to-all with every rank entering together: ``setup_s`` plus the
    call's protocol latency plus the latest completion (per-step latency + wire bytes / static
    max-min rate) of the non-empty messages ``ranks[i] -> ranks[j]``. ``sms`` (NCCL channels)
    sets the LL/Simple threshold; the profile's ``device.nccl_sms`` when absent.

    Exact for the DES model when all messages finish together (uniform traffic on a symmetric
    fabric); otherwise an approximation that ignores rates rising as messages finish.
    """
    if setup_s < 0:
        raise ValueError("setup_s must be non-negative")
    names = check_ranks(ranks)
    m = send_matrix(send_B, len(names))
    if not np.any(m > 0):
        return setup_s
    model = protocol_model(fabric)
    msgs = all_to_all_messages(fabric, names, m, channels_of(fabric, sms), model)
    rates = path_rates_Bps(fabric, [msg.path for msg in msgs])
    latency_s = model.call_latency_s(msg.protocol for msg in msgs)
    return (
        setup_s
        + latency_s
        + max(
            model.hop_s(msg.path.hardware, msg.protocol)
            + model.wire_B(msg.protocol, msg.size_B) / r
            for msg, r in zip(msgs, rates, strict=True)
        )
    )


def ring_plan(
    fabric: Fabric, names: Sequence[str], steps: int, chunk_B: float, model: NcclProtocolModel
) -> RingPlan:
    """The ring over ``names`` (in order) and the protocol NCCL's tuner picks for ``steps``
    steps of ``chunk_B``: the fastest at the ring's uncontended rate, its slowest hop's, over
    its slowest hardware class."""
    paths = tuple(nccl_path(fabric, src, dst) for src, dst in ring_hops(names))
    if not paths or steps == 0 or chunk_B == 0:
        return RingPlan(paths, NcclProtocol.simple, 0, chunk_B)
    rate_Bps = min(path_rates_Bps(fabric, paths))
    kinds = {p.hardware for p in paths}
    hw = next(h for h in (NcclHardware.net, NcclHardware.pcie, NcclHardware.nvlink) if h in kinds)
    return RingPlan(paths, model.ring_protocol(hw, steps, chunk_B, rate_Bps), steps, chunk_B)


def ring_time_s(
    fabric: Fabric, ranks: Sequence[str], size_B: float, passes: int, setup_s: float
) -> float:
    """Duration of a ring collective over a buffer of ``size_B`` bytes with every rank entering
    together: ``passes x (R-1)`` steps of ``size_B / R`` each (all-gather and reduce-scatter
    one pass, all-reduce two), lock-step, each step as long as the slowest hop (per-step
    latency + wire bytes / its max-min share with every hop active), plus the protocol's base
    latency and ``setup_s``. One rank, or zero bytes, costs only the setup.

    Exact for the DES model when every hop takes the same time (a symmetric fabric); otherwise
    the lock-step bound, which ignores faster hops running ahead.
    """
    if setup_s < 0:
        raise ValueError("setup_s must be non-negative")
    if not size_B >= 0:
        raise ValueError("size_B must be non-negative")
    names = check_ranks(ranks)
    if len(names) < 2 or size_B == 0:
        return setup_s
    model = protocol_model(fabric)
    plan = ring_plan(fabric, names, passes * (len(names) - 1), size_B / len(names), model)
    p = plan.protocol
    rates = path_rates_Bps(fabric, plan.paths)
    step_s = max(
        model.hop_s(path.hardware, p) + model.wire_B(p, plan.chunk_B) / r
        for path, r in zip(plan.paths, rates, strict=True)
    )
    return setup_s + model.base_latency_s[p] + plan.steps * step_s


def ring_all_reduce_time_s(
    fabric: Fabric, ranks: Sequence[str], size_B: float, setup_s: float
) -> float:
    """A ring all-reduce of ``size_B`` bytes: :func:`ring_time_s` with two passes."""
    return ring_time_s(fabric, ranks, size_B, 2, setup_s)


def all_gather_time_s(fabric: Fabric, ranks: Sequence[str], size_B: float, setup_s: float) -> float:
    """A ring all-gather whose output is ``size_B`` bytes on every rank (each contributes
    ``size_B / R``; nccl-tests' size): :func:`ring_time_s` with one pass."""
    return ring_time_s(fabric, ranks, size_B, 1, setup_s)


def reduce_scatter_time_s(
    fabric: Fabric, ranks: Sequence[str], size_B: float, setup_s: float
) -> float:
    """A ring reduce-scatter whose input is ``size_B`` bytes on every rank (each keeps
    ``size_B / R``; nccl-tests' size): :func:`ring_time_s` with one pass. The reduction's
    arithmetic is not modelled (it hides under the copies)."""
    return ring_time_s(fabric, ranks, size_B, 1, setup_s)


def alltoall_bus_bandwidth_GBps(size_B: float, time_s: float, n_ranks: int) -> float:
    """nccl-tests' all-to-all bus bandwidth, ``algBw x (n-1)/n`` in GB/s, where ``size_B`` is one
    rank's whole send buffer (its share for itself included) and ``algBw = size_B / time_s``."""
    return _bus_bandwidth_GBps(size_B, time_s, n_ranks, 1)


def all_reduce_bus_bandwidth_GBps(size_B: float, time_s: float, n_ranks: int) -> float:
    """nccl-tests' all-reduce bus bandwidth, ``algBw x 2(n-1)/n`` in GB/s, where ``size_B`` is
    the reduced buffer and ``algBw = size_B / time_s``."""
    return _bus_bandwidth_GBps(size_B, time_s, n_ranks, 2)


def all_gather_bus_bandwidth_GBps(size_B: float, time_s: float, n_ranks: int) -> float:
    """nccl-tests' all-gather (and reduce-scatter) bus bandwidth, ``algBw x (n-1)/n`` in GB/s,
    where ``size_B`` is the whole gathered buffer and ``algBw = size_B / time_s``."""
    return _bus_bandwidth_GBps(size_B, time_s, n_ranks, 1)


def _bus_bandwidth_GBps(size_B: float, time_s: float, n_ranks: int, passes: int) -> float:
    if n_ranks < 1:
        raise ValueError(f"n_ranks must be at least 1, got {n_ranks}")
    if not time_s > 0:
        raise ValueError(f"time_s must be positive, got {time_s}")
    return size_B / time_s * passes * (n_ranks - 1) / n_ranks / GB
