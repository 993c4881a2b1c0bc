"""speculative_decoding against closed forms: full and zero draft correctness, vanilla SD with
one draft token, Eq. 3 step by step, faster IO never slower, a resident model making std_pl equal
std, the weight stream bounding every verification below, contention between a provisional draft
and the stream, determinism per seed, and the spec's refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gpusim import simulate
from gpusim.engine.sim import Simulation
from gpusim.errors import SimulationError, SpecError
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.limits import estimate
from gpusim.report.heatmaps import heatmap_panels
from gpusim.result import Outcome
from gpusim.spec.hardware import MemoryKind
from gpusim.spec.loading import load_profile, load_scenario, load_topology, load_transformer
from gpusim.spec.refs import data_root
from gpusim.spec.scenario import Fidelity
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.spec.topology import Topology
from gpusim.workloads import speculative
from gpusim.workloads.speculative.costs import PassCosts, memory_plan
from gpusim.workloads.speculative.llmcad import next_alpha
from gpusim.workloads.speculative.setup import Setup

ROOT = data_root()
GH200 = load_topology(ROOT / "topologies" / "gh200_1.json")
PROFILE = load_profile(ROOT / "topologies" / "profiles" / "gh200.json")
TARGET = load_transformer("llama-3.2-1b")
DRAFT = load_transformer("gpt2")
STREAMED_GB = 2.0
"""A budget under the 1B target's 2.5 GB of bf16 weights: about half its layers stream."""
DRAFTING = ("sp", "specinfer", "llmcad")
ALL = ("std", "std_pl", *DRAFTING)


def workload(**kw: Any) -> SpeculativeDecodingWorkload:
    base: dict[str, Any] = {
        "strategy": "llmcad",
        "target": TARGET,
        "draft": DRAFT,
        "prompt_tokens": 32,
        "generated_tokens": 24,
    }
    return SpeculativeDecodingWorkload.model_validate(base | kw)


def run(wl: SpeculativeDecodingWorkload, fidelity: Fidelity, topo: Topology = GH200) -> Outcome:
    if fidelity == Fidelity.des:
        return speculative.des(Node(topo, PROFILE, Simulation()), wl, seed=3)
    return speculative.analytic(topo, PROFILE, wl, seed=3)


BOTH = (Fidelity.analytic, Fidelity.des)


@pytest.mark.parametrize("fidelity", BOTH)
@pytest.mark.parametrize("strategy", DRAFTING)
def test_full_correctness_accepts_the_whole_tree(strategy: str, fidelity: Fidelity) -> None:
    """Correctness 1, no branch (threshold 1), no early fallback (alpha 0): each verification
    accepts every draft token it checks, its tree size (4 here), and nothing is wasted."""
    wl = workload(
        strategy=strategy,
        behaviour={"correctness": 1.0},
        draft_length=4,
        tree_width=1,
        tree_depth=4,
        tree_tokens=4,
        branch_threshold=1.0,
        alpha_initial=0.0,
        provisional=False,
        memory_budget_GB=STREAMED_GB,
    )
    out = run(wl, fidelity)
    assert out.series["accepted_per_verification"] == [4.0] * 6
    assert out.metrics["verifications"] == 6
    assert out.metrics["wasted_verifications"] == 0


@pytest.mark.parametrize("fidelity", BOTH)
@pytest.mark.parametrize("strategy", DRAFTING)
def test_zero_correctness_yields_one_token_per_verification(
    strategy: str, fidelity: Fidelity
) -> None:
    """Correctness 0 (and no second candidate right): only the target's rectified token, every
    verification wasted; LLMCad's alpha is then the error fraction, 1, after each (Eq. 3)."""
    wl = workload(
        strategy=strategy,
        behaviour={"correctness": 0.0, "alternative_correctness": 0.0},
        memory_budget_GB=STREAMED_GB,
    )
    out = run(wl, fidelity)
    n = wl.generated_tokens
    assert out.series["accepted_per_verification"] == [1.0] * n
    assert out.metrics["verifications_per_token"] == 1.0
    assert out.metrics["wasted_verifications"] == n
    if strategy == "llmcad":
        assert out.series["alpha"] == [1.0] * n
        assert out.metrics["provisional_tokens_kept"] == 0


