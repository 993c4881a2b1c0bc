"""Peak memory (issue 17): every shipped scenario and sweep under 500 MB; routing memory linear in
tokens x top-k, not tokens x experts.

Each scenario of ``workloads/`` and ``validation/scenarios/`` runs as ``gpusim run`` does (its own
options, fidelity included) and each sweep of ``workloads/`` as ``gpusim sweep --workers 2``, in a
fresh interpreter per file that calls the command line in-process and then reads its own peak
resident set (VmHWM; ``ru_maxrss`` where there is no /proc) and, for a sweep, its workers'
(``RUSAGE_CHILDREN``: the largest worker, once the pool has ended). Baselines beside them: a fresh
interpreter that imports gpusim, and one that also loads its command line and workload families.

A sweep has two figures:

- judged: the peak of what all its processes held at once. This script samples the sweep's
  process tree (the parent and its live descendants) every :data:`PSS_INTERVAL_S` (50 ms) and
  sums each process's proportional set size (``Pss:`` of ``/proc/<pid>/smaps_rollup``: private
  pages, plus each shared page divided by the processes sharing it, so the sum counts every page
  once). A spike shorter than the interval (or than the longest gap printed, on a busy machine)
  can be missed; a point's arrays live for most of its run, far longer than 50 ms. Library
  pages shared with unrelated processes (other interpreters of the same environment) are
  divided among them too, so on a busy machine the sum reads a few MB lower than alone; and
  the peak moves by tens of MB between runs with how the workers' peaks happen to coincide.
- bound: ``parent + workers x largest worker``, an upper bound, printed beside it. It counts a
  forked worker's pages that it still shares with the parent (the imported code and data,
  about 70 MB) once per process, and adds peaks that may not coincide.

The goal is judged on the sampled sum because that is the memory the machine must provide for
the sweep; the bound overstates it by the shared pages and stays printed as a cross-check of
the sampling (the sum should stay below it). Where /proc is missing the bound is judged.

Sweeps run their corners by default: every point is planned and validated as ``gpusim sweep``
does (the parent holds the whole plan), then only the points with every axis at its first or
last value (first seed) run, 272 of the 4,001 shipped points (about 6 minutes of CPU in all).
Corners can miss a sweep's largest process: in full runs (``--all-points``, about 11 minutes
of CPU, most in llm_opt_sparse_sweep's and router_alf_lb_sweep's points) the largest process of
llm_prefill_sweep and llm_prefill_graph_fusion_sweep was about 100 MB above their corners'
(whether the parent's stored rows or a middle point's worker is not traced yet).

Routing: the peak traced memory (tracemalloc) of one router step with few and with many experts
at the same tokens x top_k, on one routing thread: the many-expert step may hold more only by one
block of per-token scores (``BLOCK_TOKENS`` tokens x experts x 8 bytes; T routing threads hold up
to T blocks), never a tokens x experts array (tests/test_routing_memory.py asserts it on every
routing path).

Printed, not asserted; exit 0 either way. ``--only SUBSTRING`` measures the matching files only;
``--skip-sweeps`` leaves the sweeps out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from common import ROOT, report

GOAL_MB = 500.0
WORKERS = 2
PSS_INTERVAL_S = 0.05
"""How often a sweep's process tree's proportional set size is summed (a shorter spike can be
missed). Reading a process's smaps_rollup walks its page tables: about 2-4 ms of CPU for a
270 MB worker, so a sample of a sweep's three processes costs 5-10 ms (printed per sweep)."""
TREE_RESCAN_SAMPLES = 10
"""Samples between two looks for the tree's processes (a scan of /proc costs about 2 ms of
CPU; a worker forked in between counts from the next scan, when it still shares almost every
page with its parent)."""

# A process's own peak: Linux's ru_maxrss keeps the peak of the memory image exec replaced (the
# parent's, when spawned from a large parent); VmHWM is the peak of this image alone.
OWN_PEAK = """
def own_peak_kb(usage):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return usage.ru_maxrss
"""

# The child: run one gpusim command in-process, then print the peaks as JSON on the last line.
# With GPUSIM_BENCH_CORNERS set, a sweep plans every point (as gpusim sweep does, so the parent
# holds the whole plan) and then runs only its corners: every axis at its first or last value,
# first seed.
CHILD = (
    OWN_PEAK
    + """
import json, os, resource, sys
import gpusim.sweep
from gpusim.cli import app


def corners(points, sweep):
    ends = {}
    for axis, values in sweep.axes.items():
        paths = axis.split(",")
        pick = (lambda v: list(v)) if len(paths) > 1 else (lambda v: [v])
        ends[tuple(paths)] = (pick(values[0]), pick(values[-1]))
    seed = points[0].seed if points else 0
    return [
        p for p in points
        if p.seed == seed
        and all([p.axis_values[q] for q in paths] in pair for paths, pair in ends.items())
    ]


planned = []
if os.environ.get("GPUSIM_BENCH_CORNERS"):
    full_plan = gpusim.sweep.plan_points

    def plan_corners(sweep, sweep_file, limits):
        base, points = full_plan(sweep, sweep_file, limits)
        chosen = corners(points, sweep)
        planned.extend([len(chosen), len(points)])
        return base, chosen

    gpusim.sweep.plan_points = plan_corners
code = 0
if sys.argv[1:]:
    try:
        app(args=sys.argv[1:], prog_name="gpusim", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:
        code = getattr(exc, "exit_code", 1)
else:
    import gpusim.workloads.registry, gpusim.simulate
own = resource.getrusage(resource.RUSAGE_SELF)
workers = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "self_kb": own_peak_kb(own), "child_kb": workers.ru_maxrss,
                  "cpu_s": own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime,
                  "points": planned}))
"""
)
BARE_CHILD = (
    OWN_PEAK
    + """
import json, resource
import gpusim
own = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"code": 0, "self_kb": own_peak_kb(own), "child_kb": 0, "cpu_s": 0.0}))
"""
)


