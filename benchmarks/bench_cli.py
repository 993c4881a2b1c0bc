"""Command-line start-up (issue 17): ``gpusim --help`` and ``gpusim list`` in under 0.5 s.

Each command runs in a fresh interpreter, best of 7; its CPU time (user + system, the verdict)
and wall time are printed beside the goal, with the ratio to a reference measured in the same
run: a fresh interpreter that only imports the command-line framework (typer and rich), the floor
any typer program pays. Printed, not asserted.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 0.5
REPEATS = 7
REFERENCE = [sys.executable, "-c", "import typer, rich.console, rich.table"]


def best_s(cmd: list[str]) -> tuple[float, float]:
    """Best CPU and best wall seconds of ``cmd`` over :data:`REPEATS` runs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cpus, walls = [], []
    for _ in range(REPEATS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - wall0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(cpus), min(walls)


def main() -> None:
    ref_cpu, ref_wall = best_s(REFERENCE)
    print(f"reference (python importing typer and rich): {ref_cpu:.3f} s CPU, {ref_wall:.3f} s")
    for args in (["--help"], ["list"]):
        cpu, wall = best_s([sys.executable, "-m", "gpusim", *args])
        verdict = "PASS" if cpu < GOAL_S else "MISS"
        print(
            f"gpusim {' '.join(args):<7} {cpu:.3f} s CPU ({cpu / ref_cpu:.2f} x the reference), "
            f"{wall:.3f} s wall; goal < {GOAL_S} s: {verdict}"
        )


if __name__ == "__main__":
    main()
