"""Sweep machinery throughput: a 200-point analytic sweep with 1 and 2 worker processes, against
calling `load_scenario` + `simulate` for the same points in a plain loop.

Goal: the process-pool sweep at 200 points costs under 10 % more wall time than the loop
(1 worker; the pool's workers compute while the parent process writes shards). Printed, not
asserted: figures are ratios within this one run, as the machine is noisy.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from gpusim import simulate
from gpusim.limits import Limits
from gpusim.spec.loading import load_scenario
from gpusim.sweep import (
    ResultStore,
    count_points,
    iter_points,
    load_sweep,
    make_executor,
    run_sweep,
    validate_points,
)

ROOT = Path(__file__).resolve().parents[1]
POINTS = 200


def sweep_file(folder: Path) -> Path:
    base = ROOT / "workloads" / "gemm_alltoall_hgx.json"
    doc = {
        "name": "bench",
        "base": str(base),
        "axes": {"workload.gemm.m": [256 * (i + 1) for i in range(POINTS)]},
        "systems": {},
    }
    path = folder / "sweep.json"
    path.write_text(json.dumps(doc))
    raw = json.loads(base.read_text())
    raw["options"] = {"fidelity": "analytic", "trace": False}
    path_base = folder / "base.json"
    path_base.write_text(json.dumps(raw))
    doc["base"] = str(path_base)
    path.write_text(json.dumps(doc))
    return path


def loop_s(path: Path) -> float:
    spec = load_sweep(path)
    base = Path(str(spec.base))
    t0 = time.perf_counter()
    for values in spec.axes["workload.gemm.m"]:
        simulate(load_scenario(base, {"workload.gemm.m": values}))
    return time.perf_counter() - t0


def sweep_s(path: Path, workers: int, out: Path) -> float:
    t0 = time.perf_counter()
    spec = load_sweep(path)
    validate_points(spec, path, Limits())
    store = ResultStore(out)
    fields = {"name": spec.name, "description": spec.description}
    with make_executor("process", workers) as pool:
        outcome = run_sweep(
            iter_points(spec, path), store, pool, total=count_points(spec), manifest_fields=fields
        )
    store.write_summary_csv(store.rows())
    assert outcome.ok and outcome.progress.done == POINTS
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = sweep_file(folder)
        base = loop_s(path)
        one = sweep_s(path, 1, folder / "w1")
        two = sweep_s(path, 2, folder / "w2")
    print(f"{POINTS}-point analytic sweep (gemm_alltoall on hgx_h100_8gpu)")
    print(f"  loop of load_scenario + simulate: {base:7.2f} s  ({POINTS / base:7.1f} points/s)")
    print(f"  sweep, 1 worker process:          {one:7.2f} s  ({POINTS / one:7.1f} points/s)")
    print(f"  sweep, 2 worker processes:        {two:7.2f} s  ({POINTS / two:7.1f} points/s)")
    overhead = one / base - 1
    per_point_ms = (one - base) / POINTS * 1e3
    verdict = "PASS" if overhead < 0.10 else "MISS"
    print(
        f"  overhead of the sweep machinery (1 worker vs loop): {100 * overhead:+.1f} % "
        f"({per_point_ms:+.2f} ms per point); goal < 10 %: {verdict}"
    )
    print(f"  speedup with 2 workers over 1: {one / two:.2f}x")


if __name__ == "__main__":
    main()
