"""ALF-LB as the paper measures it (issue 16; docs/alf_lb.md): the balance metrics' closed forms,
held-out routing by a frozen router, the sign rule's convergence rate, and the aux-loss baseline
as a dynamic.

Closed forms used:

- two experts, top-1, logits (0, -a), unit noise: token t picks expert 0 iff
  s0 - s1 > D = b1 - b0 with s = sigmoid(logit + z). The loads balance at D* = median(s0 - s1);
  the sign rule widens D by 2u per step while expert 0 is overloaded, so the first step routed
  with expert 0 no longer overloaded is ceil(D* / 2u) (the theory's "bias spread over 2u");
- uniform popularity, no balancing: an expert's load over B tokens is Binomial(B, k/E), so
  MaxVio over a batch of B tokens scales as 1 / sqrt(B);
- the switch loss's gradient for the sigmoid gate: dL/dl_j = alpha f_j mean_t s_j (1 - s_j),
  f_j = E load_j / sum(loads).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_profile, make_star_topology

from gpusim.errors import SimulationError, SpecError
from gpusim.spec.loading import load_scenario
from gpusim.spec.moe import RouterStepsWorkload, RoutingSpec
from gpusim.workloads import router_steps
from gpusim.workloads.moe.aux_loss import load_fractions, sigmoid_balance_gradient
from gpusim.workloads.moe.balance_metrics import (
    computation_batch_maxvio,
    expert_loads,
    maxvio,
    window_mean,
)
from gpusim.workloads.moe.routing import Router

ROOT = Path(__file__).resolve().parents[1]


def _router(seed: int = 0, experts: int = 32, top_k: int = 4, **spec: Any) -> Router:
    return Router(RoutingSpec(**spec), experts, top_k, np.random.default_rng(seed))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


# --- the metrics' closed forms ----------------------------------------------------------------


def test_computation_batch_maxvio_of_hand_built_batches() -> None:
    # 4 experts, top-1, batches of 4 tokens: batch 0 loads (4, 0, 0, 0) -> MaxVio 3; batch 1
    # loads (1, 1, 1, 1) -> 0; the trailing 2 tokens are not a whole batch and are left out.
    choices = np.array([[0], [0], [0], [0], [0], [1], [2], [3], [0], [0]])
    assert computation_batch_maxvio(choices, 4, 4) == pytest.approx((3.0 + 0.0) / 2)
    # one batch of all 8: loads (5, 1, 1, 1), mean 2 -> (5 - 2) / 2
    assert computation_batch_maxvio(choices, 4, 8) == pytest.approx(1.5)
    assert computation_batch_maxvio(choices[:8], 4, 8) == pytest.approx(
        maxvio(np.array([5, 1, 1, 1]))
    )


def test_computation_batch_needs_a_whole_batch() -> None:
    with pytest.raises(SimulationError, match="at least that many tokens"):
        computation_batch_maxvio(np.zeros((3, 1), dtype=np.int64), 2, 4)
    with pytest.raises(SimulationError, match="at least 1"):
        computation_batch_maxvio(np.zeros((3, 1), dtype=np.int64), 2, 0)


def test_window_mean_takes_the_last_steps() -> None:
    assert window_mean([9.0, 1.0, 2.0, 3.0], 3) == pytest.approx(2.0)
    assert window_mean([4.0, 2.0], 100) == pytest.approx(3.0)  # capped at the series
    with pytest.raises(SimulationError):
        window_mean([], 3)
    with pytest.raises(SimulationError):
        window_mean([1.0], 0)


# --- held-out routing by the frozen router ----------------------------------------------------


def test_frozen_step_changes_nothing() -> None:
    router = _router(seed=1, distribution="zipf", drift_per_step=0.3, balancing="alf_lb")
    router.update(expert_loads(router.step(2000), 32))
    bias, logits, steps = router.bias, router.popularity_logits, router.steps_taken
    router.step(5000, frozen=True)
    assert np.array_equal(router.bias, bias)
    assert np.array_equal(router.popularity_logits, logits)  # no drift either
    assert router.steps_taken == steps


def test_frozen_bias_routes_fresh_tokens_with_the_expected_loads() -> None:
    # u = 100 and loads (5, 1, 1, 1): b = (-100, +100, +100, +100). Frozen, expert 0 is never
    # chosen and each fresh token picks 2 of the other 3 uniformly: load 2T/3 each.
    router = _router(seed=2, experts=4, top_k=2, balancing="alf_lb", alf_update_rate=100.0)
    router.update(np.array([5, 1, 1, 1]))
    tokens = 30_000
    loads = expert_loads(router.step(tokens, frozen=True), 4)
    assert loads[0] == 0
    p = 2.0 / 3.0
    sd = math.sqrt(tokens * p * (1 - p))
    assert np.all(np.abs(loads[1:] - tokens * p) <= 5 * sd)
    assert np.array_equal(router.bias, [-100.0, 100.0, 100.0, 100.0])


def _steps(**kw: Any) -> RouterStepsWorkload:
    fields: dict[str, Any] = {
        "tokens_per_step": 2048,
        "experts": 8,
        "top_k": 2,
        "ep_ranks": 2,
        "steps": 20,
        "maxvio_batch_window_steps": 10,
        "heldout_tokens": 1 << 16,
        "sequence_tokens": 256,
        "computation_batch_sequences": [1, 16],
    }
    fields.update(kw)
    return RouterStepsWorkload(**fields)


def _metrics(wl: RouterStepsWorkload, seed: int = 0) -> dict[str, float]:
    return router_steps.analytic(make_star_topology(1), make_profile(), wl, seed=seed).metrics


def test_global_maxvio_of_an_exactly_balanced_router_is_zero() -> None:
    # top_k = experts: every token takes every expert, every load is exactly the mean
    m = _metrics(_steps(top_k=8, routing=RoutingSpec(distribution="zipf", balancing="alf_lb")))
    assert m["maxvio_global"] == 0.0
    assert m["maxvio_computation_batch_1seq"] == 0.0
    assert m["maxvio_batch"] == 0.0


def test_computation_batch_maxvio_falls_as_one_over_sqrt_batch() -> None:
    # uniform popularity, no balancing: binomial loads, so 16x the tokens gives 1/4 the MaxVio
    m = _metrics(_steps())
    small, large = m["maxvio_computation_batch_1seq"], m["maxvio_computation_batch_16seq"]
    assert small / large == pytest.approx(4.0, rel=0.3)
    # the global load (65,536 tokens) is one batch of 16 sequences of 256 tokens... x 16
    assert m["maxvio_global"] < large


def test_global_maxvio_is_measured_after_training_and_a_noisy_bias_harms_it() -> None:
    # ALF-LB from a strong skew: the start-up steps are far out of balance, but the frozen
    # router's held-out loads are close to balance; a larger u leaves the final bias further
    # from the balance point (it oscillates by about u), which the held-out loads show.
    def run(u: float) -> dict[str, float]:
        routing = RoutingSpec(distribution="zipf", balancing="alf_lb", alf_update_rate=u)
        return _metrics(_steps(steps=120, tokens_per_step=8192, routing=routing))

    fine, coarse = run(0.01), run(0.05)
    assert fine["maxvio_first_step"] > 1.0
    assert fine["maxvio_global"] < 0.1 * fine["maxvio_first_step"]
    assert fine["maxvio_global"] < coarse["maxvio_global"]


def test_layers_are_independent_routers_averaged() -> None:
    base = _steps(
        routing=RoutingSpec(distribution="zipf", balancing="alf_lb", alf_update_rate=0.05)
    )
    two = base.model_copy(update={"layers": 2})
    rng = np.random.default_rng(9)
    first, second = router_steps.run_layer(base, rng), router_steps.run_layer(base, rng)
    m = router_steps.run_router_steps(two, np.random.default_rng(9)).metrics
    assert m["maxvio_global"] == pytest.approx((first.maxvio_global + second.maxvio_global) / 2)
    assert m["maxvio_first_step"] == pytest.approx(
        (first.maxvio_batch[0] + second.maxvio_batch[0]) / 2
    )
    assert first.maxvio_global != second.maxvio_global  # each layer its own popularity


def test_router_steps_check_locates_an_oversized_computation_batch() -> None:
    wl = _steps(heldout_tokens=1000, computation_batch_sequences=[1, 4, 1])
    problems = list(wl.check(make_star_topology(1)))
    assert (("computation_batch_sequences", 1), problems[0][1]) in problems
    assert "exceeds heldout_tokens 1000" in problems[0][1]
    assert (("computation_batch_sequences",), "sizes must be distinct") in problems


# --- the sign rule's convergence rate and steady state ----------------------------------------


def _balance_point(a: float, samples: int = 2_000_000) -> float:
    """D* = median(sigmoid(z0) - sigmoid(z1 - a)), from its own large sample."""
    gen = np.random.default_rng(123)
    z = gen.standard_normal((samples, 2))
    return float(np.median(_sigmoid(z[:, 0]) - _sigmoid(z[:, 1] - a)))


def _two_expert_run(u: float, steps: int, tokens: int, a: float = 1.0) -> tuple[list[int], Router]:
    """Per step, expert 0's load, for a two-expert top-1 router with logits (0, -a)."""
    router = _router(seed=3, experts=2, top_k=1, balancing="alf_lb", alf_update_rate=u)
    router._logits = np.array([0.0, -a])  # a hand-set popularity (no distribution gives it)
    loads0 = []
    for _ in range(steps):
        loads = expert_loads(router.step(tokens), 2)
        loads0.append(int(loads[0]))
        router.update(loads)
    return loads0, router


