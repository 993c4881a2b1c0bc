"""Gating weights, the softmax gate, DeepSeek-V3's node-limited routing and its update-speed
schedule (gpusim.workloads.moe.gates and the router; docs/alf_lb.md).

Closed forms: renormalised weights sum to 1 per token; softmax weights over every expert sum to
1; with top_k = experts the choices cannot depend on the bias, so neither may the weights; the
softmax balance-loss gradient sums to 0 over experts (a common logit shift changes no softmax).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gpusim.errors import SimulationError
from gpusim.spec.moe import NodeLimitSpec, RoutingSpec
from gpusim.workloads.moe.aux_loss import softmax_balance_gradient
from gpusim.workloads.moe.balance_metrics import expert_loads, maxvio
from gpusim.workloads.moe.gates import (
    gating_weights,
    groups_touched,
    limit_to_groups,
    softmax_rows,
    top_k_columns,
    top_k_sets,
)
from gpusim.workloads.moe.routing import Router


def _router(seed: int = 0, experts: int = 16, top_k: int = 4, **spec: Any) -> Router:
    return Router(RoutingSpec(**spec), experts, top_k, np.random.default_rng(seed))


def _skew_bias(router: Router) -> None:
    """A large, uneven bias: expert e gets u * sign(mean - e)."""
    router.update(np.arange(router.experts, dtype=np.float64))


# --- gating weights ---------------------------------------------------------------------------


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
def test_the_bias_never_changes_the_gating_weights(gate: str) -> None:
    # top_k = experts: every token takes every expert whatever the bias
    kw: dict[str, Any] = {"experts": 8, "top_k": 8, "gate": gate, "distribution": "zipf"}
    biased = _router(seed=1, balancing="alf_lb", alf_update_rate=0.4, **kw)
    plain = _router(seed=1, **kw)
    _skew_bias(biased)
    assert len(set(biased.bias.tolist())) > 1
    a, b = biased.route(3000, gates=True), plain.route(3000, gates=True)
    assert np.array_equal(a.choices, b.choices)
    assert a.gates is not None and b.gates is not None
    assert np.array_equal(a.gates, b.gates)


def test_weights_are_the_chosen_affinities_renormalised() -> None:
    kw: dict[str, Any] = {"distribution": "zipf", "balancing": "alf_lb", "alf_update_rate": 0.01}
    norm = _router(seed=2, **kw)
    raw = _router(seed=2, renormalise_gates=False, **kw)
    _skew_bias(norm)
    _skew_bias(raw)
    a, b = norm.route(4000, gates=True), raw.route(4000, gates=True)
    assert a.gates is not None and b.gates is not None
    assert np.array_equal(a.choices, b.choices)
    assert np.allclose(a.gates.sum(axis=1), 1.0, atol=1e-6)
    assert np.all((b.gates > 0) & (b.gates < 1))  # sigmoid affinities
    assert np.allclose(a.gates, b.gates / b.gates.sum(axis=1, keepdims=True), atol=1e-6)


def test_softmax_weights_over_every_expert_sum_to_one() -> None:
    router = _router(seed=3, experts=6, top_k=6, gate="softmax", renormalise_gates=False)
    routed = router.route(1000, gates=True)
    assert routed.gates is not None
    assert np.allclose(routed.gates.sum(axis=1), 1.0, atol=1e-5)


def test_gating_weights_closed_form() -> None:
    affinity = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.2]], dtype=np.float32)
    choices = np.array([[1, 2], [0, 2]])
    assert np.allclose(gating_weights(affinity, choices, False), [[0.6, 0.3], [0.5, 0.2]])
    assert np.allclose(gating_weights(affinity, choices, True), [[2 / 3, 1 / 3], [5 / 7, 2 / 7]])
    assert np.allclose(softmax_rows(np.array([[0.0, np.log(3.0)]])), [[0.25, 0.75]])


def test_routing_with_weights_picks_the_same_experts() -> None:
    kw: dict[str, Any] = {"distribution": "zipf"}
    a, b = _router(seed=4, **kw), _router(seed=4, **kw)
    assert np.array_equal(a.route(5000, gates=True).choices, b.step(5000))


def test_a_trace_has_no_weights(tmp_path: Any) -> None:
    path = tmp_path / "t.json"
    path.write_text("[[1, 1, 1, 1]]", encoding="utf-8")
    router = Router(
        RoutingSpec(distribution="trace", trace_file=str(path)), 4, 1, np.random.default_rng(0)
    )
    with pytest.raises(SimulationError, match="no affinities"):
        router.route(10, gates=True)


# --- the softmax gate -------------------------------------------------------------------------


def test_softmax_and_sigmoid_select_alike_without_a_bias() -> None:
    # both are monotone in each token's logits: the same top-k
    kw: dict[str, Any] = {"distribution": "zipf", "experts": 32, "top_k": 4}
    assert np.array_equal(
        _router(seed=5, gate="softmax", **kw).step(5000), _router(seed=5, **kw).step(5000)
    )


def test_softmax_balance_gradient_closed_form() -> None:
    loads = np.array([3.0, 1.0])  # f = (1.5, 0.5)
    mean = np.array([0.6, 0.4])
    outer = np.array([[0.4, 0.2], [0.2, 0.2]])  # rows sum to the means, as for real tokens
    grad = softmax_balance_gradient(loads, mean, outer, 0.1)
    # 0.1 * ((0.9, 0.2) - (1.5 * 0.4 + 0.5 * 0.2, 1.5 * 0.2 + 0.5 * 0.2))
    assert grad == pytest.approx([0.02, -0.02])
    with pytest.raises(SimulationError):
        softmax_balance_gradient(loads, mean, outer[:1], 0.1)


def test_softmax_aux_loss_gradient_sums_to_zero_and_balances() -> None:
    router = _router(
        seed=6, gate="softmax", distribution="zipf", balancing="aux_loss", aux_loss_alpha=20.0
    )
    series = []
    for _ in range(30):
        loads = expert_loads(router.step(4096), 16)
        series.append(maxvio(loads))
        router.update(loads)
    offset = router.aux_loss_offset
    assert abs(float(offset.sum())) < 1e-6 * float(np.abs(offset).max())
    assert np.mean(series[-5:]) < 0.5 * series[0]


@pytest.mark.parametrize("rule", ["proportional", "multiplicative"])
def test_alf_lb_balances_a_softmax_gate(rule: str) -> None:
    router = _router(
        seed=7,
        gate="softmax",
        distribution="zipf",
        balancing="alf_lb",
        alf_update=rule,
        alf_update_rate=0.05,
    )
    series = []
    for _ in range(60):
        loads = expert_loads(router.step(4096), 16)
        series.append(maxvio(loads))
        router.update(loads)
    assert np.mean(series[-10:]) < 0.5 * series[0]


# --- node-limited routing ---------------------------------------------------------------------


def test_limit_to_groups_closed_form() -> None:
    # groups of 4; each group ranked by its top-2 sum: (3 + 5) = 8 against (10 + 0) = 10
    score = np.array([[1, 2, 3, 5, 10, 0, 0, 0]], dtype=np.float32)
    limited = limit_to_groups(score, 2, 1, 2)
    assert np.all(np.isneginf(limited[0, :4]))
    assert np.array_equal(limited[0, 4:], score[0, 4:])
    # ranked by the top-4 sum instead, group 0 wins: 1 + 2 + 3 + 5 = 11 > 10
    assert np.all(np.isneginf(limit_to_groups(score, 2, 1, 4)[0, 4:]))
    with pytest.raises(SimulationError):
        limit_to_groups(score, 3, 1, 1)
    with pytest.raises(SimulationError):
        limit_to_groups(score, 2, 1, 5)


def test_groups_touched_closed_form() -> None:
    choices = np.array([[0, 1, 2, 3], [0, 4, 8, 12], [5, 6, 9, 1]])
    assert groups_touched(choices, 4).tolist() == [1, 4, 3]


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
def test_node_limited_routing_never_exceeds_m_groups(gate: str) -> None:
    experts, top_k, groups, m = 32, 6, 8, 2
    router = _router(
        seed=8,
        experts=experts,
        top_k=top_k,
        gate=gate,
        distribution="zipf",
        balancing="alf_lb",
        alf_update_rate=0.02,
        node_limited=NodeLimitSpec(groups=groups, groups_per_token=m),
    )
    unlimited_touch = groups_touched(_router(seed=8, experts=experts, top_k=top_k).step(4000), 4)
    assert unlimited_touch.max() > m  # without the limit, tokens do spread wider
    for _ in range(5):
        choices = router.step(4000)
        assert np.all(groups_touched(choices, experts // groups) <= m)
        assert np.all(np.diff(np.sort(choices, axis=1), axis=1) > 0)  # still distinct
        router.update(expert_loads(choices, experts))


def test_a_limit_of_every_group_is_no_limit() -> None:
    kw: dict[str, Any] = {"distribution": "zipf", "balancing": "alf_lb", "alf_update_rate": 0.01}
    limited = _router(seed=9, node_limited=NodeLimitSpec(groups=4, groups_per_token=4), **kw)
    free = _router(seed=9, **kw)
    for r in (limited, free):
        _skew_bias(r)  # a non-flat bias, so both take the biased path
    assert np.array_equal(limited.step(5000), free.step(5000))


@pytest.mark.parametrize(
    ("groups", "m", "field", "reason"),
    [
        (5, 1, "groups", "cannot be split into 5 groups"),
        (4, 5, "groups_per_token", "exceeds groups 4"),
        (8, 1, "groups_per_token", "fewer than top_k = 4"),
    ],
)
def test_node_limit_problems_are_located(groups: int, m: int, field: str, reason: str) -> None:
    spec = RoutingSpec(node_limited=NodeLimitSpec(groups=groups, groups_per_token=m))
    problems = list(spec.problems(16, 4))
    assert problems and problems[0][0] == ("node_limited", field)
    assert reason in problems[0][1]
    with pytest.raises(SimulationError, match=reason):
        Router(spec, 16, 4, np.random.default_rng(0))


# --- DeepSeek-V3's update-speed schedule ------------------------------------------------------


def test_bias_updates_stop_at_the_stop_step() -> None:
    router = _router(
        experts=3, top_k=1, balancing="alf_lb", alf_update_rate=0.1, alf_update_stop_step=2
    )
    loads = np.array([3.0, 1.0, 2.0])
    for _ in range(4):  # training steps 0, 1 update; 2, 3 do not
        router.step(10)
        router.update(loads)
    assert router.bias == pytest.approx([-0.2, 0.2, 0.0])


# --- top-k as sets ----------------------------------------------------------------------------


def _as_sets(choices: np.ndarray) -> np.ndarray:
    return np.sort(choices, axis=1)


@pytest.mark.parametrize("experts", [8, 48, 106, 206])
@pytest.mark.parametrize("top_k", [1, 2, 3, 4, 6])
def test_top_k_sets_are_the_partitions_sets(experts: int, top_k: int) -> None:
    rng = np.random.default_rng(experts * 10 + top_k)
    score = rng.standard_normal((3000, experts), dtype=np.float32)
    # ties at and around the boundary: some rows hold few distinct values, some -inf, some NaN
    score[:200] = np.round(score[:200])
    score[200:260, : experts // 2] = -np.inf
    score[260:270, 1] = np.nan
    score[270:280] = 0.0
    kept = score.copy()
    fast = top_k_sets(score, top_k)
    assert np.array_equal(score, kept, equal_nan=True)  # the scores are left as they were
    assert fast.shape == (3000, top_k)
    assert np.array_equal(_as_sets(fast), _as_sets(top_k_columns(score, top_k)))


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"distribution": "zipf"},
        {"distribution": "dirichlet", "gate": "softmax"},
        {"balancing": "alf_lb", "alf_update_rate": 0.05},
        {"node_limited": {"groups": 8, "groups_per_token": 2}},
    ],
)
def test_a_router_routing_as_sets_picks_the_same_experts(spec: dict[str, Any]) -> None:
    plain = _router(seed=4, experts=128, top_k=2, **spec)
    sets = _router(seed=4, experts=128, top_k=2, **spec)
    for _ in range(3):
        a, b = plain.step(5000), sets.step(5000, as_sets=True)
        assert np.array_equal(_as_sets(a), _as_sets(b))
        plain.update(expert_loads(a, 128))
        sets.update(expert_loads(b, 128))
