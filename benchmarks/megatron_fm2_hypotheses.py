"""FM-2 (Megatron-LM on 2 H100 SXM, 8K tokens per GPU, E = 32, top-2, H = I = 2048) predicted
under every harness hypothesis: token dispatcher x NCCL transport x training/inference forward x
expert back end. Prints the markdown table docs/moe.md carries.

    python benchmarks/megatron_fm2_hypotheses.py [--fidelity analytic|des]

Analytic fidelity by default: it equals the DES on this balanced 2-GPU layer where nothing
contends (tests/test_megatron.py::test_analytic_equals_des_when_balanced); ``--fidelity des``
reruns it with the discrete-event engine. The breakdown is GPU 0's: host = host time issuing
ops and calls (framework dispatch, autograd, runtime calls, Python steps); sync waits = host
time blocked in synchronisations; GEMM = the expert phase on the GPU (GEMMs and the
activation); collectives = time in NCCL calls (entry to end, waits for the peer included);
memory-bound = every other kernel and copy (router, masks, sorts, gathers, scatters, fills).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from gpusim import simulate
from gpusim.spec.loading import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "workloads" / "moe_fm2_megatron_2xh100.json"
PUBLISHED_MS = 4.2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fidelity", default="analytic", choices=["analytic", "des"])
    args = ap.parse_args()
    base = load_scenario(SCENARIO)
    print(
        "| dispatcher | transport | forward | back end | latency (ms) | vs 4.2 ms | host (ms) "
        "| sync waits (ms) | GEMM (ms) | collectives (ms) | memory-bound (ms) | launches |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    axes = itertools.product(
        ["allgather", "alltoall"],
        ["p2p", "shm"],
        ["training", "inference"],
        ["grouped_gemm", "te", "sequential"],
    )
    for dispatcher, transport, forward, backend in axes:
        doc = base.model_dump(mode="json")
        doc["workload"]["strategy"] |= {
            "dispatcher": dispatcher,
            "forward": forward,
            "backend": backend,
            "variant": "te" if backend == "te" else "cutlass",
        }
        if backend == "sequential":  # no variant names it (the spec rejects a contradiction)
            del doc["workload"]["strategy"]["variant"]
        doc["options"] |= {"fidelity": args.fidelity, "trace": False, "nccl_transport": transport}
        out = simulate(type(base).model_validate(doc))
        row = out.per_gpu["gpu0"]
        ms = out.makespan_s * 1e3
        coll = row["collective_s"]
        memory = row["gate_s"] + row["dispatch_s"] + row["combine_s"] - coll
        cells = [row["host_s"], row["sync_wait_s"], row["gemm_s"], coll, memory]
        print(
            f"| {dispatcher} | {transport} | {forward} | {backend} | {ms:.3f} | "
            f"{(ms / PUBLISHED_MS - 1) * 100:+.0f} % | "
            + " | ".join(f"{c * 1e3:.3f}" for c in cells)
            + f" | {out.metrics['kernel_launches']:.0f} |"
        )


if __name__ == "__main__":
    main()
