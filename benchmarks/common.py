"""What the benchmark scripts share: the figure line (value beside its goal) and a timed sweep."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from gpusim.limits import Limits
from gpusim.sweep import ResultStore, load_sweep, make_executor, plan_points, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def report(label: str, value: float, unit: str, goal: str, ok: bool | None) -> None:
    """Print one figure beside its goal: PASS or MISS, INFO when it has none."""
    verdict = "INFO" if ok is None else ("PASS" if ok else "MISS")
    print(f"  {label:<56} {value:>10,.3f} {unit:<4} goal {goal:<8} {verdict}")


def timed_sweep_s(path: Path, out: Path, workers: int) -> tuple[float, int]:
    """Validate and run the sweep file ``path`` into ``out`` on ``workers`` processes: wall
    seconds from loading the file to the last stored point, and the number of points."""
    t0 = time.perf_counter()
    spec = load_sweep(path)
    base, points = plan_points(spec, path, Limits())
    store = ResultStore(out)
    with make_executor("process", workers) as pool:
        outcome = run_sweep(points, store, pool, base=base, total=len(points))
    if not outcome.ok:
        raise RuntimeError(f"the benchmark sweep failed: {outcome.failures}")
    return time.perf_counter() - t0, len(points)