@pytest.mark.parametrize("fidelity", BOTH)
def test_sp_with_one_draft_token_costs_one_draft_and_one_verification_per_token(
    fidelity: Fidelity,
) -> None:
    """sp, draft length 1, correctness 1: per token one draft pass at 1 token plus one target
    pass, so its time is std_pl's (the same target passes) plus n draft passes."""
    common: dict[str, Any] = {"memory_budget_GB": STREAMED_GB, "behaviour": {"correctness": 1.0}}
    sp = run(workload(strategy="sp", draft_length=1, **common), fidelity)
    target_only = run(workload(strategy="std_pl", **common), fidelity)
    n = 24
    rates = Platform.of(GH200, PROFILE).gpu_rates("gpu0")
    draft_step = PassCosts(DRAFT, rates, workload().dtype, 32 + n // 2).of(1).time_s
    assert sp.metrics["verifications"] == sp.metrics["draft_steps"] == n
    assert sp.metrics["draft_s"] == pytest.approx(n * draft_step, rel=1e-12)
    expected = target_only.metrics["generation_time_s"] + n * draft_step
    assert sp.metrics["generation_time_s"] == pytest.approx(expected, rel=1e-12)


def test_next_alpha_is_eq_3() -> None:
    assert next_alpha(0.01, 5, 5) == 0.005
    assert next_alpha(0.01, 3, 4) == 0.25
    assert next_alpha(0.5, 0, 7) == 1.0


@pytest.mark.parametrize("fidelity", BOTH)
def test_alpha_halves_after_each_error_free_verification(fidelity: Fidelity) -> None:
    wl = workload(
        behaviour={"correctness": 1.0}, branch_threshold=1.0, alpha_initial=0.5, provisional=False
    )
    alphas = run(wl, fidelity).series["alpha"]
    assert alphas == [0.5 * 0.5 ** (k + 1) for k in range(len(alphas))]


def test_alpha_follows_eq_3_step_by_step_at_partial_correctness() -> None:
    """Each alpha is the one before halved (an error-free most-matching branch) or that
    branch's error fraction e / n, with n at most the tree and n - e correct tokens: the tokens
    the verification added less the rectified one."""
    wl = workload(behaviour={"correctness": 0.8}, generated_tokens=200, tree_tokens=8)
    out = run(wl, Fidelity.analytic)
    alphas, added = out.series["alpha"], out.series["accepted_per_verification"]
    previous = wl.alpha_initial
    halvings = 0
    for alpha, got in zip(alphas, added, strict=True):
        if alpha == 0.5 * previous:
            halvings += 1
        else:
            correct = got - 1  # the rectified token
            assert any(alpha == (n - correct) / n for n in range(int(correct) + 1, 9)), alpha
        previous = alpha
    assert 0 < halvings < len(alphas)  # both branches of Eq. 3 were taken


def with_link_speed(factor: float) -> Topology:
    """GH200 with its C2C link ``factor`` times as fast."""
    link = GH200.links[0]
    faster = link.model_copy(update={"bw_a_to_b_GBps": link.bw_a_to_b_GBps * factor})
    return GH200.model_copy(update={"links": [faster]})


@pytest.mark.parametrize("fidelity", BOTH)
@pytest.mark.parametrize("strategy", ALL)
def test_faster_io_never_slows_a_strategy(strategy: str, fidelity: Fidelity) -> None:
    wl = workload(strategy=strategy, memory_budget_GB=STREAMED_GB)
    rates = [
        run(wl, fidelity, with_link_speed(f)).metrics["tokens_per_s"] for f in (0.25, 0.5, 1, 2)
    ]
    assert rates == sorted(rates)
    assert rates[0] < rates[-1]  # the stream matters at this budget


@pytest.mark.parametrize("fidelity", BOTH)
def test_a_model_that_fits_makes_std_pl_equal_std(fidelity: Fidelity) -> None:
    std = run(workload(strategy="std"), fidelity)
    pl = run(workload(strategy="std_pl"), fidelity)
    assert pl.metrics["generation_time_s"] == std.metrics["generation_time_s"]
    assert std.metrics["target_resident_fraction"] == 1.0
    assert std.metrics["weight_io_s"] == 0.0
    rates = Platform.of(GH200, PROFILE).gpu_rates("gpu0")
    one_pass = PassCosts(TARGET, rates, workload().dtype, 32 + 12).of(1).time_s
    assert std.metrics["generation_time_s"] == pytest.approx(24 * one_pass, rel=1e-12)


@pytest.mark.parametrize("strategy", ALL)
def test_every_target_pass_streams_its_weights_at_least_once(strategy: str) -> None:
    """A verification never beats loading its non-resident weights over the link."""
    wl = workload(strategy=strategy, memory_budget_GB=STREAMED_GB)
    out = run(wl, Fidelity.des)
    s = Setup.of(Platform.of(GH200, PROFILE), wl)
    assert s.plan.streamed_layers > 0
    floor = out.metrics["verifications"] * s.plan.streamed_B / s.load_Bps
    busy = out.metrics["verify_compute_s"] + out.metrics["weight_io_s"]
    assert busy + out.metrics["provisional_s"] >= floor
    assert sum(out.link_bytes.values()) == pytest.approx(
        out.metrics["verifications"] * s.plan.streamed_B, rel=1e-9
    )


def test_a_provisional_draft_and_the_weight_stream_slow_each_other() -> None:
    """Provisional steps share HBM with the stream: each lasts longer than a draft step alone,
    and the run is slower than its closed form, which ignores the sharing. The draft is
    Llama-3.2-1B, whose step reads HBM at about its achievable rate, so the stream's writes
    must slow it (GPT-2's step leaves HBM room for the C2C stream)."""
    wl = workload(
        target=load_transformer("llama-3.1-8b"),
        draft=TARGET,
        memory_budget_GB=10.0,
        generated_tokens=16,
        behaviour={"correctness": 0.9},
    )
    des, closed = run(wl, Fidelity.des), run(wl, Fidelity.analytic)
    steps = des.metrics["provisional_tokens_kept"] + des.metrics["provisional_tokens_discarded"]
    assert steps > 0
    rates = Platform.of(GH200, PROFILE).gpu_rates("gpu0")
    alone = PassCosts(TARGET, rates, wl.dtype, 32 + 8).of(1).time_s
    assert des.metrics["provisional_s"] / steps > alone * 1.005
    assert des.metrics["draft_s"] / des.metrics["draft_steps"] == pytest.approx(alone)
    assert des.metrics["generation_time_s"] > closed.metrics["generation_time_s"]


def test_the_time_split_partitions_the_run() -> None:
    out = run(workload(memory_budget_GB=STREAMED_GB), Fidelity.des)
    parts = ("draft_s", "verify_compute_s", "weight_io_s", "provisional_s", "idle_s")
    assert sum(out.metrics[p] for p in parts) == pytest.approx(out.metrics["generation_time_s"])


def test_the_same_seed_gives_the_same_run_and_another_seed_another() -> None:
    wl = workload(behaviour={"correctness": 0.8}, generated_tokens=64)

    def des(seed: int) -> Outcome:
        return speculative.des(Node(GH200, PROFILE, Simulation()), wl, seed=seed)

    a, b, c = des(1), des(1), des(2)
    assert a == b
    assert a.series["accepted_per_verification"] != c.series["accepted_per_verification"]


def test_the_memory_plan_keeps_what_fits_and_streams_the_rest() -> None:
    wl = workload(memory_budget_GB=STREAMED_GB)
    rates = Platform.of(GH200, PROFILE).gpu_rates("gpu0")
    plan = memory_plan(wl, rates)
    layer = plan.target_B / TARGET.layers
    assert plan.target_B == TARGET.parameters() * 2
    assert plan.used_B <= plan.budget_B < plan.used_B + layer  # one more layer would not fit
    assert plan.streamed_B == pytest.approx((TARGET.layers - plan.resident_layers) * layer)
    with pytest.raises(SimulationError, match=r"does not fit a 0\.30 GB budget"):
        memory_plan(workload(memory_budget_GB=0.3), rates)


def test_the_spec_refuses_inconsistent_input() -> None:
    with pytest.raises(ValidationError, match="needs a draft model"):
        workload(draft=None)
    with pytest.raises(ValidationError, match="max_positions"):
        workload(generated_tokens=2000, draft=load_transformer("gpt2"))
    workload(strategy="std", draft=None)  # the baselines need no draft


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("memory_budget_GB", 500, "exceeds GPU 'gpu0''s 96 GB"),
        ("weights_from", "gpu0", "'gpu0' is not a CPU or storage device of topology 'gh200_1'"),
        ("gpu", "gpu7", "gpu7"),
    ],
)
def test_a_bad_value_is_one_line_naming_file_and_path(
    tmp_path: Path, field: str, value: object, reason: str
) -> None:
    doc = json.loads((ROOT / "workloads" / "specdec_llama31_70b_gh200.json").read_text())
    doc["workload"][field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as err:
        load_scenario(path)
    line = str(err.value)
    assert "\n" not in line and f"$.workload.{field}" in line and reason in line


def test_the_work_estimate_bounds_the_events_a_run_takes() -> None:
    """``gpusim run`` refuses a run by its estimate: never below what the run takes."""
    path = ROOT / "workloads" / "specdec_llama31_70b_gh200.json"
    for strategy in ALL:
        overrides = {"workload.strategy": strategy, "workload.generated_tokens": 16}
        scenario = load_scenario(path, overrides)
        assert estimate(scenario).events >= simulate(scenario).events


@pytest.mark.parametrize("fidelity", BOTH)
def test_specinfer_drafts_one_pass_then_a_batched_pass_per_level(fidelity: Fidelity) -> None:
    """Per tree: one draft pass over the last token (the ranked first tokens), then ``depth -
    1`` passes over the ``width`` chains' newest tokens."""
    wl = workload(strategy="specinfer", tree_width=3, tree_depth=4, behaviour={"correctness": 1.0})
    out = run(wl, fidelity)
    rates = Platform.of(GH200, PROFILE).gpu_rates("gpu0")
    draft = PassCosts(DRAFT, rates, wl.dtype, 32 + 12)
    assert out.metrics["verifications"] == 24 / 4  # each tree's first chain is all accepted
    per_tree = draft.of(1).time_s + 3 * draft.of(3).time_s
    assert out.metrics["draft_s"] == pytest.approx(6 * per_tree, rel=1e-12)
    assert out.metrics["draft_steps"] == 6 * 4


def test_the_heatmap_figure_has_a_panel_per_group_and_a_label_per_cell() -> None:
    panels = {"a": {(1.0, 0.5): 2.0, (2.0, 0.5): 4.0}, "b": {(1.0, 0.5): 3.0}}
    fig = heatmap_panels(panels, [1.0, 2.0], [0.5], xlabel="x", ylabel="y", metric="m")
    heatmaps = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heatmaps] == ["a", "b"]
    assert [len(ax.texts) for ax in heatmaps] == [2, 1]  # the missing cell has no label
    assert len(fig.axes) == 3  # and one shared colour bar


