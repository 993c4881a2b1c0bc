"""Speculative decoding speed figures (issue #15's goals), measured in one run on this machine.

    python benchmarks/bench_speculative.py

512 generated tokens per strategy (std, std_pl, sp, specinfer, llmcad) in the DES: CPU time
(time.process_time) of each run, goal under 2 s, for Llama-3.1-8B drafting for Llama-3.1-70B
(its weights streamed per target pass) on GH200 and, beside it, on H100 PCIe, and for
mT5-small drafting for mT5-Large on a Jetson TX2 (the target swapped in from the eMMC, PyTorch
eager: every pass a host-driven program).
The closed form's time is printed for reference. Each figure prints with its goal and PASS/MISS
(INFO without a goal); the script exits 0 either way. Loading the scenario is not timed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from gpusim import simulate
from gpusim.spec.loading import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS: dict[str, tuple[Path, dict[str, object]]] = {
    "GH200": (ROOT / "workloads" / "specdec_llama31_70b_gh200.json", {}),
    "H100 PCIe": (ROOT / "workloads" / "specdec_llama31_70b_h100_pcie.json", {}),
    # 512 tokens' KV caches need 0.8 GB to keep the target swapped in whole
    "TX2": (ROOT / "workloads" / "specdec_mt5_tx2.json", {"workload.memory_budget_GB": 0.8}),
}
STRATEGIES = ("std", "std_pl", "sp", "specinfer", "llmcad")
TOKENS = 512


def report(label: str, value: float, unit: str, goal: str, ok: bool | None) -> None:
    verdict = "INFO" if ok is None else ("PASS" if ok else "MISS")
    print(f"  {label:<52} {value:>10,.2f} {unit:<4} goal {goal:<8} {verdict}")


def cpu_s(
    path: Path, strategy: str, fidelity: str, extra: dict[str, object]
) -> tuple[float, float]:
    """CPU seconds of one run and its predicted tokens/s."""
    overrides: dict[str, object] = extra | {
        "options.trace": False,
        "options.fidelity": fidelity,
        "workload.strategy": strategy,
        "workload.generated_tokens": TOKENS,
    }
    scenario = load_scenario(path, overrides)
    t0 = time.process_time()
    result = simulate(scenario)
    return time.process_time() - t0, result.metrics["tokens_per_s"]


def main() -> None:
    print(f"speculative_decoding speed (issue #15): {TOKENS} tokens per run")
    for system, (path, extra) in SYSTEMS.items():
        for strategy in STRATEGIES:
            des, rate = cpu_s(path, strategy, "des", extra)
            report(f"{system} {strategy} DES (CPU)", des, "s", "< 2 s", des < 2.0)
            closed, _ = cpu_s(path, strategy, "analytic", extra)
            report(f"{system} {strategy} closed form (CPU)", closed, "s", "-", None)
            report(f"{system} {strategy} predicted rate", rate, "tok/s", "-", None)


if __name__ == "__main__":
    main()
