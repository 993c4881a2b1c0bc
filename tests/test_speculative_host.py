"""speculative_decoding with host-driven passes (``runtime: pytorch_eager`` / ``cpp``) and the
host CPU a storage load takes from the thread driving the GPU (``storage_io``): a pass is the
``llm_inference`` family's decode step, host costs slow a host-bound pass in proportion, the
loader's share follows its closed form, and faster IO still never slows a strategy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpusim import simulate
from gpusim.calibrate.params import build_profile, flatten
from gpusim.engine.sim import Simulation
from gpusim.execution.host_costs import HOST_THREAD_COST_PATHS, HostCosts
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.result import Outcome
from gpusim.spec.base import Dtype
from gpusim.spec.loading import load_profile, load_scenario, load_topology, load_transformer
from gpusim.spec.profile import CalibrationProfile, Measured, StorageIOCosts
from gpusim.spec.refs import data_root
from gpusim.spec.scenario import Fidelity
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.spec.topology import StorageDevice, Topology
from gpusim.workloads import speculative
from gpusim.workloads.speculative.costs import HostDriver, PassCosts
from gpusim.workloads.speculative.setup import Setup

ROOT = data_root()
NVME = load_topology(ROOT / "topologies" / "h100_pcie_1gpu_nvme.json")
PCIE = load_topology(ROOT / "topologies" / "h100_pcie_1gpu.json")
BASE_PROFILE = load_profile(ROOT / "topologies" / "profiles" / "h100_pcie.json")
CPU_US_PER_MB = 50.0
"""An illustrative loader cost: 50 us of CPU per MB read (20 GB/s of copying)."""
PROFILE = BASE_PROFILE.model_copy(
    update={
        "storage_io": StorageIOCosts(
            host_cpu_us_per_MB=Measured(value=CPU_US_PER_MB, source="test value")
        )
    }
)
TARGET = load_transformer("llama-3.2-1b")
DRAFT = load_transformer("gpt2")
BOTH = (Fidelity.analytic, Fidelity.des)
ALL = ("std", "std_pl", "sp", "specinfer", "llmcad")


def workload(**kw: Any) -> SpeculativeDecodingWorkload:
    base: dict[str, Any] = {
        "strategy": "llmcad",
        "target": TARGET,
        "draft": DRAFT,
        "runtime": "pytorch_eager",
        "weights_from": "storage0",
        "prompt_tokens": 32,
        "generated_tokens": 16,
        "memory_budget_GB": 2.0,
    }
    return SpeculativeDecodingWorkload.model_validate(base | kw)


def run(
    wl: SpeculativeDecodingWorkload,
    fidelity: Fidelity,
    topo: Topology = NVME,
    profile: CalibrationProfile = PROFILE,
) -> Outcome:
    if fidelity == Fidelity.des:
        return speculative.des(Node(topo, profile, Simulation()), wl, seed=5)
    return speculative.analytic(topo, profile, wl, seed=5)


def driver(platform: Platform, framework: bool = True) -> HostDriver:
    return HostDriver(platform, "gpu0", framework, HostCosts.from_profile(platform.profile))


def test_an_eager_pass_is_the_llm_familys_decode_step(tmp_path: Path) -> None:
    """A GPT-2 draft pass over one token at context 100 is exactly the llm_inference decode step
    at that context (HF eager, static cache, the greedy epilogue with its host read): the same
    ops, host model and closed form."""
    scenario = {
        "name": "gpt2_decode_step",
        "topology": "h100_pcie_1gpu",
        "workload": {
            "kind": "llm_inference",
            "model": "gpt2",
            "batch": 1,
            "prompt_tokens": 100,
            "generated_tokens": 1,
            "phase": "decode",
            "kv_cache": "static",
            "dtype": "fp16",
        },
        "options": {"fidelity": "analytic"},
    }
    path = tmp_path / "step.json"
    path.write_text(json.dumps(scenario))
    step_s = simulate(path).makespan_s
    platform = Platform.of(PCIE, BASE_PROFILE)
    rates = platform.gpu_rates("gpu0")
    costs = PassCosts(DRAFT, rates, Dtype.fp16, 100, host=driver(platform))
    assert costs.of(1).time_s == step_s
    ideal = PassCosts(DRAFT, rates, Dtype.fp16, 100)
    assert ideal.of(1).time_s < step_s  # the host's costs only add


def test_host_costs_slow_a_host_bound_pass_in_proportion() -> None:
    """GPT-2's decode step on an H100 is host-bound (its kernels take under a third of the
    step): doubling every host cost nearly doubles it, never more."""
    platform = Platform.of(PCIE, BASE_PROFILE)
    costs = PassCosts(DRAFT, platform.gpu_rates("gpu0"), Dtype.fp16, 100, host=driver(platform))
    one, two = costs.of(1), costs.of(1, 2.0)
    assert one.body_s < one.time_s / 3
    assert 1.8 * one.time_s < two.time_s <= 2.0 * one.time_s
    assert two.hbm_bytes == one.hbm_bytes  # the same kernels


def test_the_loaders_share_of_the_cpu_is_its_rate_times_its_cost() -> None:
    """slowdown = 1 / (1 - load rate x CPU seconds per byte) for a storage source under a
    host-driven runtime; nothing for a CPU-memory source (DMA) or an ideal runtime."""
    platform = Platform.of(NVME, PROFILE)
    s = Setup.of(platform, workload())
    per_B = CPU_US_PER_MB * 1e-6 / 1e6
    assert s.loader_cpu_s_per_B == pytest.approx(per_B, rel=1e-12)
    assert s.host_slowdown == pytest.approx(1.0 / (1.0 - s.load_Bps * per_B), rel=1e-12)
    assert s.host_slowdown > 1.0
    for wl in (workload(weights_from=None), workload(runtime="ideal")):
        quiet = Setup.of(platform, wl)
        assert quiet.loader_cpu_s_per_B == 0.0
        assert quiet.host_slowdown == 1.0


def test_provisional_steps_run_at_the_slowed_draft_rate() -> None:
    """Each provisional step takes the draft pass with its host costs slowed by the loader;
    normal draft steps do not."""
    wl = workload(behaviour={"correctness": 0.9})
    out = run(wl, Fidelity.analytic)
    s = Setup.of(Platform.of(NVME, PROFILE), wl)
    assert out.metrics["provisional_tokens_kept"] + out.metrics["provisional_tokens_discarded"] > 0
    assert out.metrics["provisional_step_s"] == pytest.approx(
        s.draft_costs().of(1, s.host_slowdown).time_s, rel=1e-12
    )
    assert out.metrics["draft_step_s"] == pytest.approx(s.draft_costs().of(1).time_s, rel=1e-12)
    assert out.metrics["provisional_step_s"] > out.metrics["draft_step_s"]


def test_the_loader_slows_pipelined_compute_but_not_stds() -> None:
    """A pipelined pass's streamed layers lose the next load's CPU time; std, which loads and
    computes in turn, loses nothing."""
    platform = Platform.of(NVME, PROFILE)
    for strategy, loses in (("std", False), ("std_pl", True)):
        s = Setup.of(platform, workload(strategy=strategy))
        shape = s.pass_shape(1)
        extra = shape.streamed_compute_s - shape.layer_compute_s
        expected = s.plan.layer_B * s.loader_cpu_s_per_B if loses else 0.0
        assert extra == pytest.approx(expected, rel=1e-9, abs=1e-15)
        assert shape.streamed_layers > 0


@pytest.mark.parametrize("fidelity", BOTH)
@pytest.mark.parametrize("strategy", ALL)
def test_faster_storage_never_slows_a_host_driven_strategy(
    strategy: str, fidelity: Fidelity
) -> None:
    """Doubling the SSD's rated read bandwidth raises the loader's CPU share too, yet no
    strategy gets slower."""
    device = NVME.device("storage0")
    assert isinstance(device, StorageDevice)
    faster_memory = device.memory.model_copy(update={"bw_GBps": 2 * device.memory.bw_GBps})
    faster_device = device.model_copy(update={"memory": faster_memory})
    devices = [faster_device if d.id == "storage0" else d for d in NVME.devices]
    links = [
        link.model_copy(update={"bw_a_to_b_GBps": 2 * link.bw_a_to_b_GBps})
        if "storage0" in (link.a, link.b)
        else link
        for link in NVME.links
    ]
    faster = NVME.model_copy(update={"devices": devices, "links": links})
    wl = workload(strategy=strategy)
    slow, fast = run(wl, fidelity), run(wl, fidelity, faster)
    assert fast.metrics["tokens_per_s"] >= slow.metrics["tokens_per_s"] * (1 - 1e-9)


@pytest.mark.parametrize("strategy", ("std", "sp", "llmcad"))
def test_host_driven_runs_agree_across_fidelities_when_nothing_overlaps(strategy: str) -> None:
    """Every weight resident: no load, nothing beside a pass, so the DES's aggregate kernels
    take the closed form's host-driven pass times."""
    wl = workload(strategy=strategy, memory_budget_GB=None, weights_from=None)
    a, d = run(wl, Fidelity.analytic), run(wl, Fidelity.des)
    assert a.metrics["target_resident_fraction"] == 1.0
    assert d.makespan_s == pytest.approx(a.makespan_s, rel=1e-9)


