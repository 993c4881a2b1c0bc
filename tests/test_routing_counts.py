"""Routing drawn directly (``routing.sampling: counts``, opt-in): every token's experts a uniformly
random set of distinct experts, in distribution the per-token routing's for uniform popularity
(same means, variances and covariances of the per-(GPU, expert) counts), refused where the two
would differ; and top-k choices that keep no view of the whole argpartition array."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from conftest import make_star_topology

from gpusim.errors import SimulationError, SpecError
from gpusim.spec.loading import load_scenario
from gpusim.spec.moe import MoELayerWorkload, RouterStepsWorkload, RoutingSpec
from gpusim.workloads.moe.gates import top_k_columns
from gpusim.workloads.moe.routing import route_layer
from gpusim.workloads.moe.uniform_choices import uniform_choices

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


@pytest.mark.parametrize("routing", [{}, {"balancing": "alf_lb"}, {"gate": "softmax"}])
def test_direct_counts_follow_per_token_routing_in_distribution(routing: dict[str, Any]) -> None:
    # 2 GPUs x 48 tokens, 8 experts, top-2, 8000 replicas each way (fixed seeds: not flaky)
    n = 8000
    per_token = _counts("per_token", range(n), **routing).astype(float)
    direct = _counts("counts", range(n, 2 * n), **routing).astype(float)
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


def test_per_token_sampling_leaves_the_json_and_hash_as_before() -> None:
    assert "sampling" not in RoutingSpec().model_dump()
    assert RoutingSpec(sampling="counts").model_dump()["sampling"] == "counts"
    plain = load_scenario(FM1)
    assert "sampling" not in plain.model_dump_json()
    counts = load_scenario(FM1, {"workload.routing.sampling": "counts"})
    assert counts.content_hash != plain.content_hash


def test_top_k_choices_own_their_memory() -> None:
    score = np.random.default_rng(3).standard_normal((100, 64), dtype=np.float32)
    picked = top_k_columns(score, 2)
    assert picked.base is None and picked.nbytes == 100 * 2 * 8
    assert np.all(
        np.sort(score, axis=1)[:, -2:].sum(axis=1)
        == np.take_along_axis(score, picked, axis=1).sum(axis=1)
    )
