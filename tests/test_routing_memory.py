"""Routing memory (issue 17): the router holds (tokens, top_k) choices, never a (tokens, experts)
array. Per-token affinities exist only inside one block of :data:`BLOCK_TOKENS` tokens at a time
(per routing thread), so the peak grows with experts by at most one block's affinities, and with
tokens x top_k linearly. Peaks are tracemalloc's, which numpy reports its arrays to.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import gpusim.workloads.moe.routing as routing
from gpusim.spec.moe import MoELayerWorkload, RoutingSpec
from gpusim.workloads.moe.aux_loss import SequenceBalanceGradient, sequence_balance_gradient
from gpusim.workloads.moe.balance_metrics import expert_loads
from gpusim.workloads.moe.routing import BLOCK_TOKENS, Router, route_layer

BLOCK_BYTES_PER_EXPERT = BLOCK_TOKENS * 8
"""One (token, expert) array of a block at 8 bytes an entry, per expert."""
BLOCK_ARRAYS = 4
"""How many such arrays a block may hold at once: its float32 scores and what top-k selection
derives from them (a working copy, or int64 partition indices), plus on the biased and
gated paths the affinities, the biased selection scores and a group mask (measured: 1 on the
unbiased path, at most about 3.1 with node-limited groups)."""
SLACK_BYTES = 2_000_000
"""Room for what grows with experts but not tokens (bias, logits, per-expert sums)."""


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # one block in flight: with T routing threads up to T blocks' arrays are alive at once
    monkeypatch.setattr(routing, "_MAX_THREADS", 1)
    yield


def routing_peak_bytes(tokens: int, experts: int, top_k: int, **spec: Any) -> int:
    """Peak traced bytes of one training step of ``tokens`` over ``experts`` (counted, as
    :func:`route_layer` does), above what was allocated before the step; a first step and its
    bias update before (so a balancing router's bias is no longer uniform)."""
    import tracemalloc

    router = Router(RoutingSpec(**spec), experts, top_k, np.random.default_rng(0))
    router.update(expert_loads(router.step(4096, as_sets=True), experts))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        choices = router.step(tokens, as_sets=True)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert choices.shape == (tokens, top_k)
    return peak


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"distribution": "zipf", "balancing": "alf_lb"},
        {"gate": "softmax", "balancing": "alf_lb"},
        {"balancing": "alf_lb", "node_limited": {"groups": 8, "groups_per_token": 2}},
        {"balancing": "aux_loss"},
        {"sequence_aux_alpha": 1e-3, "sequence_aux_tokens": 1000},
    ],
    ids=["uniform", "zipf-alf_lb", "softmax", "node-limited", "aux_loss", "sequence_aux"],
)
def test_routing_peak_grows_with_experts_by_one_block_at_most(spec: dict[str, Any]) -> None:
    tokens, top_k, few, many = 16 * BLOCK_TOKENS, 2, 8, 256
    grown = routing_peak_bytes(tokens, many, top_k, **spec) - routing_peak_bytes(
        tokens, few, top_k, **spec
    )
    bound = BLOCK_ARRAYS * BLOCK_BYTES_PER_EXPERT * (many - few) + SLACK_BYTES
    # one float32 (tokens, experts) array alone is twice the bound: holding one fails
    assert tokens * (many - few) * 4 > 1.9 * bound
    assert grown <= bound, f"{grown / 1e6:.1f} MB more with {many} experts (bound {bound / 1e6})"


def test_routing_peak_is_linear_in_tokens_times_top_k() -> None:
    experts = 8  # the block's per-expert part (0.5 MB) is small beside the choices

    def per_choice_bytes(base: tuple[int, int], more: tuple[int, int]) -> float:
        grown = routing_peak_bytes(*more[:1], experts, more[1]) - routing_peak_bytes(
            *base[:1], experts, base[1]
        )
        return grown / (more[0] * more[1] - base[0] * base[1])

    by_tokens = per_choice_bytes((8 * BLOCK_TOKENS, 2), (32 * BLOCK_TOKENS, 2))
    by_top_k = per_choice_bytes((8 * BLOCK_TOKENS, 2), (8 * BLOCK_TOKENS, 6))
    # the int64 choices themselves are 8 bytes each; the blocks' and the joined copy at most
    # a few times that
    for slope in (by_tokens, by_top_k):
        assert 8.0 <= slope <= 32.0, slope
    assert 0.5 <= by_tokens / by_top_k <= 2.0, (by_tokens, by_top_k)


def test_route_layer_peak_does_not_grow_with_experts_beyond_a_block() -> None:
    import tracemalloc

    def peak(experts: int, sampling: str) -> int:
        wl = MoELayerWorkload(
            tokens_per_gpu=2 * BLOCK_TOKENS,
            hidden=64,
            intermediate=128,
            experts=experts,
            top_k=2,
            routing=RoutingSpec(sampling=sampling),
        )
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            route_layer(wl, 2, np.random.default_rng(1))
            return tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()

    for sampling, per_expert in (("per_token", BLOCK_BYTES_PER_EXPERT), ("counts", 0)):
        grown = peak(800, sampling) - peak(8, sampling)
        # the (GPUs, experts) counts and their bincount: 2 x 2 GPUs x 8 bytes per expert
        bound = (per_expert + 32) * (800 - 8) + SLACK_BYTES
        assert grown <= bound, (sampling, grown, bound)


@pytest.mark.parametrize("seed", range(6))
def test_sequence_gradient_in_pieces_is_the_whole_batchs_bit_for_bit(seed: int) -> None:
    # the router feeds the sequence-wise gradient block by block; any pieces give the bits of
    # one call over the whole step
    rng = np.random.default_rng(seed)
    tokens, experts, top_k = int(rng.integers(0, 400)), int(rng.integers(2, 40)), 2
    sequence_tokens = int(rng.integers(1, 120))
    affinity = rng.random((tokens, experts), dtype=np.float32)
    choices = np.argsort(rng.random((tokens, experts)), axis=1)[:, :top_k]
    whole = sequence_balance_gradient(choices, affinity, sequence_tokens, 0.3)
    acc = SequenceBalanceGradient(experts, sequence_tokens, 0.3)
    cuts = np.sort(rng.integers(0, tokens + 1, size=int(rng.integers(0, 8))))
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, tokens], strict=True):
        acc.add(choices[lo:hi], affinity[lo:hi])
    assert np.array_equal(acc.gradient(), whole)


def test_sequence_loss_steps_do_not_depend_on_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # blocks go a window of threads at a time when their affinities are fed on; the same bits
    def offsets(threads: int) -> np.ndarray:
        monkeypatch.setattr(routing, "_MAX_THREADS", threads)
        spec = RoutingSpec(
            distribution="zipf", balancing="alf_lb", sequence_aux_alpha=0.3, sequence_aux_tokens=999
        )
        router = Router(spec, 32, 4, np.random.default_rng(3))
        for _ in range(3):
            router.update(expert_loads(router.step(3 * BLOCK_TOKENS + 77), 32))
        return np.concatenate([router.aux_loss_offset, router.bias])

    one = offsets(1)
    assert np.any(one != 0.0)
    for threads in (2, 4):
        assert np.array_equal(offsets(threads), one)
