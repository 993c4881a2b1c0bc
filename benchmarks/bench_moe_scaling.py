"""How the FlashMoE DES's cost grows with GPUs (issue 17's goal: at most GPUs^1.2 from 2 to 16).

    python benchmarks/bench_moe_scaling.py [--tokens N]

Weak scaling on two HGX H100 nodes over InfiniBand (topologies/h100_2node_ib.json, profile
h100_sxm): FM-1's layer (32 experts, top-2, H = I = 2048, TF32), ``--tokens`` tokens per GPU
(default 2,048, so 16 GPUs stay quick), on 2, 4, 8 and 16 GPUs (the first node's GPUs, then
both nodes'). After one warm-up run, the sizes run in ``--rounds`` interleaved rounds (each
round runs every size once), and each size keeps its best CPU time (time.process_time; the
simulation is single-threaded): a machine whose speed drifts (a busy neighbour, a clock that
steps) then slows every size alike rather than the ones measured during the slow spell, which
would tilt the slope. The growth exponent is the least-squares slope of log CPU time against
log GPUs. The work itself grows as GPUs (weak scaling), so an exponent of
1 means a constant cost per GPU; what is above 1 is contention and bookkeeping growing with the
system: mostly the fluid network's max-min solves, over connected components that grow with
the GPUs (GEMM1 result writes oversubscribe NVLink ports, and with them the HBM loads they take
over the HBM's capacity need the fluid network). The fraction of transfers that needed it (not
timed in closed form by FlowGate) is printed beside each size. Printed with its goal and
PASS/MISS; the script exits 0 either way. ``benchmarks/moe_scaling_work.py`` counts, on the same
runs, the least settle work the exact model needs, and how that grows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from gpusim import simulate
from gpusim.native import engine_build
from gpusim.spec.loading import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "workloads" / "moe_fm1_flashmoe_2xh100.json"
SIZES = (2, 4, 8, 16)
GOAL_EXPONENT = 1.2
ROUNDS = 8


def gpus(n: int) -> list[str]:
    """The first ``n`` GPUs of the two nodes, node 0 first."""
    return [f"n{i // 8}.gpu{i % 8}" for i in range(n)]


def run(n: int, tokens: int) -> tuple[float, int, float]:
    """CPU seconds, events and the fraction of transfers that went through the fluid network
    (the rest were timed in closed form by the persistent kernels' FlowGate) of one DES forward
    on ``n`` GPUs."""
    scenario = load_scenario(
        SCENARIO,
        {
            "topology": "h100_2node_ib",
            "profile": "h100_sxm",
            "workload.gpus": gpus(n),
            "workload.tokens_per_gpu": tokens,
            "options.fidelity": "des",
        },
    )
    t0 = time.process_time()
    result = simulate(scenario)
    return time.process_time() - t0, result.events, result.metrics["fluid_transfer_fraction"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per GPU")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="runs of each size")
    args = parser.parse_args()
    print(
        f"FlashMoE DES cost against GPUs (issue 17), {args.tokens} tokens per GPU, "
        f"best of {args.rounds} interleaved rounds"
    )
    print(f"engine: {engine_build()}")
    run(SIZES[0], args.tokens)  # warm-up: imports and caches the first run would pay
    runs: dict[int, list[tuple[float, int, float]]] = {n: [] for n in SIZES}
    for _ in range(args.rounds):
        for n in SIZES:
            runs[n].append(run(n, args.tokens))
    cpu: list[float] = []
    for n in SIZES:
        s, events, fluid = min(runs[n])
        cpu.append(s)
        print(
            f"  {n:>2} GPUs: {s:8.3f} s CPU {events:>10,} events  {s / n * 1e3:8.1f} ms per GPU"
            f"  {fluid:6.1%} of transfers in the fluid network"
        )
    exponent = float(np.polyfit(np.log(SIZES), np.log(cpu), 1)[0])  # least-squares slope
    verdict = "PASS" if exponent <= GOAL_EXPONENT else "MISS"
    print(
        f"  growth exponent (CPU ~ GPUs^x)  {exponent:6.2f}   goal <= {GOAL_EXPONENT}   {verdict}"
    )


if __name__ == "__main__":
    main()
