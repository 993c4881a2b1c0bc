"""Simulator speed on one FlashMoE forward, measured in one run on this machine.

    python benchmarks/bench_moe.py

The configuration: 8 H100 SXM of an HGX node (topologies/hgx_h100_8gpu.json, profile
h100_sxm), 16K tokens per GPU, 128 experts, H = I = 2048, top-2, CF = 1, TF32, uniform routing
built directly (T x k / E = 256 tokens per (source GPU, expert)): 196,608 tile tasks in all
(8,192 GEMM0 + 8,192 GEMM1 + 8,192 combine per GPU).

(a) time and events of the DES at task granularity (every task an event); the 1.5 s goal
    (issue 17) is judged on the process's CPU time, which is its wall time on an idle core (the
    simulation is single-threaded) and, unlike the wall clock here, not inflated by other work
    on this shared machine; the wall time prints beside it. As a busy machine slows the CPU
    time too, the CPU time also prints as a ratio to a reference measured in the same run, the
    CPU time of 200,000 bare SimPy timeouts (``bench_engine.reference_cpu_s``), with the goal
    that ratio has where the reference takes its quiet-machine time. Events per tile task (SimPy
    events: calls that ``CountingEnvironment.defer`` runs in place are not events) have the
    goal 1.5;
(b) the same with ``task_batch`` = 8, and its wall time as a ratio of (a)'s.

Each figure prints with its goal and PASS/MISS (or INFO where there is no goal); the script exits 0
either way. The modelled latencies are printed for reference (INFO), not checked.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from bench_engine import reference_cpu_s

from gpusim.engine.sim import Simulation
from gpusim.hardware.node import Node
from gpusim.native import engine_build
from gpusim.result import Outcome
from gpusim.spec.loading import load_profile, load_topology
from gpusim.spec.moe import FlashMoEStrategy, MoELayerWorkload
from gpusim.workloads.moe import flashmoe
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch

ROOT = Path(__file__).resolve().parents[1]
TOKENS, EXPERTS, HIDDEN, INTERMEDIATE, TOP_K = 16_384, 128, 2048, 2048, 2
GOAL_FINE_S = 1.5
QUIET_REFERENCE_S = 0.13
"""``reference_cpu_s()`` on a quiet machine (the one where the 1.5 s goal applies)."""
GOAL_RATIO = GOAL_FINE_S / QUIET_REFERENCE_S
GOAL_EVENTS_PER_TASK = 1.5
BATCH = 8


def report(label: str, value: float, unit: str, goal: str, ok: bool | None) -> None:
    verdict = "INFO" if ok is None else ("PASS" if ok else "MISS")
    print(f"  {label:<46} {value:>14,.3f} {unit:<9} goal {goal:<14} {verdict}")


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    """Process CPU time: the wall time on an idle core (the simulation is single-threaded), so
    the goal is judged on it; wall time on this shared machine also counts other processes."""
    events: int
    outcome: Outcome


def simulate_forward(task_batch: int) -> Run:
    """One FlashMoE forward on the 8-GPU HGX node; wall time of the DES alone."""
    topology = load_topology(ROOT / "topologies" / "hgx_h100_8gpu.json")
    profile = load_profile(ROOT / "topologies" / "profiles" / "h100_sxm.json")
    gpus = [g.id for g in topology.gpus()]
    strategy = FlashMoEStrategy(task_batch=task_batch)
    wl = MoELayerWorkload(
        tokens_per_gpu=TOKENS,
        hidden=HIDDEN,
        intermediate=INTERMEDIATE,
        experts=EXPERTS,
        top_k=TOP_K,
        capacity_factor=1.0,
        strategy=strategy,
    )
    geometry = LayerGeometry.of(wl, gpus, strategy.dtype)
    counts = np.full((len(gpus), EXPERTS), TOKENS * TOP_K // EXPERTS)
    batch = RoutedBatch(counts=counts, dropped=0, maxvio_batch=0.0)
    sim = Simulation()
    node = Node(topology, profile, sim)
    t0, c0 = time.perf_counter(), time.process_time()
    outcome = flashmoe.des(node, wl, geometry, batch)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return Run(wall, cpu, sim.events_scheduled(), outcome)


def main() -> int:
    print(
        f"FlashMoE forward, 8 x H100 SXM, {TOKENS:,} tokens/GPU, E = {EXPERTS}, "
        f"H = I = {HIDDEN}, k = {TOP_K}, uniform routing"
    )
    print(f"engine: {engine_build()}")
    ref = reference_cpu_s()
    fine = simulate_forward(1)
    tasks = fine.outcome.metrics["tasks"]
    print(f"(a) task granularity: {tasks:,.0f} tasks")
    report(
        "CPU time (wall on an idle core)",
        fine.cpu_s,
        "s",
        f"<= {GOAL_FINE_S} s",
        fine.cpu_s <= GOAL_FINE_S,
    )
    report("reference: 200,000 bare SimPy timeouts (CPU)", ref, "s", "-", None)
    ratio = fine.cpu_s / ref
    report("CPU time / reference", ratio, "x", f"<= {GOAL_RATIO:.1f} x", ratio <= GOAL_RATIO)
    report("wall time (shared machine)", fine.wall_s, "s", "-", None)
    report("events", fine.events, "events", "-", None)
    per_task = fine.events / tasks
    report(
        "events per tile task",
        per_task,
        "events",
        f"<= {GOAL_EVENTS_PER_TASK}",
        per_task <= GOAL_EVENTS_PER_TASK,
    )
    report("events per wall second", fine.events / fine.wall_s, "events/s", "-", None)
    report("tasks per wall second", tasks / fine.wall_s, "tasks/s", "-", None)
    report(
        "transfers through the fluid network",
        100 * fine.outcome.metrics["fluid_transfer_fraction"],
        "%",
        "-",
        None,
    )
    report("modelled forward latency", fine.outcome.makespan_s * 1e3, "ms", "-", None)

    coarse = simulate_forward(BATCH)
    batches = sum(v["task_batches"] for v in coarse.outcome.per_gpu.values())
    print(f"(b) task_batch = {BATCH}: {batches:,.0f} task events for {tasks:,.0f} tasks")
    report("CPU time", coarse.cpu_s, "s", "-", None)
    report("events per wall second", coarse.events / coarse.wall_s, "events/s", "-", None)
    report("CPU time / task granularity's", coarse.cpu_s / fine.cpu_s, "x", "-", None)
    report("modelled forward latency", coarse.outcome.makespan_s * 1e3, "ms", "-", None)
    diff = coarse.outcome.makespan_s / fine.outcome.makespan_s - 1
    report("latency vs task granularity", 100 * diff, "%", "-", None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