def test_sign_rule_converges_in_the_bias_spread_over_two_u_steps() -> None:
    u, tokens = 0.01, 100_000
    d_star = _balance_point(1.0)
    expected = math.ceil(d_star / (2 * u))
    loads0, router = _two_expert_run(u, expected + 10, tokens)
    first_balanced = next(i for i, c in enumerate(loads0) if c <= tokens // 2)
    assert abs(first_balanced - expected) <= 1
    # the bias then sits within a step of the balance point: b1 - b0 = D*
    spread = float(router.bias[1] - router.bias[0])
    assert abs(spread - d_star) <= 2 * u + 1e-12


def test_sign_rule_steady_state_grows_with_u() -> None:
    tokens = 100_000
    steady = {}
    for u in (0.005, 0.02):
        steps = math.ceil(_balance_point(1.0) / (2 * u)) + 60
        loads0, _ = _two_expert_run(u, steps, tokens)
        tail = np.array(loads0[-50:], dtype=np.float64)
        steady[u] = float(np.mean(np.abs(2 * tail / tokens - 1)))  # MaxVio of (c0, T - c0)
    # the bias oscillates by about 2u around D*, so the residual grows about linearly with u
    assert steady[0.02] > 2.0 * steady[0.005]


# --- the aux-loss baseline as a dynamic -------------------------------------------------------


def test_load_fractions_and_gradient_closed_forms() -> None:
    loads = np.array([3.0, 1.0, 2.0])  # sum 6 over 3 experts: f = 3 c / 6
    assert load_fractions(loads) == pytest.approx([1.5, 0.5, 1.0])
    assert np.all(load_fractions(np.zeros(3)) == 0.0)
    slope = np.array([0.2, 0.1, 0.25])
    grad = sigmoid_balance_gradient(loads, slope, 0.01)
    assert grad == pytest.approx(0.01 * np.array([1.5, 0.5, 1.0]) * slope)
    with pytest.raises(SimulationError):
        sigmoid_balance_gradient(loads, slope[:2], 0.01)


def test_aux_loss_step_moves_logits_by_the_gradient() -> None:
    # uniform logits, unit noise: mean_t s (1 - s) -> E[s'(z)] (quadrature), the same for all
    alpha, lr, tokens = 0.2, 3.0, 200_000
    router = _router(
        seed=4,
        experts=4,
        top_k=1,
        balancing="aux_loss",
        aux_loss_alpha=alpha,
        aux_loss_learning_rate=lr,
    )
    router.step(tokens)
    loads = np.array([40.0, 20.0, 20.0, 20.0])  # f = (1.6, 0.8, 0.8, 0.8)
    router.update(loads)
    z = np.linspace(-10, 10, 40001)
    s = _sigmoid(z)
    slope = float(
        np.sum(s * (1 - s) * np.exp(-0.5 * z**2)) * (z[1] - z[0]) / math.sqrt(2 * math.pi)
    )
    expected = -lr * alpha * np.array([1.6, 0.8, 0.8, 0.8]) * slope
    assert router.aux_loss_offset == pytest.approx(expected, rel=5e-3)
    assert router.popularity_logits == pytest.approx(expected, rel=5e-3)  # logits started at 0
    assert np.all(router.bias == 0.0)  # the bias plays no part


def test_aux_loss_with_alpha_zero_is_no_balancing() -> None:
    kw: dict[str, Any] = {"distribution": "zipf", "drift_per_step": 0.05}
    aux = _router(seed=5, balancing="aux_loss", aux_loss_alpha=0.0, **kw)
    none = _router(seed=5, balancing="none", **kw)
    for _ in range(5):
        a, b = aux.step(3000), none.step(3000)
        assert np.array_equal(a, b)
        aux.update(expert_loads(a, 32))
        none.update(expert_loads(b, 32))
    assert np.all(aux.aux_loss_offset == 0.0)
    assert np.array_equal(aux.popularity_logits, none.popularity_logits)


def test_aux_loss_balances_and_larger_alpha_balances_faster() -> None:
    def run(alpha: float) -> float:
        router = _router(
            seed=6,
            experts=16,
            top_k=2,
            distribution="zipf",
            balancing="aux_loss",
            aux_loss_alpha=alpha,
        )
        series = []
        for _ in range(40):
            loads = expert_loads(router.step(4096), 16)
            series.append(maxvio(loads))
            router.update(loads)
        top = int(np.argmax(router.popularity_logits - router.aux_loss_offset))
        assert router.aux_loss_offset[top] == router.aux_loss_offset.min()  # pushed down most
        return float(np.mean(series[-5:]))

    none, weak, strong = run(0.0), run(0.5), run(5.0)
    assert strong < weak < none


def test_aux_loss_update_before_a_step_is_an_error() -> None:
    router = _router(balancing="aux_loss")
    with pytest.raises(SimulationError, match="before any training step"):
        router.update(np.ones(32))


def test_aux_loss_on_a_trace_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps([[1, 1, 1, 1]]), encoding="utf-8")
    spec = RoutingSpec(distribution="trace", trace_file=str(path), balancing="aux_loss")
    with pytest.raises(SimulationError, match="aux_loss"):
        Router(spec, 4, 1, np.random.default_rng(0))
    assert [loc for loc, _ in spec.problems(4, 1)] == [("balancing",)]