def test_a_cpp_runtime_costs_less_host_time_than_eager() -> None:
    """``cpp`` keeps only the runtime calls (and Q, K, V as one GEMM, as the llm family's C++
    engine): its pass is cheaper than eager's; a pass never beats its kernels' GPU time."""
    platform = Platform.of(PCIE, BASE_PROFILE)
    rates = platform.gpu_rates("gpu0")
    eager = PassCosts(TARGET, rates, Dtype.fp16, 64, host=driver(platform)).of(1).time_s
    cpp = PassCosts(TARGET, rates, Dtype.fp16, 64, host=driver(platform, False)).of(1).time_s
    assert cpp < eager
    for framework in (True, False):
        host = PassCosts(TARGET, rates, Dtype.fp16, 64, host=driver(platform, framework)).of(4)
        assert host.time_s >= host.body_s > 0


def test_a_target_layer_waits_one_draft_layer_at_most_for_a_provisional_step() -> None:
    """On the TX2 (mT5-small drafting for mT5-Large from the eMMC), a provisional step runs
    draft layer by draft layer and the target keeps the GPU while its next layer is loaded:
    each verification outlasts the closed form's (which lets provisional steps fill only idle
    time) by at most one draft layer per streamed target layer plus one step."""
    scenario = load_scenario(ROOT / "workloads" / "specdec_mt5_tx2.json")
    wl = scenario.workload
    assert isinstance(wl, SpeculativeDecodingWorkload)
    topo, profile = scenario.topology, scenario.profile
    des = speculative.des(Node(topo, profile, Simulation()), wl, seed=0)
    closed = speculative.analytic(topo, profile, wl, seed=0)
    s = Setup.of(Platform.of(topo, profile), wl)
    step = s.provisional_step().time_s
    part = step / s.draft_costs().model.layers
    slack = s.plan.streamed_layers * part + step
    assert des.metrics["provisional_s"] > 0
    assert closed.metrics["verification_s"] <= des.metrics["verification_s"]
    assert des.metrics["verification_s"] <= closed.metrics["verification_s"] + slack


