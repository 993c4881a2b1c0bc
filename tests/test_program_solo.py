"""The DES's closed form for a rank alone on its GPU (program_solo) against the event-driven run of
the same programs: every launch record (timestamps, ids, op spans) and the rank's result equal to
the bit, for prefill and decode, eager, graphs and fusion, both runtimes, a launch queue that
fills; and a program that breaks the solo promise is refused."""

from __future__ import annotations

import dataclasses
from itertools import product

import pytest
from conftest import make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.errors import SimulationError
from gpusim.execution.program import KernelStep, RankResult, Step
from gpusim.execution.program_des import ProgramDES
from gpusim.hardware.node import Node
from gpusim.kernels.collectives import NcclCosts
from gpusim.kernels.cost import KernelCost
from gpusim.spec.llm import LlmInferenceWorkload
from gpusim.spec.loading import load_transformer
from gpusim.spec.profile import CalibrationProfile
from gpusim.workloads.llm.program import PHASES, Programs

TOPO = make_star_topology(2)


def _run(
    wl: LlmInferenceWorkload, profile: CalibrationProfile, solo: bool
) -> tuple[RankResult, list[str]]:
    """The rank's result and its records (as exact reprs: NaN equals NaN) from ProgramDES."""
    node = Node(TOPO, profile, Simulation())
    ranks = wl.ranks(TOPO)
    rates = node.platform.rates_of(ranks)
    programs = Programs(wl, rates[0], 1, NcclCosts.from_profile(profile).sms)
    des = ProgramDES(node, ranks, PHASES, solo=solo)
    (result,) = des.run([programs.program(0)])
    return result, [repr(dataclasses.astuple(r)) for r in des.log.records]


CASES = [
    {"model": m, "phase": ph, "launch": la, "runtime": rt, "batch": b}
    for m, ph, la, rt, b in product(
        ("llama-3.2-1b", "gpt2"),
        ("prefill", "decode", "both"),
        ("eager", "graph", "fused"),
        ("pytorch_eager", "cpp"),
        (1, 64),
    )
]


@pytest.mark.parametrize("depth", [1024.0, 3.0])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_the_closed_form_equals_the_event_driven_run(case: dict[str, object], depth: float) -> None:
    fields: dict[str, object] = {"gpus": ["gpu0"], "prompt_tokens": 32, "generated_tokens": 3}
    fields |= case | {"model": load_transformer(str(case["model"]))}
    if case["launch"] == "graph":
        fields["kv_cache"] = "static"
    wl = LlmInferenceWorkload.model_validate(fields)
    profile = make_profile(launch_queue_depth=depth)  # 3: the host blocks on a full queue
    assert _run(wl, profile, solo=True) == _run(wl, profile, solo=False)


def test_a_step_off_stream_zero_breaks_the_promise() -> None:
    node = Node(TOPO, make_profile(), Simulation())
    rates = node.platform.gpu_rates("gpu0")
    cost = KernelCost("k", 1.0, 1e6, 1, 1, 1e-6, 2e-6, rates.hbm_achievable_Bps, 0.0)
    steps: list[Step] = [KernelStep(cost, "prefill"), KernelStep(cost, "prefill", stream=1)]
    with pytest.raises(SimulationError, match="stream 0"):
        ProgramDES(node, ["gpu0"], PHASES, solo=True).run([steps])
