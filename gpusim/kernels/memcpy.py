"""Closed-form time of one copy: the analytic oracle for the DES's transfer model."""

from __future__ import annotations

import math


def memcpy_time_s(bytes_: float, bw_Bps: float, latency_s: float) -> float:
    """Time to move ``bytes_`` over one uncontended path: ``latency_s + bytes_ / bw_Bps``.

    This is the analytic oracle for a single transfer alone on a single path (one link, one
    copy engine, no competing flows): ``bw_Bps`` is the path's achievable bandwidth (the
    bottleneck of the route, after efficiency) and ``latency_s`` its fixed start-up cost. The
    DES must reproduce it exactly in that case; with contention the DES is slower, never faster.

    Raises ``ValueError`` for a negative or non-finite size or latency, or a bandwidth that is
    not positive and finite.
    """
    if not (math.isfinite(bytes_) and bytes_ >= 0):
        raise ValueError(f"bytes_ must be finite and >= 0, got {bytes_}")
    if not (math.isfinite(bw_Bps) and bw_Bps > 0):
        raise ValueError(f"bw_Bps must be finite and > 0, got {bw_Bps}")
    if not (math.isfinite(latency_s) and latency_s >= 0):
        raise ValueError(f"latency_s must be finite and >= 0, got {latency_s}")
    return latency_s + bytes_ / bw_Bps
