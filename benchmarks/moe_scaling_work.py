"""The least work the exact fluid network must do in bench_moe_scaling.py's runs, and how it grows
with GPUs: what bounds how fast the DES's cost can grow on that benchmark.

    python benchmarks/moe_scaling_work.py [--tokens N]

The fluid network keeps one virtual clock per flow class (same route, same cap) and shares
bandwidth by max-min fairness, which it re-solves whenever a class gains or loses a flow. After
each settle, every class whose rate changed, or whose flows did, must get a new clock rate and a
new completion time: that count (class re-times) is a lower bound on the settle work of any
engine that keeps per-class clocks and computes exact max-min rates, however clever its solver.
The distinct new rates among them (rate levels) bound an engine that shared one clock among the
classes at one level. The classes this engine solves (solved classes: every class of each
settle's component, whose walk and max-min solve touch each of them, changed or not) are what
its own settles cost per class, beside those bounds: an engine that shared clocks would still
walk and solve them unless it also solved incrementally. Each is counted on the same runs as
bench_moe_scaling.py (its scenario, topology and sizes), with its least-squares growth exponent
against GPUs beside the events'.

Counted from the source (``GPUSIM_PURE_PYTHON=1``, set here before gpusim is imported), by
wrapping the network's settle steps: the compiled engine computes the same floats, so the same
counts. A few seconds; a diagnostic, not a timed benchmark.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["GPUSIM_PURE_PYTHON"] = "1"  # before gpusim is imported: the source, to wrap
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np

from gpusim.engine import fluid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_moe_scaling import SIZES, run

COUNTS = {"re-times": 0, "levels": 0, "solved": 0}


def _counting_retime(original: Callable[..., bool]) -> Callable[..., bool]:
    def retime(
        self: fluid.FluidNetwork,
        classes: list[Any],
        rates: list[float],
        resources: set[int],
        touched: list[Any],
    ) -> bool:
        pairs = zip(classes, rates, strict=True)
        changed = [r for c, r in pairs if r != c.rate_Bps or c in touched]
        COUNTS["re-times"] += len(changed)
        COUNTS["levels"] += len(set(changed))
        COUNTS["solved"] += len(classes)
        return original(self, classes, rates, resources, touched)

    return retime


def _counting_alone(original: Callable[..., bool]) -> Callable[..., bool]:
    def settle_alone(self: fluid.FluidNetwork) -> bool:
        done = original(self)
        if done:  # one class, one new rate
            COUNTS["re-times"] += 1
            COUNTS["levels"] += 1
            COUNTS["solved"] += 1
        return done

    return settle_alone


def _counting_lone(original: Callable[..., None]) -> Callable[..., None]:
    def settle_lone(self: fluid.FluidNetwork) -> None:
        if self._lone is not None:  # a flow alone in the network gets its rate
            COUNTS["re-times"] += 1
            COUNTS["levels"] += 1
            COUNTS["solved"] += 1
        original(self)

    return settle_lone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per GPU")
    args = parser.parse_args()
    network = fluid.FluidNetwork
    network._retime = _counting_retime(network._retime)  # type: ignore[method-assign]
    network._settle_alone = _counting_alone(network._settle_alone)  # type: ignore[method-assign]
    network._settle_lone = _counting_lone(network._settle_lone)  # type: ignore[method-assign]
    print(f"The exact fluid network's least work (bench_moe_scaling.py), {args.tokens} tokens/GPU")
    rows: list[tuple[int, int, int, int]] = []
    for n in SIZES:
        COUNTS.update({"re-times": 0, "levels": 0, "solved": 0})
        _, events, _ = run(n, args.tokens)
        rows.append((events, COUNTS["re-times"], COUNTS["levels"], COUNTS["solved"]))
        print(
            f"  {n:>2} GPUs: {events:>8,} events {COUNTS['re-times']:>8,} class re-times"
            f" {COUNTS['levels']:>8,} rate levels {COUNTS['solved']:>8,} solved classes"
        )
    log_gpus = np.log(SIZES)
    for i, name in enumerate(("events", "class re-times", "rate levels", "solved classes")):
        exponent = float(np.polyfit(log_gpus, np.log([row[i] for row in rows]), 1)[0])
        print(f"  growth exponent of {name:<15} (~ GPUs^x)  {exponent:5.2f}")


if __name__ == "__main__":
    main()
