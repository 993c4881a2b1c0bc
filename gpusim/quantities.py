"""What a metric's name says about it: what it measures, its unit, and which direction is better.

This is the one place that reads metric names. A metric path's last component carries its unit as
a suffix (``makespan_s``, ``alltoall_algbw_GBps``, ``throughput_tokens_per_s``); the report's
tables and axis labels, its speedup charts and the validation ledger's unit check all ask
:func:`metric_quantity` rather than looking at suffixes themselves.

The rules, first match wins, on the last ``.``-separated component of the name:

* ``_per_s``: a rate of events per second (``throughput_tokens_per_s`` is tokens/s), higher is
  better. It is checked before ``_s``: a rate is not a time.
* ``_s``, ``_ms``, ``_us``, ``_ns``: a time, lower is better.
* ``_Bps``, ``_GBps``, ``_TBps``: a bandwidth; ``_FLOPps``, ``_TFLOPS``: a FLOP rate; higher is
  better.
* ``_B``, ``_bytes``, ``_MB``, ``_GB``, names ``bytes`` or ``bytes_*`` and anything under
  ``link_bytes``: a size, no better direction (moving more bytes is neither good nor bad).
* ``_utilisation``, ``_utilization``, ``_efficiency``: a utilisation (a fraction), higher is
  better.
* anything else: dimensionless with no better direction; so flags (``launch_bound``), counts
  (``kernel_launches``), other fractions (``host_busy_fraction``: a busy host is neither good
  nor bad) and ratios (``maxvio_batch``) get no speedup chart.

A speedup is only defined where a direction is: system / baseline where higher is better,
baseline / system where lower is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Dimension(StrEnum):
    """What a quantity measures; a ledger unit and its metric must agree on it."""

    time = "time"
    rate = "rate"
    bandwidth = "bandwidth"
    flop_rate = "flop_rate"
    size = "size"
    dimensionless = "dimensionless"


class Better(StrEnum):
    """Which way a metric improves."""

    HIGHER = "higher"
    LOWER = "lower"
    NEITHER = "neither"


#: The SI unit each dimension is reported in inside gpusim.
SI_UNIT: Final[dict[Dimension, str]] = {
    Dimension.time: "s",
    Dimension.rate: "1/s",
    Dimension.bandwidth: "B/s",
    Dimension.flop_rate: "FLOP/s",
    Dimension.size: "B",
    Dimension.dimensionless: "1",
}


@dataclass(frozen=True)
class Quantity:
    """What one metric measures, read off its name."""

    dimension: Dimension
    si_per_unit: float
    """Size of one stored unit in the dimension's SI unit (``_ms`` -> 1e-3)."""
    unit: str
    """The stored unit as displayed (``s``, ``GB/s``, ``tokens/s``; ``""`` when unitless)."""
    better: Better
    name: str
    """The metric name without its unit suffix (``makespan_s`` -> ``makespan``)."""


#: Unit suffixes, in the order they are tried, and what they imply.
UNIT_SUFFIXES: Final[tuple[tuple[str, tuple[Dimension, float, str, Better]], ...]] = (
    ("_s", (Dimension.time, 1.0, "s", Better.LOWER)),
    ("_ms", (Dimension.time, 1e-3, "ms", Better.LOWER)),
    ("_us", (Dimension.time, 1e-6, "us", Better.LOWER)),
    ("_ns", (Dimension.time, 1e-9, "ns", Better.LOWER)),
    ("_Bps", (Dimension.bandwidth, 1.0, "B/s", Better.HIGHER)),
    ("_GBps", (Dimension.bandwidth, 1e9, "GB/s", Better.HIGHER)),
    ("_TBps", (Dimension.bandwidth, 1e12, "TB/s", Better.HIGHER)),
    ("_FLOPps", (Dimension.flop_rate, 1.0, "FLOP/s", Better.HIGHER)),
    ("_TFLOPS", (Dimension.flop_rate, 1e12, "TFLOP/s", Better.HIGHER)),
    ("_B", (Dimension.size, 1.0, "B", Better.NEITHER)),
    ("_bytes", (Dimension.size, 1.0, "B", Better.NEITHER)),
    ("_MB", (Dimension.size, 1e6, "MB", Better.NEITHER)),
    ("_GB", (Dimension.size, 1e9, "GB", Better.NEITHER)),
)

#: Suffixes of dimensionless metrics where higher is better (kept in the name).
UTILISATION_SUFFIXES: Final = ("utilisation", "utilization", "efficiency")

_RATE_SUFFIX: Final = "_per_s"
_BYTES_ROOTS: Final = frozenset({"link_bytes"})


def _rate(name: str) -> Quantity:
    stem = name[: -len(_RATE_SUFFIX)]
    base, _, what = stem.rpartition("_")
    if not base:  # ``tokens_per_s``: the name is what is counted
        return Quantity(Dimension.rate, 1.0, f"{stem}/s", Better.HIGHER, stem)
    return Quantity(Dimension.rate, 1.0, f"{what}/s", Better.HIGHER, base)


def _dimensionless(name: str) -> Quantity:
    better = Better.HIGHER if name.endswith(UTILISATION_SUFFIXES) else Better.NEITHER
    return Quantity(Dimension.dimensionless, 1.0, "", better, name)


def metric_quantity(metric: str) -> Quantity:
    """What ``metric`` (a name or a dotted path such as ``per_gpu.gpu0.gemm_s``) measures.

    See the module docstring for the rules.
    """
    parts = metric.split(".")
    name = parts[-1]
    if name.endswith(_RATE_SUFFIX) and len(name) > len(_RATE_SUFFIX):
        return _rate(name)
    if parts[0] in _BYTES_ROOTS or name == "bytes" or name.startswith("bytes_"):
        return Quantity(Dimension.size, 1.0, "B", Better.NEITHER, name)
    for suffix, (dimension, si, unit, better) in UNIT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return Quantity(dimension, si, unit, better, name[: -len(suffix)])
    return _dimensionless(name)


def speedup(metric: str, system: float, baseline: float) -> float | None:
    """How many times better ``system`` is than ``baseline`` on ``metric``: system / baseline
    where higher is better, baseline / system where lower is; None where the metric has no better
    direction (sizes, flags, counts) or the denominator is 0."""
    better = metric_quantity(metric).better
    if better is Better.NEITHER:
        return None
    num, den = (system, baseline) if better is Better.HIGHER else (baseline, system)
    return None if den == 0 else num / den
