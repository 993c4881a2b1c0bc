"""Tokens/s against memory budget and draft correctness, one heatmap per strategy (issue #15's
report figure), from the shipped specdec_memory_budget sweep's points in closed form. Writes a
PNG and prints the table.

    python benchmarks/specdec_heatmap.py [--out results/specdec_heatmap.png]

Nothing here is fitted: the figure shows model predictions (docs/speculative_decoding.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from gpusim import simulate
from gpusim.report.heatmaps import heatmap_panels
from gpusim.spec.loading import load_scenario
from gpusim.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "workloads" / "specdec_memory_budget_sweep.json"
BUDGET, CORRECTNESS = "workload.memory_budget_GB", "workload.behaviour.correctness"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "specdec_heatmap.png")
    args = ap.parse_args()
    sweep = load_sweep(SWEEP)
    base = SWEEP.parent / str(sweep.base)
    budgets, rates = sweep.axes[BUDGET], sweep.axes[CORRECTNESS]
    panels: dict[str, dict[tuple[float, float], float]] = {}
    for system, overrides in sweep.systems.items():
        grid = panels.setdefault(system, {})
        for budget in budgets:
            for rate in rates:
                point = {**overrides, BUDGET: budget, CORRECTNESS: rate, "options.trace": False}
                grid[(budget, rate)] = simulate(load_scenario(base, point)).metrics["tokens_per_s"]
        print(f"{system}: " + ", ".join(f"{k}: {v:.1f}" for k, v in grid.items()))
    fig = heatmap_panels(
        panels,
        budgets,
        rates,
        xlabel="memory budget (GB)",
        ylabel="draft correctness",
        metric="tokens/s",
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
