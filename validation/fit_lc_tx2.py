"""One-off fit of the Jetson TX2 profile's device-level parameters to LC-1..3 (EdgeLLM Fig. 20:
mT5-small drafting for mT5-Large on a TX2, PyTorch), recorded as an assumptions document.

Three published per-phase latencies, three parameters, each a property of the device and its
software rather than of a strategy:

- LC-1, draft generation 0.33 s per token -> ``host_scale``: every host-thread cost of the x86
  ``h100_pcie`` profile (framework dispatch, runtime calls, Python steps) times one factor, the
  TX2's Cortex-A57 cores running PyTorch 1.10 and Hugging Face's generate loop. mT5-small's
  decoder step is host-bound on the TX2 (its kernels read about 0.3 GB: under 10 ms), so the
  draft pass time sets the factor alone.
- LC-2, target verification 7.2 s -> ``memory_efficiency.storage``: the eMMC's achievable
  fraction of its 400 MB/s bus. The target is swapped in from storage for every verification
  (llmcad.md section 1: no layer resident), so the pass is bound by reading its decoder-pass
  weights.
- LC-3, provisional generation 0.48 s per token -> ``storage_io.host_cpu_us_per_MB``: the host
  CPU a storage read takes from the thread driving the GPU (a PyTorch process: one interpreter
  lock), which slows a draft step running beside the load.

LC-2 and LC-3 interact (the loader's CPU also slows a pipelined verification's compute), so
the two are solved in turn until neither moves. The scenario is
``validation/scenarios/lc_tx2_mt5_llmcad.json`` (LC-4's 81.6 % correctness as the draft's input);
the metrics are its ``draft_step_s``, ``verification_s`` and ``provisional_step_s`` in the closed
form (the discrete-event model reads a longer verification at the same parameters: there a
provisional step holding the GPU delays the target's next layer; docs/speculative_decoding.md).
Run from a checkout::

    python validation/fit_lc_tx2.py            # prints the fit, writes lc_fit.json
    gpusim calibrate fit results/calibration/published/jetson_tx2 --topology jetson_tx2 \\
        -o topologies/profiles/jetson_tx2.json

The document it writes (``results/calibration/published/jetson_tx2/lc_fit.json``) is an
assumptions document: ``gpusim calibrate fit`` reads its values as given, so the folder stays
fittable without this script.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scipy.optimize import brentq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from gpusim.calibrate.fit import fit_folder
from gpusim.calibrate.nameplates import Nameplates
from gpusim.calibrate.params import build_profile, flatten
from gpusim.execution.host_costs import HOST_THREAD_COST_PATHS
from gpusim.spec.loading import load_profile, load_scenario
from gpusim.spec.profile import CalibrationProfile, Measured
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.workloads import speculative

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "validation" / "scenarios" / "lc_tx2_mt5_llmcad.json"
PUBLISHED = ROOT / "results" / "calibration" / "published" / "jetson_tx2"
OUTPUT = PUBLISHED / "lc_fit.json"
ASSUMPTIONS = PUBLISHED / "assumptions.json"
X86_PROFILE = ROOT / "topologies" / "profiles" / "h100_pcie.json"
SOURCE = "EdgeLLM, IEEE TMC 2024 (doi 10.1109/TMC.2024.3513457), Fig. 20, values in the text"
LC1_DRAFT_S, LC2_VERIFY_S, LC3_PROVISIONAL_S = 0.33, 7.2, 0.48

STORAGE = "memory_efficiency.storage"
LOADER = "storage_io.host_cpu_us_per_MB"
SEED = 0


class Fit:
    """The profile as a function of the three parameters, and the scenario's phase times."""

    def __init__(self) -> None:
        resolved = load_scenario(SCENARIO)
        workload = resolved.workload
        if not isinstance(workload, SpeculativeDecodingWorkload):
            raise SystemExit(f"{SCENARIO}: not a speculative_decoding scenario")
        self.workload = workload
        self.topology = resolved.topology
        base = fit_folder(PUBLISHED, Nameplates.from_topology(self.topology)).profile
        self.values = flatten(base)
        self.profile_id, self.description = base.id, base.description
        x86 = flatten(load_profile(X86_PROFILE))
        self.x86_us = {path: x86[path].value for path in HOST_THREAD_COST_PATHS}

    def profile(
        self, host_scale: float, storage: float, loader_us_per_MB: float
    ) -> CalibrationProfile:
        """The TX2 profile at these parameter values."""
        values = dict(self.values)
        for path, us in self.x86_us.items():
            values[path] = Measured(value=us * host_scale, source="fit")
        values[STORAGE] = Measured(value=storage, source="fit")
        values[LOADER] = Measured(value=loader_us_per_MB, source="fit")
        return build_profile(self.profile_id, self.description, values)

    def phases(self, host_scale: float, storage: float, loader: float) -> dict[str, float]:
        """The scenario's per-phase latencies in the closed form."""
        profile = self.profile(host_scale, storage, loader)
        out = speculative.analytic(self.topology, profile, self.workload, seed=SEED)
        return {k: out.metrics[k] for k in ("draft_step_s", "verification_s", "provisional_step_s")}


def solve(f: Callable[[float], float], target: float, low: float, high: float) -> float:
    """The root of ``f(x) = target`` in [low, high] (f monotone there)."""
    return float(brentq(lambda x: f(x) - target, low, high, xtol=1e-12, rtol=1e-10))


