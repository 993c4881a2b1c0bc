"""LLM inference speed figures (issue #13's goals), measured in one run on this machine.

    python benchmarks/bench_llm.py

(a) one Llama-3.2-1B prefill at batch 64 (128-token prompts, H100 PCIe) in the DES: CPU time
    (time.process_time), goal under 1 s;
(b) a 10-point batch sweep of that prefill (batch 1 to 512, DES) on 2 worker processes: wall
    time, goal under 10 s;
(c) a 512-token decode of Llama-3.1-8B (batch 8, 512-token prompts in the cache, H100 PCIe) in
    the DES: CPU time, goal under 5 s; the analytic fidelity's time beside it for reference.

Each figure prints with its goal and PASS/MISS (INFO without a goal); the script exits 0 either
way. Loading the scenario is outside the timed part of (a) and (c). The CPU figures also print as
a ratio to a reference measured in the same run, the CPU time of 200,000 bare SimPy timeouts
(bench_engine's (a)), so that a busy machine does not decide the comparison of two runs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from bench_engine import reference_cpu_s
from common import ROOT, timed_sweep_s

from gpusim import simulate
from gpusim.spec.loading import load_scenario

PREFILL = ROOT / "workloads" / "llm_llama32_1b_prefill_h100_pcie.json"
DECODE = ROOT / "workloads" / "llm_llama31_8b_decode_h100_pcie.json"
BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def report(label: str, value: float, unit: str, goal: str, ok: bool | None) -> None:
    verdict = "INFO" if ok is None else ("PASS" if ok else "MISS")
    print(f"  {label:<52} {value:>10,.2f} {unit:<4} goal {goal:<8} {verdict}")


def cpu_s(path: Path, overrides: dict[str, object]) -> float:
    scenario = load_scenario(path, {"options.trace": False, **overrides})
    t0 = time.process_time()
    simulate(scenario)
    return time.process_time() - t0


def sweep_wall_s(folder: Path, workers: int) -> float:
    doc = {"name": "bench_llm", "base": str(PREFILL), "axes": {"workload.batch": BATCHES}}
    path = folder / "sweep.json"
    raw = json.loads(PREFILL.read_text())
    raw["options"] = {"fidelity": "des", "trace": False}
    base = folder / "base.json"
    base.write_text(json.dumps(raw))
    doc["base"] = str(base)
    path.write_text(json.dumps(doc))
    return timed_sweep_s(path, folder / "out", workers)[0]


def main() -> None:
    print("llm_inference speed (issue #13)")
    ref = reference_cpu_s()
    report("reference: 200,000 bare SimPy timeouts (CPU)", ref, "s", "-", None)
    a = cpu_s(PREFILL, {"workload.batch": 64})
    report("(a) Llama-3.2-1B prefill, batch 64, DES (CPU)", a, "s", "< 1 s", a < 1.0)
    report("    / reference", a / ref, "x", "-", None)
    with tempfile.TemporaryDirectory() as tmp:
        b = sweep_wall_s(Path(tmp), 2)
    report("(b) 10-point batch sweep, DES, 2 workers (wall)", b, "s", "< 10 s", b < 10.0)
    decode = {"workload.generated_tokens": 512}
    c = cpu_s(DECODE, decode)
    report("(c) Llama-3.1-8B 512-token decode, DES (CPU)", c, "s", "< 5 s", c < 5.0)
    report("    / reference", c / ref, "x", "-", None)
    c_a = cpu_s(DECODE, decode | {"options.fidelity": "analytic"})
    report("    the same, analytic (CPU)", c_a, "s", "-", None)
    report("    / reference", c_a / ref, "x", "-", None)


if __name__ == "__main__":
    main()
