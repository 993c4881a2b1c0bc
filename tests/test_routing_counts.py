"""Routing drawn directly (``routing.sampling: counts``, and ``auto``, the default, wherever counts
can stand for per-token routing): every token's experts a uniformly random set of distinct
experts, in distribution the per-token routing's for uniform popularity (same means, variances
and covariances of the per-(GPU, expert) counts), refused where the two would differ; auto's
choice, its JSON (hence scenario hashes) and a sweep resumed across the change of default; and
top-k choices that keep no view of the whole argpartition array."""

from __future__ import annotations

import itertools
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_star_topology

from gpusim.errors import SimulationError, SpecError
from gpusim.limits import estimate
from gpusim.spec.loading import load_scenario
from gpusim.spec.moe import MoELayerWorkload, RouterStepsWorkload, RoutingSpec
from gpusim.sweep import ResultStore
from gpusim.sweep.expand import iter_points
from gpusim.sweep.runner import SweepOutcome, run_sweep
from gpusim.sweep.spec import load_sweep
from gpusim.workloads.moe.gates import top_k_columns
from gpusim.workloads.moe.routing import route_layer
from gpusim.workloads.moe.uniform_choices import uniform_choices

ROOT = Path(__file__).resolve().parents[1]
FM1 = "workloads/moe_fm1_flashmoe_2xh100.json"


def _layer(sampling: str, tokens: int = 48, experts: int = 8, **routing: Any) -> MoELayerWorkload:
    return MoELayerWorkload(
        tokens_per_gpu=tokens,
        hidden=64,
        intermediate=128,
        experts=experts,
        top_k=2,
        capacity_factor=None,
        routing=RoutingSpec(sampling=sampling, **routing),
    )


def test_uniform_choices_are_distinct_and_every_set_equally_likely() -> None:
    experts, top_k, tokens = 5, 3, 200_000
    chosen = uniform_choices(np.random.default_rng(1), tokens, experts, top_k)
    assert chosen.shape == (tokens, top_k) and chosen.dtype == np.int64
    ordered = np.sort(chosen, axis=1)
    assert np.all(np.diff(ordered, axis=1) > 0) and ordered.min() >= 0 and ordered.max() < experts
    sets = list(itertools.combinations(range(experts), top_k))
    codes = (ordered * np.array([experts**2, experts, 1])).sum(axis=1)
    freq = np.bincount(codes, minlength=experts**3)[[a * 25 + b * 5 + c for a, b, c in sets]]
    p = 1 / len(sets)
    assert freq.sum() == tokens
    assert np.all(np.abs(freq - tokens * p) <= 5 * math.sqrt(tokens * p * (1 - p)))


def test_uniform_choices_of_every_expert_pick_them_all() -> None:
    chosen = uniform_choices(np.random.default_rng(2), 10, 4, 4)
    assert np.array_equal(np.sort(chosen, axis=1), np.tile(np.arange(4), (10, 1)))


def _counts(sampling: str, seeds: range, **routing: Any) -> np.ndarray:
    wl = _layer(sampling, **routing)
    return np.stack([route_layer(wl, 2, np.random.default_rng(s)).counts for s in seeds])


@pytest.mark.parametrize("sampling", ["counts", "auto"])
@pytest.mark.parametrize("routing", [{}, {"balancing": "alf_lb"}, {"gate": "softmax"}])
def test_direct_counts_follow_per_token_routing_in_distribution(
    routing: dict[str, Any], sampling: str
) -> None:
    # 2 GPUs x 48 tokens, 8 experts, top-2, 8000 replicas each way (fixed seeds: not flaky)
    n = 8000
    per_token = _counts("per_token", range(n), **routing).astype(float)
    direct = _counts(sampling, range(n, 2 * n), **routing).astype(float)
    assert np.all(direct.sum(axis=2) == 48 * 2) and np.all(per_token.sum(axis=2) == 48 * 2)
    p = 2 / 8
    mean, var = 48 * p, 48 * p * (1 - p)  # each count is Binomial(48, 1/4)
    for sample in (per_token, direct):
        assert np.all(np.abs(sample.mean(axis=0) - mean) < 5 * math.sqrt(var / n))
        assert np.all(np.abs(sample.var(axis=0) / var - 1) < 0.1)
    # two experts of one GPU compete for each token's two picks: the same negative covariance,
    # T (P(a and b) - P(a) P(b)) with P(a and b) = 1/28 (sampling sd about 0.1)
    cov = [np.cov(s[:, 0, 0], s[:, 0, 1])[0, 1] for s in (per_token, direct)]
    exact = 48 * (1 / 28 - p * p)
    assert all(abs(c - exact) < 0.45 for c in cov), (cov, exact)