# --- removed knobs: one-line errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("routing", "reason"),
    [
        (
            {"balancing": "aux_loss", "aux_loss_residual_skew": 0.5},
            "aux_loss_residual_skew was removed",
        ),
        ({"distribution": "drift"}, "distribution 'drift' was removed"),
    ],
)
def test_removed_routing_knobs_fail_at_load_with_path_and_reason(
    tmp_path: Path, routing: dict[str, Any], reason: str
) -> None:
    doc = json.loads((ROOT / "workloads" / "router_alf_lb.json").read_text(encoding="utf-8"))
    doc["workload"]["routing"] = routing
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    message = str(info.value)
    assert str(path) in message
    assert "$.workload.routing" in message
    assert reason in message


# --- the balance-loss gradients against finite differences ------------------------------------


def _fd_gradient(loss: Any, experts: int, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros(experts)
    for j in range(experts):
        step = np.zeros(experts)
        step[j] = h
        grad[j] = (loss(step) - loss(-step)) / (2 * h)
    return grad


def _tokens(seed: int, tokens: int = 64, experts: int = 5) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    x = gen.standard_normal((tokens, experts)) + np.linspace(0, 1, experts)
    choices = np.argsort(-x, axis=1)[:, :2]
    return x, choices


def test_sigmoid_gradient_is_the_derivative_of_the_switch_loss() -> None:
    x, choices = _tokens(1)
    loads = expert_loads(choices, 5)
    f = load_fractions(loads)
    alpha = 0.3

    def loss(d: np.ndarray) -> float:
        return float(alpha * np.sum(f * _sigmoid(x + d).mean(axis=0)))

    s = _sigmoid(x)
    got = sigmoid_balance_gradient(loads, (s * (1 - s)).mean(axis=0), alpha)
    assert got == pytest.approx(_fd_gradient(loss, 5), rel=1e-6, abs=1e-12)


def test_softmax_gradient_is_the_derivative_of_the_switch_loss() -> None:
    from gpusim.workloads.moe.aux_loss import softmax_balance_gradient

    x, choices = _tokens(2)
    loads = expert_loads(choices, 5)
    f = load_fractions(loads)
    alpha = 0.3

    def soft(v: np.ndarray) -> np.ndarray:
        e = np.exp(v - v.max(axis=1, keepdims=True))
        out: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return out

    def loss(d: np.ndarray) -> float:
        return float(alpha * np.sum(f * soft(x + d).mean(axis=0)))

    p = soft(x)
    got = softmax_balance_gradient(loads, p.mean(axis=0), p.T @ p / len(p), alpha)
    assert got == pytest.approx(_fd_gradient(loss, 5), rel=1e-6, abs=1e-12)


def test_sequence_gradient_is_the_derivative_of_deepseek_v3s_loss() -> None:
    from gpusim.workloads.moe.aux_loss import sequence_balance_gradient

    x, choices = _tokens(3, tokens=50)
    alpha, seq = 1e-1, 16  # sequences of 16, 16, 16 and 2 tokens

    def loss(d: np.ndarray) -> float:
        total, n = 0.0, 0
        for start in range(0, 50, seq):
            c, v = choices[start : start + seq], x[start : start + seq] + d
            f = load_fractions(expert_loads(c, 5))
            s = _sigmoid(v)
            total += float(np.sum(f * (s / s.sum(axis=1, keepdims=True)).mean(axis=0)))
            n += 1
        return alpha * total / n

    got = sequence_balance_gradient(choices, _sigmoid(x), seq, alpha)
    assert got == pytest.approx(_fd_gradient(loss, 5), rel=1e-5, abs=1e-12)
    with pytest.raises(SimulationError):
        sequence_balance_gradient(choices[:3], _sigmoid(x), seq, alpha)
    with pytest.raises(SimulationError):
        sequence_balance_gradient(choices, _sigmoid(x), 0, alpha)


def test_sequence_loss_moves_the_logits_beside_alf_lb() -> None:
    kw: dict[str, Any] = {"distribution": "zipf", "balancing": "alf_lb", "alf_update_rate": 0.01}
    seq = _router(seed=8, sequence_aux_alpha=0.5, sequence_aux_tokens=512, **kw)
    plain = _router(seed=8, **kw)
    a, b = seq.step(4096), plain.step(4096)
    assert np.array_equal(a, b)  # the loss acts after the step
    seq.update(expert_loads(a, 32))
    plain.update(expert_loads(b, 32))
    assert np.array_equal(seq.bias, plain.bias)  # the bias rule is unchanged
    offset = seq.aux_loss_offset
    assert np.all(plain.aux_loss_offset == 0.0)
    top = int(np.argmax(seq.popularity_logits - offset))
    assert offset[top] < np.median(offset)  # the most popular expert is pushed down
    with pytest.raises(SimulationError, match="sigmoid"):
        _router(gate="softmax", sequence_aux_alpha=1e-4)
    spec = RoutingSpec(gate="softmax", sequence_aux_alpha=1e-4)
    assert [loc for loc, _ in spec.problems(32, 4)] == [("sequence_aux_alpha",)]


def test_aux_loss_warm_up_balances_a_routed_layer() -> None:
    from gpusim.spec.moe import MoELayerWorkload
    from gpusim.workloads.moe.routing import route_layer

    def layer(alpha: float) -> float:
        routing = RoutingSpec(
            distribution="zipf", balancing="aux_loss", aux_loss_alpha=alpha, warmup_steps=30
        )
        wl = MoELayerWorkload(
            tokens_per_gpu=1000, hidden=64, intermediate=64, experts=16, routing=routing
        )
        return route_layer(wl, 4, np.random.default_rng(11)).maxvio_batch

    assert layer(5.0) < 0.5 * layer(0.0)
