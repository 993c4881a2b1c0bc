"""The router (gpusim.workloads.moe.routing) and the router_steps workload: selection statistics
against binomial closed forms, ALF-LB bias updates, capacity drops, traces, determinism.

Tolerances: with iid token noise, token t picks expert e with the same probability p_e for every
token, independently across tokens, so an expert's load over T tokens is Binomial(T, p_e)
(uniform popularity: p_e = k / E). Checks allow 5 standard deviations per expert (a union bound
over E experts leaves a failure chance below 1e-5, and the seeds are fixed anyway).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.errors import SimulationError
from gpusim.hardware.node import Node
from gpusim.spec.base import Dtype
from gpusim.spec.moe import MoELayerWorkload, RouterStepsWorkload, RoutingSpec
from gpusim.spec.scenario import Fidelity
from gpusim.workloads import router_steps
from gpusim.workloads.moe import routing
from gpusim.workloads.moe.layer import LayerGeometry
from gpusim.workloads.moe.routing import Router, expert_loads, maxvio, route_layer

# ALF's u = 1e-3 needs hundreds of steps to move a bias by the ~0.5 a strong skew needs (the
# bias is added to sigmoid affinities in [0, 1]); u = 0.05 gets there in ~20 steps, so the
# tests stay short. The dynamics are the same, only faster and noisier.
FAST_U = 0.05


def _router(seed: int = 0, experts: int = 32, top_k: int = 4, **spec: Any) -> Router:
    return Router(RoutingSpec(**spec), experts, top_k, np.random.default_rng(seed))


def _run(router: Router, tokens: int, steps: int) -> list[float]:
    """MaxVio_batch per step, updating the bias after every step."""
    out = []
    for _ in range(steps):
        loads = expert_loads(router.step(tokens), router.experts)
        out.append(maxvio(loads))
        router.update(loads)
    return out


def _binomial_ok(loads: np.ndarray, tokens: int, p: np.ndarray, sds: float = 5.0) -> None:
    expected = tokens * p
    sd = np.sqrt(tokens * p * (1 - p))
    assert np.all(np.abs(loads - expected) <= sds * sd + 1e-9), (loads, expected)


def _distinct_rows(choices: np.ndarray) -> bool:
    s = np.sort(choices, axis=1)
    return bool(np.all(np.diff(s, axis=1) > 0))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf)
    out: np.ndarray = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
    return out


# --- maxvio -----------------------------------------------------------------------------------


def test_maxvio_closed_forms() -> None:
    assert maxvio(np.array([5, 5, 5, 5])) == 0.0
    assert maxvio(np.array([2, 0, 0, 0])) == pytest.approx(3.0)  # (2 - 0.5) / 0.5
    assert maxvio(np.array([3, 1])) == pytest.approx(0.5)
    assert maxvio(np.zeros(8)) == 0.0


# --- uniform routing --------------------------------------------------------------------------


def test_uniform_loads_are_binomial_and_choices_distinct() -> None:
    tokens, experts, k = 20_000, 32, 4
    router = _router(seed=1, experts=experts, top_k=k)
    choices = router.step(tokens)
    assert choices.shape == (tokens, k)
    assert choices.min() >= 0 and choices.max() < experts
    assert _distinct_rows(choices)
    loads = expert_loads(choices, experts)
    assert loads.sum() == tokens * k
    p = np.full(experts, k / experts)
    _binomial_ok(loads, tokens, p)
    # The spread itself: sum (L - T p)^2 / (T p (1 - p)) has expectation E (each term has
    # expectation 1) and is roughly chi-square, sd about sqrt(2 E). Catches correlated sampling.
    stat = float(np.sum((loads - tokens * p) ** 2 / (tokens * p * (1 - p))))
    assert abs(stat - experts) < 6 * math.sqrt(2 * experts)


def test_top_k_equal_to_experts_picks_every_expert() -> None:
    choices = _router(experts=6, top_k=6).step(100)
    assert np.array_equal(np.sort(choices, axis=1), np.tile(np.arange(6), (100, 1)))


# --- popularity -------------------------------------------------------------------------------


def test_zipf_skew_raises_maxvio_far_above_uniform() -> None:
    kw: dict[str, Any] = {"experts": 64, "top_k": 6}
    uniform = maxvio(expert_loads(_router(seed=2, **kw).step(16384), 64))
    zipf_router = _router(seed=2, distribution="zipf", zipf_exponent=1.0, **kw)
    zipf_loads = expert_loads(zipf_router.step(16384), 64)
    assert uniform < 0.25  # binomial noise only: mean 1536, sd ~38 per expert
    assert maxvio(zipf_loads) > 2.0
    # the rank-1 expert (logit 0) is the most loaded; loads fall with popularity
    logits = zipf_router.popularity_logits
    assert int(np.argmax(zipf_loads)) == int(np.argmax(logits))
    assert np.isclose(logits.max(), 0.0)
    assert np.allclose(np.sort(-logits), np.log(np.arange(1, 65)))  # -1.0 * log(rank)
    assert np.corrcoef(logits, zipf_loads)[0, 1] > 0.5


def test_dirichlet_most_popular_at_logit_zero_and_concentration_sets_skew() -> None:
    skewed = _router(
        seed=4, experts=64, top_k=6, distribution="dirichlet", dirichlet_concentration=0.1
    )
    even = _router(
        seed=4, experts=64, top_k=6, distribution="dirichlet", dirichlet_concentration=100.0
    )
    for r in (skewed, even):
        assert r.popularity_logits.max() == pytest.approx(0.0)
        assert np.all(r.popularity_logits <= 0.0)
    assert maxvio(expert_loads(skewed.step(8192), 64)) > 3 * maxvio(
        expert_loads(even.step(8192), 64)
    )


def test_drift_is_a_random_walk_of_the_logits() -> None:
    experts, steps, drift = 1024, 100, 0.05
    router = _router(seed=5, experts=experts, top_k=1, drift_per_step=drift)
    assert np.all(router.popularity_logits == 0.0)
    for _ in range(steps):
        router.step(1)
    # each logit is a sum of `steps` N(0, drift) increments: N(0, drift^2 * steps)
    sd = float(np.std(router.popularity_logits))
    assert sd == pytest.approx(drift * math.sqrt(steps), rel=0.15)


def test_drift_moves_a_zipf_popularity_around_its_start() -> None:
    experts, steps, drift = 512, 64, 0.1
    static = _router(seed=5, experts=experts, top_k=2, distribution="zipf")
    moving = _router(seed=5, experts=experts, top_k=2, distribution="zipf", drift_per_step=drift)
    start = moving.popularity_logits
    assert np.array_equal(start, static.popularity_logits)  # same seeded ranks
    for _ in range(steps):
        moving.step(1)
    walk = moving.popularity_logits - start
    assert float(np.std(walk)) == pytest.approx(drift * math.sqrt(steps), rel=0.15)
    assert abs(float(np.mean(walk))) < 4 * drift * math.sqrt(steps / experts)


def test_zero_drift_is_exactly_the_static_case() -> None:
    kw: dict[str, Any] = {"distribution": "zipf", "balancing": "alf_lb", "alf_update_rate": 0.05}
    static = _router(seed=6, **kw)
    zero = _router(seed=6, drift_per_step=0.0, **kw)
    tiny = _router(seed=6, drift_per_step=1e-3, **kw)
    for step in range(4):
        a, b, c = static.step(3000), zero.step(3000), tiny.step(3000)
        assert np.array_equal(a, b)
        if step == 0:  # drift acts after a step's tokens: the first step is the static one
            assert np.array_equal(a, c)
        for r, ch in ((static, a), (zero, b), (tiny, c)):
            r.update(expert_loads(ch, 32))
    assert not np.array_equal(tiny.popularity_logits, static.popularity_logits)


def test_drift_draws_nothing_from_the_token_stream() -> None:
    # With drift on, the step's tokens come from the same block seeds: uniform logits and a
    # drift too small to reorder any affinity leave every choice as without drift.
    plain = _router(seed=7)
    drifting = _router(seed=7, drift_per_step=1e-12)
    for _ in range(3):
        assert np.array_equal(plain.step(2000), drifting.step(2000))


def test_drift_on_a_trace_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, [[1, 1, 1, 1]])
    spec = RoutingSpec(distribution="trace", trace_file=str(path), drift_per_step=0.1)
    with pytest.raises(SimulationError, match="drift_per_step"):
        Router(spec, 4, 1, np.random.default_rng(0))
    assert [loc for loc, _ in spec.problems(4, 1)] == [("drift_per_step",)]


# --- bias semantics and ALF-LB updates --------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("sign", [-0.1, 0.1, 0.0]),  # b += u sign(mean - c)
        ("proportional", [-0.05, 0.05, 0.0]),  # b += u (mean - c) / mean
        ("multiplicative", [0.9, 1.1, 1.0]),  # b *= 1 + u sign(mean - c)
    ],
)
def test_alf_update_closed_forms(rule: str, expected: list[float]) -> None:
    router = _router(experts=3, top_k=1, balancing="alf_lb", alf_update=rule, alf_update_rate=0.1)
    start = 1.0 if rule == "multiplicative" else 0.0
    assert np.all(router.bias == start)
    router.update(np.array([3, 1, 2]))  # mean 2: expert 0 over, 1 under, 2 balanced
    assert router.bias == pytest.approx(expected)


@pytest.mark.parametrize("balancing", ["none", "aux_loss"])
def test_update_leaves_the_bias_alone_without_alf(balancing: str) -> None:
    router = _router(experts=3, top_k=1, balancing=balancing)
    router.step(10)
    router.update(np.array([3, 1, 2]))
    assert np.all(router.bias == 0.0)


def test_huge_negative_bias_means_never_selected() -> None:
    router = _router(seed=6, experts=4, top_k=3, balancing="alf_lb", alf_update_rate=100.0)
    router.update(np.array([5, 1, 1, 1]))  # b = [-100, +100, +100, +100]
    choices = router.step(5000)
    assert not np.any(choices == 0)
    assert np.array_equal(np.sort(choices, axis=1), np.tile([1, 2, 3], (5000, 1)))


def test_bias_is_added_to_the_sigmoid_affinity_not_the_logit() -> None:
    # Two experts, top-1, logits 0, bias [+d, -d]: token picks expert 0 iff
    # sigmoid(z0) > sigmoid(z1) - 2 d, so P = E_z1[1 - Phi(logit(sigmoid(z1) - 2 d))] (and 1 where
    # sigmoid(z1) <= 2 d). Adding the bias to the logit instead would give Phi(sqrt(2) d) ~ 0.56.
    d, tokens = 0.1, 200_000
    router = _router(seed=7, experts=2, top_k=1, balancing="alf_lb", alf_update_rate=d)
    router.update(np.array([0, 2]))
    assert router.bias == pytest.approx([d, -d])
    picked0 = float(np.mean(router.step(tokens)[:, 0] == 0))
    z = np.linspace(-9, 9, 20001)
    w = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    s = 1 / (1 + np.exp(-z)) - 2 * d
    inner = np.where(s > 0, 1 - _normal_cdf(np.log(np.clip(s, 1e-300, None) / (1 - s))), 1.0)
    p = float(np.sum(inner * w) * (z[1] - z[0]))
    assert 0.7 < p < 0.8  # well away from the logit-bias answer
    assert picked0 == pytest.approx(p, abs=5 * math.sqrt(p * (1 - p) / tokens))


def test_negligible_bias_selects_like_no_bias() -> None:
    # The biased path (tanh form of the sigmoid) must rank like the unbiased one.
    biased = _router(seed=8, experts=32, top_k=4, balancing="alf_lb", alf_update_rate=1e-9)
    biased.update(np.arange(32))  # a non-flat but negligible bias
    plain = _router(seed=8, experts=32, top_k=4)
    a = np.sort(biased.step(10_000), axis=1)
    b = np.sort(plain.step(10_000), axis=1)
    assert float(np.mean(np.all(a == b, axis=1))) > 0.999


def _zipf_alf(seed: int, balancing: str, rule: str = "sign", rate: float = FAST_U) -> Router:
    return _router(
        seed=seed,
        experts=16,
        top_k=2,
        distribution="zipf",
        zipf_exponent=1.0,
        balancing=balancing,
        alf_update=rule,
        alf_update_rate=rate,
    )


@pytest.mark.parametrize("rule", ["sign", "proportional", "multiplicative"])
def test_alf_lb_lowers_maxvio_over_steps(rule: str) -> None:
    steps, tokens = 60, 4096
    alf = _zipf_alf(9, "alf_lb", rule)
    series = _run(alf, tokens, steps)
    baseline = _run(_zipf_alf(9, "none"), tokens, steps)
    last = float(np.mean(series[-steps // 5 :]))
    assert series[0] == baseline[0]  # same seed, bias still neutral at step 0
    assert last < 0.5 * series[0]
    assert last < float(np.mean(baseline[-steps // 5 :]))
    top = int(np.argmax(alf.popularity_logits))
    neutral = 1.0 if rule == "multiplicative" else 0.0
    assert alf.bias[top] < neutral  # the most popular expert is pushed down


def test_multiplicative_rate_must_keep_the_bias_positive() -> None:
    with pytest.raises(SimulationError, match="alf_update_rate < 1"):
        _router(balancing="alf_lb", alf_update="multiplicative", alf_update_rate=1.0)


def test_top_k_above_experts_is_an_error() -> None:
    with pytest.raises(SimulationError, match="top_k"):
        _router(experts=4, top_k=5)


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_same_choices_different_seed_different() -> None:
    kw: dict[str, Any] = {"distribution": "zipf", "balancing": "alf_lb", "alf_update_rate": FAST_U}
    a, b, c = _router(seed=10, **kw), _router(seed=10, **kw), _router(seed=11, **kw)
    for _ in range(3):
        ca, cb, cc = a.step(2000), b.step(2000), c.step(2000)
        assert np.array_equal(ca, cb)
        assert not np.array_equal(ca, cc)
        for r, ch in ((a, ca), (b, cb), (c, cc)):
            r.update(expert_loads(ch, 32))


def test_results_do_not_depend_on_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = 3 * routing.BLOCK_TOKENS + 17  # several blocks, a partial last one
    monkeypatch.setattr(routing, "_MAX_THREADS", 1)
    serial = _router(seed=12, distribution="zipf").step(tokens)
    monkeypatch.setattr(routing, "_MAX_THREADS", 4)
    threaded = _router(seed=12, distribution="zipf").step(tokens)
    assert serial.shape == (tokens, 4)
    assert np.array_equal(serial, threaded)


# --- route_layer: capacity --------------------------------------------------------------------


def _layer(cf: float | None, **routing_kw: Any) -> MoELayerWorkload:
    return MoELayerWorkload(
        tokens_per_gpu=1000,
        hidden=64,
        intermediate=128,
        experts=16,
        top_k=2,
        capacity_factor=cf,
        routing=RoutingSpec(distribution="zipf", **routing_kw),
    )


def test_capacity_drops_exactly_the_excess_demand() -> None:
    gpus = 4
    capped_wl = _layer(0.5)
    capacity = LayerGeometry.of(capped_wl, [f"g{i}" for i in range(gpus)], Dtype.fp16).capacity()
    assert capacity == math.ceil(math.ceil(1000 / 16) * 0.5 * 2) == 63
    demand = route_layer(_layer(None), gpus, np.random.default_rng(13)).counts
    capped = route_layer(capped_wl, gpus, np.random.default_rng(13))
    assert demand.shape == capped.counts.shape == (gpus, 16)
    assert np.all(demand.sum(axis=1) == 1000 * 2)  # each source sends its T tokens x k
    assert demand.max() > capacity  # the test exercises dropping
    assert capped.counts.max() == capacity
    assert np.array_equal(capped.counts, np.minimum(demand, capacity))
    assert capped.dropped == int((demand - capped.counts).sum()) > 0


def test_dropless_drops_nothing_and_maxvio_is_before_dropping() -> None:
    gpus = 4
    dropless = route_layer(_layer(None), gpus, np.random.default_rng(14))
    capped = route_layer(_layer(0.5), gpus, np.random.default_rng(14))
    assert dropless.dropped == 0
    assert int(dropless.counts.sum()) == 1000 * gpus * 2
    assert (
        capped.maxvio_batch == dropless.maxvio_batch == pytest.approx(maxvio(dropless.expert_loads))
    )


def test_route_layer_tokens_belong_to_source_gpus_in_order() -> None:
    # route_layer routes the global batch with one Router; token t comes from GPU t // T.
    wl = _layer(None, warmup_steps=2, balancing="alf_lb", alf_update_rate=FAST_U)
    gpus, t = 4, wl.tokens_per_gpu
    batch = route_layer(wl, gpus, np.random.default_rng(15))
    router = Router(wl.routing, wl.experts, wl.top_k, np.random.default_rng(15))
    for _ in range(2):
        router.update(expert_loads(router.step(gpus * t), wl.experts))
    choices = router.step(gpus * t)
    for g in range(gpus):
        assert np.array_equal(batch.counts[g], expert_loads(choices[g * t : (g + 1) * t], 16))


@pytest.mark.parametrize("experts", [128, 206])
@pytest.mark.parametrize("routing_kw", [{}, {"warmup_steps": 2, "balancing": "alf_lb"}])
def test_route_layer_counts_what_the_ordered_router_picks(
    experts: int, routing_kw: dict[str, Any]
) -> None:
    # route_layer takes each token's experts as sets (top_k_sets): the counts of the router's
    # ordered choices, to the token
    wl = _layer(None, **routing_kw).model_copy(update={"experts": experts})
    gpus, t = 2, wl.tokens_per_gpu
    batch = route_layer(wl, gpus, np.random.default_rng(16))
    router = Router(wl.routing, wl.experts, wl.top_k, np.random.default_rng(16))
    for _ in range(wl.routing.warmup_steps):
        router.update(expert_loads(router.step(gpus * t), wl.experts))
    choices = router.step(gpus * t)
    for g in range(gpus):
        ordered = expert_loads(choices[g * t : (g + 1) * t], experts)
        assert np.array_equal(batch.counts[g], ordered)


def test_warmup_steps_let_alf_lb_balance_before_the_measured_step() -> None:
    kw: dict[str, Any] = {"balancing": "alf_lb", "alf_update_rate": FAST_U}
    cold = route_layer(_layer(None, warmup_steps=0, **kw), 4, np.random.default_rng(16))
    warm = route_layer(_layer(None, warmup_steps=40, **kw), 4, np.random.default_rng(16))
    assert warm.maxvio_batch < 0.5 * cold.maxvio_batch


# --- trace distribution -----------------------------------------------------------------------


def _write(tmp_path: Path, data: Any, name: str = "trace.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_trace_loads_follow_counts(tmp_path: Path) -> None:
    counts0 = [8, 4, 2, 2, 1, 1, 1, 1]  # k = 2: inclusion probability 2 c / 20 (all <= 1)
    counts1 = [10, 1, 1, 1, 1, 1, 1, 0]  # 2 * 10 / 16 > 1: capped at 1, the rest shares 1
    _write(tmp_path, [counts0, counts1])
    spec = RoutingSpec(distribution="trace", trace_file="trace.json")
    router = Router(spec, 8, 2, np.random.default_rng(17), base_dir=tmp_path)
    tokens = 20_000
    for step, p in enumerate(
        [2 * np.array(counts0) / 20, np.array([1.0] + [1 / 6] * 6 + [0.0])] * 2
    ):
        choices = router.step(tokens)
        assert _distinct_rows(choices), step
        loads = expert_loads(choices, 8)
        _binomial_ok(loads, tokens, p)
        if step % 2 == 1:  # the capped expert is in every token; the zero-count one in none
            assert loads[0] == tokens and loads[7] == 0


def test_trace_with_fewer_nonzero_experts_than_top_k_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, [[5, 0, 0, 0]])
    spec = RoutingSpec(distribution="trace", trace_file=str(path))
    with pytest.raises(SimulationError, match="fewer than top_k"):
        Router(spec, 4, 2, np.random.default_rng(0))


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        {"steps": [[1, 2]]},
        [],
        [[1, 2, 3]],  # 3 counts for 4 experts
        [[1, 2, -3, 4]],
        [[1, "x", 3, 4]],
        [[0, 0, 0, 0]],
    ],
)
def test_malformed_trace_names_the_file(tmp_path: Path, content: Any) -> None:
    path = _write(tmp_path, content)
    spec = RoutingSpec(distribution="trace", trace_file=str(path))
    with pytest.raises(SimulationError, match=re.escape(str(path))):
        Router(spec, 4, 1, np.random.default_rng(0))


def test_missing_trace_names_the_file(tmp_path: Path) -> None:
    spec = RoutingSpec(distribution="trace", trace_file="nowhere.json")
    with pytest.raises(SimulationError, match=re.escape(str(tmp_path / "nowhere.json"))):
        Router(spec, 4, 1, np.random.default_rng(0), base_dir=tmp_path)


# --- router_steps workload --------------------------------------------------------------------


def _steps_wl(balancing: str = "alf_lb", **kw: Any) -> RouterStepsWorkload:
    fields: dict[str, Any] = {
        "tokens_per_step": 4096,
        "experts": 16,
        "top_k": 2,
        "ep_ranks": 4,
        "steps": 50,
        "maxvio_batch_window_steps": 5,
        "heldout_tokens": 65536,
        "sequence_tokens": 1024,
        "computation_batch_sequences": [1, 4, 16],
        "routing": RoutingSpec(distribution="zipf", balancing=balancing, alf_update_rate=FAST_U),
    }
    fields.update(kw)
    return RouterStepsWorkload(**fields)


def test_router_steps_des_equals_analytic_and_metrics_follow_series() -> None:
    wl = _steps_wl()
    topology, profile = make_star_topology(1), make_profile()
    des = router_steps.des(Node(topology, profile, Simulation()), wl, seed=3)
    ana = router_steps.analytic(topology, profile, wl, seed=3)
    assert des.metrics == ana.metrics
    assert des.series == ana.series
    assert des.makespan_s == 0.0
    mv, mr = des.series["maxvio_batch"], des.series["maxvio_rank"]
    assert len(mv) == len(mr) == 50
    m = des.metrics
    assert set(m) == router_steps.metric_names(wl, topology, Fidelity.des)
    assert m["maxvio_first_step"] == mv[0]
    assert m["maxvio_last_step"] == mv[-1]
    assert m["maxvio_batch"] == pytest.approx(np.mean(mv[-5:]))  # the 5-step window
    assert m["maxvio_rank_batch"] == pytest.approx(np.mean(mr[-5:]))
    assert m["straggler_factor"] == pytest.approx(1 + np.mean(mr[-5:]))
    other = router_steps.analytic(topology, profile, wl, seed=4)
    assert other.series != ana.series
    # the seed is the only source of randomness: a second node at the same seed agrees
    again = router_steps.des(Node(topology, profile, Simulation()), wl, seed=3)
    assert again.series == des.series
    assert again.metrics == des.metrics


def test_router_steps_rank_loads_and_alf_removes_the_straggler() -> None:
    topology, profile = make_star_topology(1), make_profile()
    alf = router_steps.analytic(topology, profile, _steps_wl("alf_lb"), seed=5).metrics
    none = router_steps.analytic(topology, profile, _steps_wl("none"), seed=5).metrics
    assert none["straggler_factor"] > 1.5
    assert alf["straggler_factor"] < none["straggler_factor"] - 0.5
    assert alf["maxvio_batch"] < 0.5 * alf["maxvio_first_step"]
    assert alf["maxvio_global"] < 0.5 * none["maxvio_global"]
    # one rank holding every expert has no imbalance to speak of
    single = router_steps.analytic(topology, profile, _steps_wl("none", ep_ranks=1), seed=5)
    assert single.metrics["maxvio_rank_batch"] == 0.0


def test_router_steps_needs_experts_divisible_by_ranks() -> None:
    with pytest.raises(SimulationError, match="evenly"):
        router_steps.analytic(
            make_star_topology(1), make_profile(), _steps_wl(experts=10, ep_ranks=4), seed=0
        )


def test_relative_trace_file_is_found_beside_the_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpusim.errors import SpecError
    from gpusim.simulate import simulate
    from gpusim.spec.loading import load_scenario

    shipped = json.loads(
        (Path(__file__).parents[1] / "workloads" / "router_alf_lb.json").read_text("utf-8")
    )
    shipped["workload"].update(experts=8, top_k=2, steps=3, tokens_per_step=1000)
    shipped["workload"]["routing"] = {"distribution": "trace", "trace_file": "counts.json"}
    folder = tmp_path / "scenarios"
    folder.mkdir()
    _write(folder, [[8, 4, 2, 2, 1, 1, 1, 1]] * 3, "counts.json")
    scenario = _write(folder, shipped, "trace_router.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = simulate(load_scenario(Path("..") / "scenarios" / "trace_router.json"))
    assert len(result.series["maxvio_batch"]) == 3
    (folder / "counts.json").unlink()
    with pytest.raises(SpecError, match=r"\$\.workload\.routing\.trace_file: routing trace"):
        load_scenario(scenario)