def test_direct_counts_are_refused_where_they_would_differ() -> None:
    for routing in (
        {"distribution": "zipf"},
        {"warmup_steps": 2, "balancing": "alf_lb"},
        {"node_limited": {"groups": 4, "groups_per_token": 2}},
    ):
        with pytest.raises(SimulationError, match="sampling 'counts'"):
            route_layer(_layer("counts", **routing), 2, np.random.default_rng(0))


def test_a_bad_sampling_is_one_line_at_load() -> None:
    with pytest.raises(SpecError) as info:
        load_scenario(
            FM1,
            {"workload.routing.sampling": "counts", "workload.routing.distribution": "zipf"},
        )
    assert "\n" not in str(info.value) and "needs distribution 'uniform'" in str(info.value)
    routing = RoutingSpec(sampling="counts")
    steps = RouterStepsWorkload(tokens_per_step=64, experts=8, ep_ranks=2, routing=routing)
    assert any(loc == ("routing", "sampling") for loc, _ in steps.check(make_star_topology(2)))


_SETTINGS: dict[str, list[Any]] = {
    "distribution": ["uniform", "zipf", "dirichlet"],
    "node_limited": [None, {"groups": 4, "groups_per_token": 2}],
    "warmup_steps": [0, 2],
    "balancing": ["none", "alf_lb", "aux_loss"],
    "drift_per_step": [0.0, 0.1],
    "sequence_aux_alpha": [0.0, 1e-4],
}
_ALL_ROUTINGS = [
    dict(zip(_SETTINGS, values, strict=True)) for values in itertools.product(*_SETTINGS.values())
]


def test_auto_draws_counts_exactly_where_counts_can_stand_for_per_token() -> None:
    # every combination of the settings counts_problem() reads: auto routes as counts (the same
    # numbers) where it is None, as per_token (the same numbers) elsewhere
    picked = set()
    for routing in _ALL_ROUTINGS:
        auto = _layer("auto", tokens=16, **routing)
        want = "counts" if auto.routing.counts_problem() is None else "per_token"
        assert auto.routing.resolved_sampling() == want
        assert RoutingSpec(sampling=want, **routing).resolved_sampling() == want
        explicit = _layer(want, tokens=16, **routing)
        for seed in (0, 1):
            got = route_layer(auto, 2, np.random.default_rng(seed))
            ref = route_layer(explicit, 2, np.random.default_rng(seed))
            assert np.array_equal(got.counts, ref.counts) and got.dropped == ref.dropped
        picked.add(want)
    assert picked == {"counts", "per_token"}


def test_sampling_is_written_where_auto_and_per_token_differ_and_reloads_as_it_was() -> None:
    for routing, sampling in itertools.product(_ALL_ROUTINGS, ("auto", "per_token", "counts")):
        spec = RoutingSpec(sampling=sampling, **routing)
        dumped = spec.model_dump(mode="json")
        written = sampling == "counts" or spec.counts_problem() is None
        assert ("sampling" in dumped) == written, (routing, sampling)
        again = RoutingSpec.model_validate(dumped)
        assert again.resolved_sampling() == spec.resolved_sampling()
    # where per-token routing is the only one, the JSON is as before the field existed
    assert "sampling" not in RoutingSpec(distribution="zipf", sampling="per_token").model_dump()


