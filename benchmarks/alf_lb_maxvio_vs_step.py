"""MaxVio_batch against training step for no balancing, the aux-loss dynamic and ALF-LB's three
update rules (ALF Fig. 3's view; issue 16), from the shipped router_alf_lb scenario with only the
balancing changed, every method at the paper's inputs (u = 1e-3, alpha = 1e-3). Writes a PNG and
prints each method's MaxVio_batch and MaxVio_global.

    python benchmarks/alf_lb_maxvio_vs_step.py [--out results/alf_lb_maxvio_vs_step.png]
        [--drift 0.0] [--steps 600]

Nothing here is fitted: the paper's values are not targets (docs/alf_lb.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from gpusim import simulate
from gpusim.report.step_figures import series_vs_step
from gpusim.spec.loading import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "workloads" / "router_alf_lb.json"

METHODS: dict[str, dict[str, Any]] = {
    "none": {"balancing": "none"},
    "aux loss (alpha 1e-3)": {"balancing": "aux_loss", "aux_loss_alpha": 1e-3},
    "ALF-LB sign": {"balancing": "alf_lb", "alf_update": "sign"},
    "ALF-LB proportional": {"balancing": "alf_lb", "alf_update": "proportional"},
    "ALF-LB multiplicative": {"balancing": "alf_lb", "alf_update": "multiplicative"},
}
"""Each method's routing fields over the scenario's (u = 1e-3 from the scenario)."""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "alf_lb_maxvio_vs_step.png")
    ap.add_argument("--drift", type=float, default=0.0, help="drift_per_step (an assumption)")
    ap.add_argument("--steps", type=int, default=600)
    args = ap.parse_args()
    base = load_scenario(SCENARIO)
    series: dict[str, list[float]] = {}
    print("| method | MaxVio_batch | MaxVio_global |\n|---|---|---|")
    for name, fields in METHODS.items():
        routing = base.workload.routing.model_copy(update={**fields, "drift_per_step": args.drift})
        workload = base.workload.model_copy(update={"routing": routing, "steps": args.steps})
        result = simulate(base.model_copy(update={"workload": workload}))
        series[name] = list(result.series["maxvio_batch"])
        m = result.metrics
        print(f"| {name} | {m['maxvio_batch']:.3f} | {m['maxvio_global']:.3f} |")
    window = base.workload.maxvio_batch_window_steps
    fig = series_vs_step(
        series,
        title=f"MaxVio_batch vs step ({SCENARIO.stem}, drift {args.drift}/step)",
        ylabel="MaxVio_batch",
        window_steps=window,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