NVME = load_topology(ROOT / "topologies" / "h100_pcie_1gpu_nvme.json")
H100_PROFILE = load_profile(ROOT / "topologies" / "profiles" / "h100_pcie.json")


@pytest.mark.parametrize("fidelity", BOTH)
def test_weights_stream_from_a_storage_device_at_its_read_rate(fidelity: Fidelity) -> None:
    """From the NVMe SSD, a target pass is bounded below by its rated read bandwidth times the
    profile's storage efficiency (7.0 GB/s x 0.9: under the x4 link's 7.88 GB/s raw), and the
    bytes cross the SSD's link."""
    wl = workload(strategy="std", memory_budget_GB=STREAMED_GB, weights_from="storage0")
    if fidelity == Fidelity.des:
        out = speculative.des(Node(NVME, H100_PROFILE, Simulation()), wl, seed=3)
    else:
        out = speculative.analytic(NVME, H100_PROFILE, wl, seed=3)
    s = Setup.of(Platform.of(NVME, H100_PROFILE), wl)
    efficiency = H100_PROFILE.memory_efficiency[MemoryKind.storage].value
    assert s.load_Bps == 7.0e9 * efficiency
    streamed = out.metrics["verifications"] * s.plan.streamed_B
    assert out.metrics["weight_io_s"] >= streamed / s.load_Bps
    assert out.link_bytes["storage0->cpu0"] == pytest.approx(streamed, rel=1e-9)
    assert out.link_bytes["cpu0->gpu0"] == pytest.approx(streamed, rel=1e-9)


def test_a_storage_device_holds_a_storage_tier(tmp_path: Path) -> None:
    doc = json.loads((ROOT / "topologies" / "h100_pcie_1gpu_nvme.json").read_text())
    doc["devices"][-1]["memory"] = "ddr5_4800_8ch_512gb"
    path = tmp_path / "bad_topology.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as err:
        load_topology(path)
    line = str(err.value)
    assert "\n" not in line and "$.devices[3]" in line and "not storage" in line