def bracket_up(f: Callable[[float], float], target: float, step: float) -> tuple[float, float]:
    """``[low, high]`` with ``f(low) < target <= f(high)``, ``high`` doubling from ``step``
    (``f`` increasing where it is positive)."""
    low, high = 0.0, step
    while not f(high) >= target:
        low, high = high, 2 * high
        if high > 1e9:
            raise SystemExit(f"no value reaches {target}")
    return low, high


def main() -> None:
    fit = Fit()

    def draft_s(scale: float) -> float:
        return fit.phases(scale, 0.9, 0.0)["draft_step_s"]

    host_scale = solve(draft_s, LC1_DRAFT_S, 0.1, 1000.0)
    storage, loader = 0.9, 0.0
    for _ in range(20):
        before = (storage, loader)

        def verify_s(e: float, c: float = loader) -> float:
            return -fit.phases(host_scale, e, c)["verification_s"]

        storage = solve(verify_s, -LC2_VERIFY_S, 1e-3, 1.0)

        def provisional_s(c: float, e: float = storage) -> float:
            # 0 once the pass turns compute-bound and no provisional step fits: the bracket
            # stops at the first value that reaches the target
            return fit.phases(host_scale, e, c)["provisional_step_s"]

        low, high = bracket_up(provisional_s, LC3_PROVISIONAL_S, 10.0)
        loader = solve(provisional_s, LC3_PROVISIONAL_S, low, high)
        if abs(storage - before[0]) <= 1e-9 * storage and abs(loader - before[1]) <= 1e-9 * max(
            loader, 1.0
        ):
            break
    got = fit.phases(host_scale, storage, loader)
    print(f"host_scale = {host_scale:.6g} (x86 h100_pcie host costs x this)")
    print(f"{STORAGE} = {storage:.6g}")
    print(f"{LOADER} = {loader:.6g} us/MB")
    print(f"phases: {got}")
    write(fit, host_scale, storage, loader)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


def entry(
    name: str, unit: str, value: float, source: str, low_high: tuple[float, float] | None = None
) -> dict[str, Any]:
    """One assumption in the measurement-document format (``low_high``: its range)."""
    stats = dict.fromkeys(("median", "mean", "min", "max", "p10", "p90"), value)
    out: dict[str, Any] = {
        "name": name,
        "unit": unit,
        "stats": stats | {"stdev": 0.0, "n": 1},
        "source": source,
    }
    if low_high is not None:
        out["low"], out["high"] = low_high
    return out


A57_SLOWDOWN = 5.0
"""A Cortex-A57 core's per-op slowdown against the x86 host, at its low end (about 5-8x): the
low end of the fitted host costs' range, were all of the fitted factor's excess unmodelled work."""


def write(fit: Fit, host_scale: float, storage: float, loader: float) -> None:
    """The assumptions document of the fitted values."""
    script = "validation/fit_lc_tx2.py"
    scenario = "validation/scenarios/lc_tx2_mt5_llmcad.json"
    measurements = [
        entry(
            path,
            "us",
            round(us * host_scale, 6),
            f"FITTED to LC-1 (draft generation {LC1_DRAFT_S} s per token, mT5-small on a TX2; "
            f"{SOURCE}) by {script} on {scenario}: the h100_pcie profile's x86 value "
            f"{us:g} us x {host_scale:.6g}, one factor for every host-thread cost (the TX2's "
            "Cortex-A57 running PyTorch 1.10 and Hugging Face generate; the factor also absorbs "
            "any per-token Python work of LLMCad's tree that gpusim does not model); range: "
            f"from {A57_SLOWDOWN:g} x the x86 value (an A57's per-op slowdown alone) to the "
            "fitted value",
            (round(us * A57_SLOWDOWN, 6), round(us * host_scale, 6)),
        )
        for path, us in fit.x86_us.items()
    ]
    measurements.append(
        entry(
            STORAGE,
            "fraction",
            round(storage, 6),
            f"FITTED to LC-2 (target verification {LC2_VERIFY_S} s, mT5-Large swapped in from the "
            f"TX2's eMMC for every verification; {SOURCE}) by {script} on {scenario}: the "
            "achievable fraction of the eMMC 5.1 HS400 bus rate",
        )
    )
    measurements.append(
        entry(
            LOADER,
            "us/MB",
            round(loader, 6),
            f"FITTED to LC-3 (provisional generation {LC3_PROVISIONAL_S} s per token, the draft "
            f"running while the target's weights load; {SOURCE}) by {script} on {scenario}: "
            "host CPU per MB read from the eMMC, taken from the PyTorch process's driving "
            "thread (file system, page-cache copy into the tensor)",
        )
    )
    doc = {
        "schema": "gpusim.kernels_ref.v1",
        "program": "assumptions",
        "status": "ok",
        "measurements": measurements,
    }
    OUTPUT.write_text(json.dumps(doc, indent=2) + "\n")
    # the priors of these paths leave assumptions.json: a path is given once in a folder
    fitted = {m["name"] for m in measurements}
    priors = json.loads(ASSUMPTIONS.read_text())
    kept = [m for m in priors["measurements"] if m["name"] not in fitted]
    if len(kept) < len(priors["measurements"]):
        priors["measurements"] = kept
        ASSUMPTIONS.write_text(json.dumps(priors, indent=2) + "\n")


if __name__ == "__main__":
    main()