def test_slowed_host_costs_are_the_profile_with_its_host_thread_costs_scaled() -> None:
    """``HostCosts.slowed(k)`` equals the costs of a profile whose HOST_THREAD_COST_PATHS are k
    times larger (the fit of LC-1 scales those paths, the model scales HostCosts)."""
    values = flatten(BASE_PROFILE)
    scaled = dict(values)
    for path in HOST_THREAD_COST_PATHS:
        scaled[path] = Measured(value=values[path].value * 3.0, source="test")
    profile = build_profile(BASE_PROFILE.id, BASE_PROFILE.description, scaled)
    slowed = HostCosts.from_profile(BASE_PROFILE).slowed(3.0)
    direct = HostCosts.from_profile(profile)
    for a, b in (
        (direct.launch.api_s, slowed.launch.api_s),
        (direct.launch.framework_op_s, slowed.launch.framework_op_s),
        (direct.launch.graph_launch_s, slowed.launch.graph_launch_s),
        (direct.launch.doorbell_s, slowed.launch.doorbell_s),
        (direct.autograd_s, slowed.autograd_s),
        (direct.python_step_s, slowed.python_step_s),
    ):
        assert a == pytest.approx(b, rel=1e-12)
    for kind, cost in direct.framework_s.items():
        assert cost == pytest.approx(slowed.framework_s[kind], rel=1e-12)
    for call, cost in direct.runtime_s.items():
        assert cost == pytest.approx(slowed.runtime_s[call], rel=1e-12)
