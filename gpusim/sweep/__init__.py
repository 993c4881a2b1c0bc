"""What-if sweeps: expand axes over a base scenario, run the points on an executor, keep the
results in a resumable, content-addressed store (an append-only record of finished points,
compacted into one Parquet dataset)."""

from gpusim.sweep.executors import make_executor
from gpusim.sweep.expand import (
    Point,
    PointRef,
    SweepBase,
    check_metrics,
    count_points,
    expand,
    iter_points,
    plan_points,
    sweep_base,
    validate_points,
)
from gpusim.sweep.runner import SweepOutcome, SweepProgress, manifest_for, run_sweep
from gpusim.sweep.spec import SweepSpec, load_sweep
from gpusim.sweep.store import ResultStore

__all__ = [
    "Point",
    "PointRef",
    "ResultStore",
    "SweepBase",
    "SweepOutcome",
    "SweepProgress",
    "SweepSpec",
    "check_metrics",
    "count_points",
    "expand",
    "iter_points",
    "load_sweep",
    "make_executor",
    "manifest_for",
    "plan_points",
    "run_sweep",
    "sweep_base",
    "validate_points",
]
