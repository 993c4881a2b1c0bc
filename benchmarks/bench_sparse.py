"""Sparse GEMM speed figures (issue #14's goals), measured in one run on this machine.

    python benchmarks/bench_sparse.py

(a) a 300-point analytic SpMM kernel sweep (the OPT-66B MLP1 shape, every impl, N = 8..64, 15
    sparsities; A100) on 2 worker processes: wall time, goal under 20 s;
(b) one decode step of OPT-66B with 80 % sparse Tiled-CSL weights, tensor parallelism 4, on
    A100 SXM4, in the DES: CPU time (time.process_time), goal under 2 s (the prefill before it,
    which a decode step needs for its cache, is timed separately and subtracted);
(c) for reference: one Flash-LLM kernel cost, first call (encoding drawn) and cached.

Each figure prints with its goal and PASS/MISS (INFO without a goal); the script exits 0 either
way.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from common import ROOT, report, timed_sweep_s

from gpusim import simulate
from gpusim.hardware.platform import Platform
from gpusim.kernels import kernel_costs
from gpusim.spec.loading import load_scenario
from gpusim.spec.workload import SpmmOp

KERNEL = ROOT / "workloads" / "spmm_opt66b_mlp1_a100.json"
DECODE = ROOT / "workloads" / "llm_opt66b_flash_llm_tp2_a100.json"
SPARSITIES = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.97, 0.98, 0.99]
IMPLS = ["flash_llm", "cublas", "sputnik", "cusparse", "sparta"]


def sweep_wall_s(folder: Path, workers: int) -> tuple[float, int]:
    doc = {
        "name": "bench_sparse",
        "base": str(KERNEL),
        "axes": {
            "workload.kernel.impl": IMPLS,
            "workload.kernel.n": [8, 16, 32, 64],
            "workload.kernel.sparsity": SPARSITIES,
        },
    }
    path = folder / "sweep.json"
    path.write_text(json.dumps(doc))
    return timed_sweep_s(path, folder / "out", workers)


def decode_cpu_s(steps: int) -> float:
    overrides = {
        "workload.tensor_parallel": 4,
        "workload.generated_tokens": steps,
        "options.fidelity": "des",
        "options.trace": False,
    }
    scenario = load_scenario(DECODE, overrides)
    t0 = time.process_time()
    simulate(scenario)
    return time.process_time() - t0


def main() -> None:
    print("sparse GEMM speed (issue #14)")
    with tempfile.TemporaryDirectory() as tmp:
        a, points = sweep_wall_s(Path(tmp), 2)
    report(
        f"(a) {points}-point analytic SpMM kernel sweep, 2 workers (wall)", a, "s", "< 20 s", a < 20
    )
    one, three = decode_cpu_s(1), decode_cpu_s(3)
    b = (three - one) / 2
    report("(b) OPT-66B TP4 sparse decode step, DES (CPU)", b, "s", "< 2 s", b < 2.0)
    report("    prefill + first step, DES (CPU)", one, "s", "-", None)
    scenario = load_scenario(KERNEL)
    rates = Platform.of(scenario.topology, scenario.profile).gpu_rates("gpu0")
    op = SpmmOp(m=36864, k=9216, n=8, sparsity=0.8, seed=12345)  # a seed nothing drew yet
    t0 = time.process_time()
    kernel_costs(op, rates)
    first = time.process_time() - t0
    t0 = time.process_time()
    kernel_costs(op, rates)
    again = time.process_time() - t0
    report("(c) one Flash-LLM kernel cost, first call (CPU)", first * 1e3, "ms", "-", None)
    report("    the same op again, encoding cached (CPU)", again * 1e3, "ms", "-", None)


if __name__ == "__main__":
    main()
