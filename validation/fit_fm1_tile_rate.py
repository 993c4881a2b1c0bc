"""One-parameter calibration of the hardware-level mma.sync TF32 tile rate from FM-1.

FM-1 (calibration_points.md) is FlashMoE's forward latency on 2 x H100 SXM, 8K tokens per GPU,
E = 32, top-2, H = I = 2048, TF32. The issue that introduced the MoE models allows exactly one
kind of parameter to be set from it: the achievable rate of the tile GEMM on the mma.sync path
(profile key tensor_efficiency.mma_sync.tf32.large). This script solves
latency(efficiency) = 3.3 ms for that one value with every other parameter fixed, and prints it
with the provenance string written into topologies/profiles/h100_sxm.json. Run it again after
any change to the FlashMoE model; FM-1 is then a calibration case, not a prediction, in
validation/calibration_points.json.
"""

from __future__ import annotations

from pathlib import Path

from scipy.optimize import brentq

from gpusim import simulate
from gpusim.spec.loading import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "workloads" / "moe_fm1_flashmoe_2xh100.json"
TARGET_S = 3.3e-3
KEY = "profile.tensor_efficiency.mma_sync.tf32.large.value"


def latency_s(efficiency: float) -> float:
    """FM-1's modelled forward latency with the mma.sync TF32 tile efficiency set."""
    scenario = load_scenario(SCENARIO, {"profile": "h100_sxm", KEY: efficiency})
    return simulate(scenario).metrics["forward_latency_s"]


def main() -> None:
    eff = brentq(lambda e: latency_s(e) - TARGET_S, 0.05, 0.629, xtol=1e-4)
    print(f"mma_sync tf32 large efficiency: {eff:.4f} (latency {latency_s(eff) * 1e3:.4f} ms)")


if __name__ == "__main__":
    main()