def _parents() -> dict[int, list[int]]:
    """Every live process's children, by parent id (from /proc/<pid>/stat)."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue  # ended meanwhile
        ppid = int(data[data.rindex(b")") + 2 :].split(None, 2)[1])  # the name may hold spaces
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _tree(root: int) -> list[int]:
    """``root`` and its live descendants."""
    kids = _parents()
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(kids.get(pid, ()))
    return out


def _pss_kb(pid: int) -> int:
    """A process's proportional set size (kB; 0 once it has ended): its private pages, plus
    each page it shares divided by the number of processes sharing it, so that the sum over
    processes counts every page once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreePss(threading.Thread):
    """Samples the summed proportional set size of a process and its descendants every
    :data:`PSS_INTERVAL_S` until stopped: the peak of what they held at once (a spike shorter
    than the interval can be missed). Linux only (``peak_kb`` stays None elsewhere)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_kb: int | None = None
        self.samples = 0
        self.longest_gap_s = 0.0
        self.cpu_s = 0.0
        """CPU seconds the sampling took (this thread's)."""
        self._stop_at = threading.Event()

    def run(self) -> None:
        if not os.path.exists(f"/proc/{self.root}/smaps_rollup"):
            return
        pids: list[int] = []
        last = time.perf_counter()
        cpu0 = time.thread_time()
        while not self._stop_at.is_set():
            if self.samples % TREE_RESCAN_SAMPLES == 0:
                pids = _tree(self.root)
            total = sum(_pss_kb(pid) for pid in pids)
            now = time.perf_counter()
            if self.samples:
                self.longest_gap_s = max(self.longest_gap_s, now - last)
            last = now
            self.samples += 1
            self.peak_kb = max(self.peak_kb or 0, total)
            self.cpu_s = time.thread_time() - cpu0
            self._stop_at.wait(PSS_INTERVAL_S)

    def stop(self) -> None:
        """Stop sampling (the last sample is in)."""
        self._stop_at.set()
        self.join()


@dataclass(frozen=True)
class Peaks:
    """What one child measured: its exit code, its own and its largest worker's peak resident
    set (MB), CPU seconds (its own and its workers'), and for a sweep's corners the points run
    and planned; with ``sample_pss``, the sampled peak of its process tree's summed
    proportional set size (MB; None where not sampled), the longest gap between samples and the
    sampling's CPU seconds."""

    code: int
    self_mb: float
    worker_mb: float
    cpu_s: float
    points: tuple[int, ...]
    tree_pss_mb: float | None = None
    longest_gap_s: float = 0.0
    sampler_cpu_s: float = 0.0


def peaks(
    args: list[str], corners: bool = False, child: str = CHILD, sample_pss: bool = False
) -> Peaks:
    """Run ``gpusim ARGS`` in a fresh interpreter (a sweep's ``corners`` only when asked). No
    ARGS: the interpreter only imports gpusim's command line and workload families. With
    ``sample_pss``, this process samples the child's process tree meanwhile (:class:`TreePss`).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if corners:
        env["GPUSIM_BENCH_CORNERS"] = "1"
    with subprocess.Popen(
        [sys.executable, "-c", child, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        sampler = TreePss(proc.pid) if sample_pss else None
        if sampler is not None:
            sampler.start()
        try:
            stdout, stderr = proc.communicate()
        finally:
            if sampler is not None:
                sampler.stop()
    try:
        got = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"gpusim {' '.join(args)} died:\n{stderr[-2000:]}") from None
    pss_kb = sampler.peak_kb if sampler is not None else None
    return Peaks(
        got["code"],
        got["self_kb"] / 1024,
        got["child_kb"] / 1024,
        got["cpu_s"],
        tuple(got.get("points", ())),
        None if pss_kb is None else pss_kb / 1024,
        sampler.longest_gap_s if sampler is not None else 0.0,
        sampler.cpu_s if sampler is not None else 0.0,
    )


def shipped() -> tuple[list[Path], list[Path]]:
    """The shipped scenario files and sweep files (as tests/golden/snapshot.py finds them)."""
    from gpusim.spec.detect import detect_kind

    files = sorted((ROOT / "workloads").glob("*.json")) + sorted(
        (ROOT / "validation" / "scenarios").glob("*.json")
    )
    kinds = {p: detect_kind(json.loads(p.read_text())) for p in files}
    return (
        [p for p in files if kinds[p] == "scenario"],
        [p for p in files if kinds[p] == "sweep"],
    )


def label_of(path: Path) -> str:
    return str(path.relative_to(ROOT))


def routing_peaks_mb(tokens: int, top_k: int, experts: tuple[int, ...]) -> dict[int, float]:
    """Peak traced MB of one router step (uniform routing, counted as route_layer counts it)
    over ``tokens`` and each number of ``experts``, on one routing thread."""
    import tracemalloc

    import numpy as np

    import gpusim.workloads.moe.routing as routing
    from gpusim.spec.moe import RoutingSpec

    routing._MAX_THREADS = 1  # one block in flight; T threads hold up to T blocks
    out = {}
    for n in experts:
        router = routing.Router(RoutingSpec(), n, top_k, np.random.default_rng(0))
        router.step(64, as_sets=True)  # first-call allocations out of the figure
        tracemalloc.start()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        router.step(tokens, as_sets=True)
        out[n] = (tracemalloc.get_traced_memory()[1] - before) / 1e6
        tracemalloc.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="measure only files whose path contains this")
    parser.add_argument("--skip-sweeps", action="store_true", help="leave the sweeps out")
    parser.add_argument(
        "--all-points", action="store_true", help="run every point of each sweep, not its corners"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    scenarios, sweeps = shipped()
    scenarios = [p for p in scenarios if args.only in label_of(p)]
    sweeps = [] if args.skip_sweeps else [p for p in sweeps if args.only in label_of(p)]
    print(f"peak memory, MB (goal each < {GOAL_MB:.0f} MB; a fresh interpreter per file)")
    bare = peaks([], child=BARE_CHILD)
    report("baseline: python importing gpusim", bare.self_mb, "MB", "", None)
    base = peaks([])
    report("baseline: ... and its command line and workloads", base.self_mb, "MB", "", None)
    worst = ("", 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for path in scenarios:
            got = peaks(["run", str(path), "-o", f"{tmp}/{path.stem}"])
            note = "" if got.code == 0 else f" (exit {got.code})"
            mb = got.self_mb
            report(f"{label_of(path)}{note}", mb, "MB", f"< {GOAL_MB:.0f}", mb < GOAL_MB)
            worst = max(worst, (label_of(path), mb), key=lambda w: w[1])
        if sweeps:
            which = "every point" if args.all_points else "corners: points run/planned"
            print(
                f"sweeps on {WORKERS} workers ({which}); judged: the sampled peak of all their "
                f"processes' summed PSS (every {PSS_INTERVAL_S * 1e3:.0f} ms); "
                f"bound: parent + {WORKERS} x largest worker"
            )
        for path in sweeps:
            out = f"{tmp}/{path.stem}"
            cmd = ["sweep", str(path), "-o", out, "--workers", str(WORKERS)]
            got = peaks(cmd, corners=not args.all_points, sample_pss=True)
            # a sweep exits 1 when some points fail (e.g. a model that does not fit): still
            # measured, the failures are the sweep's own
            bound = got.self_mb + WORKERS * got.worker_mb
            ran = f"{got.points[0]}/{got.points[1]} pts, " if got.points else ""
            judged = bound if got.tree_pss_mb is None else got.tree_pss_mb
            parts = f"{got.self_mb:.0f}+{WORKERS}x{got.worker_mb:.0f}"
            if got.tree_pss_mb is None:
                label = f"{path.stem} ({ran}no PSS here: bound {parts})"
                report(label, bound, "MB", f"< {GOAL_MB:.0f}", bound < GOAL_MB)
            else:
                label = f"{path.stem} ({ran}PSS)"
                report(label, got.tree_pss_mb, "MB", f"< {GOAL_MB:.0f}", judged < GOAL_MB)
                gap = f"gap <= {got.longest_gap_s * 1e3:.0f} ms, {got.sampler_cpu_s:.1f} s CPU"
                report(f"  bound {parts} (sampling: {gap})", bound, "MB", "", None)
            worst = max(worst, (label_of(path), judged), key=lambda w: w[1])
    if worst[0]:
        ratio = worst[1] / base.self_mb
        print(f"  largest: {worst[0]}, {worst[1]:.0f} MB ({ratio:.1f} x the baseline)")

    from gpusim.workloads.moe.routing import BLOCK_TOKENS

    tokens, top_k, few, many = 4 * BLOCK_TOKENS, 2, 8, 800
    got_mb = routing_peaks_mb(tokens, top_k, (few, many))
    block_mb = BLOCK_TOKENS * (many - few) * 8 / 1e6
    full_mb = tokens * (many - few) * 4 / 1e6
    print(f"routing one step of {tokens:,} tokens, top-{top_k}, one thread (traced peak)")
    report(f"with {few} experts", got_mb[few], "MB", "", None)
    grown = got_mb[many] - got_mb[few]
    report(
        f"grown with {many} experts (a float32 tokens x experts: {full_mb:.0f})",
        grown,
        "MB",
        f"<= {block_mb:.0f}",
        grown <= 1.05 * block_mb,
    )
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