def test_scenario_hashes_move_exactly_where_the_draws_do() -> None:
    plain = load_scenario(FM1)  # uniform routing: auto draws counts
    assert isinstance(plain.workload, MoELayerWorkload)
    assert plain.workload.routing.resolved_sampling() == "counts"
    assert '"sampling":"auto"' in plain.model_dump_json()
    hashes = {
        sampling: load_scenario(FM1, {"workload.routing.sampling": sampling}).content_hash
        for sampling in ("auto", "per_token", "counts")
    }
    assert hashes["auto"] == plain.content_hash and len(set(hashes.values())) == 3
    zipf = {"workload.routing.distribution": "zipf"}
    assert (
        load_scenario(FM1, zipf).content_hash
        == load_scenario(FM1, {**zipf, "workload.routing.sampling": "per_token"}).content_hash
    )
    # router steps always follow every token: auto and per_token are one JSON there
    steps = [
        RouterStepsWorkload(
            tokens_per_step=64, experts=8, ep_ranks=2, routing=RoutingSpec(sampling=sampling)
        ).model_dump_json()
        for sampling in ("auto", "per_token")
    ]
    assert steps[0] == steps[1] and "sampling" not in steps[0]


def _moe_sweep(tmp_path: Path) -> Path:
    base = json.loads((ROOT / FM1).read_text())
    base["topology"] = str(ROOT / "topologies" / f"{base['topology']}.json")
    base["options"] = {"seed": 0, "fidelity": "analytic", "trace": False}
    base["workload"]["tokens_per_gpu"] = 512
    doc = {"name": "resume", "base": base, "axes": {"workload.experts": [8, 16, 32]}}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(doc))
    return path


def _run(path: Path, out: Path) -> tuple[SweepOutcome, dict[str, dict[str, Any]]]:
    store = ResultStore(out)
    with ThreadPoolExecutor(max_workers=1) as pool:
        outcome = run_sweep(
            iter_points(load_sweep(path), path),
            store,
            pool,
            manifest_fields={"name": "resume", "description": ""},
        )
    assert outcome.ok, outcome
    hashes = [row["scenario_hash"] for row in store.rows()]
    results = ResultStore(out).results()
    return outcome, {h: results[h] for h in hashes}


def test_a_sweep_stored_with_the_old_default_recomputes_its_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the version before auto: per-token draws and no sampling in the JSON, which is what this
    # one does where counts cannot stand for per-token routing
    path, out = _moe_sweep(tmp_path), tmp_path / "out"
    with monkeypatch.context() as old:
        old.setattr(RoutingSpec, "counts_problem", lambda self: "the version before auto")
        _, before = _run(path, out)
    outcome, after = _run(path, out)
    assert outcome.progress.skipped == 0 and outcome.progress.done == 3
    assert not set(before) & set(after)
    _, fresh = _run(path, tmp_path / "fresh")
    assert list(after) == list(fresh)
    for h, record in after.items():  # what a fresh sweep computes, but its wall time
        assert {**record, "wall_s": 0} == {**fresh[h], "wall_s": 0}
    assert any(
        a["makespan_s"] != b["makespan_s"]
        for a, b in zip(before.values(), after.values(), strict=True)
    )


def test_top_k_choices_own_their_memory() -> None:
    score = np.random.default_rng(3).standard_normal((100, 64), dtype=np.float32)
    picked = top_k_columns(score, 2)
    assert picked.base is None and picked.nbytes == 100 * 2 * 8
    assert np.all(
        np.sort(score, axis=1)[:, -2:].sum(axis=1)
        == np.take_along_axis(score, picked, axis=1).sum(axis=1)
    )


def test_the_work_estimate_counts_the_draws_the_routing_makes() -> None:
    auto = estimate(load_scenario(FM1))
    per_token = estimate(load_scenario(FM1, {"workload.routing.sampling": "per_token"}))
    assert auto.memory_B == per_token.memory_B
    assert auto.events < per_token.events
