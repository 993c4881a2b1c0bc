"""Held-out routing counted as it is routed (issue 17, memory): ``Router.frozen_segment_loads``
counts the experts a frozen step picks per sequence, a block at a time, instead of holding the
``(tokens, top_k)`` choices of a million tokens; the router-steps metrics built from those
counts must be exactly the ones built from the choices (the general path, kept as
:func:`computation_batch_maxvio`), on random instances."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gpusim.workloads.moe.routing as routing
from gpusim.errors import SimulationError
from gpusim.spec.moe import RouterStepsWorkload, RoutingSpec
from gpusim.workloads import router_steps
from gpusim.workloads.moe.balance_metrics import (
    computation_batch_maxvio,
    expert_loads,
    grouped_computation_batch_maxvio,
    maxvio,
    segment_loads,
)
from gpusim.workloads.moe.routing import BLOCK_TOKENS, Router


def _random_spec(rng: np.random.Generator, tmp_path: Path, experts: int) -> RoutingSpec:
    kind = ["uniform", "zipf", "dirichlet", "trace", "node_limited", "softmax"][rng.integers(6)]
    balancing = ["none", "alf_lb", "aux_loss"][rng.integers(3)]
    fields: dict[str, Any] = {"balancing": balancing, "drift_per_step": float(rng.random() / 10)}
    if kind == "trace":
        counts = [[int(c) for c in rng.integers(1, 50, experts)] for _ in range(3)]
        (tmp_path / "trace.json").write_text(json.dumps(counts))
        fields = {"distribution": "trace", "trace_file": "trace.json"}
        fields["balancing"] = "alf_lb" if balancing == "aux_loss" else balancing
    elif kind == "node_limited":
        fields |= {"node_limited": {"groups": 4, "groups_per_token": 2}}
    elif kind == "softmax":
        fields |= {"gate": "softmax", "distribution": "zipf"}
    else:
        fields |= {"distribution": kind}
    return RoutingSpec(**fields)


def _twins(spec: RoutingSpec, experts: int, top_k: int, seed: int, tmp: Path) -> list[Router]:
    """Two routers in the same state after the same few training steps."""
    twins = []
    for _ in range(2):
        router = Router(spec, experts, top_k, np.random.default_rng(seed), base_dir=tmp)
        for _ in range(3):
            router.update(expert_loads(router.step(3000, as_sets=True), experts))
        twins.append(router)
    return twins


@pytest.mark.parametrize("threads", [1, 3])
def test_frozen_segment_loads_count_what_a_frozen_step_picks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, threads: int
) -> None:
    monkeypatch.setattr(routing, "_MAX_THREADS", threads)
    rng = np.random.default_rng(1234 + threads)
    for case in range(12):
        experts = int(rng.choice([8, 16, 64]))
        top_k = int(rng.integers(1, 7))
        spec = _random_spec(rng, tmp_path, experts)
        counted, routed = _twins(spec, experts, top_k, case, tmp_path)
        # blocks and segments of every alignment: segments straddle blocks, a partial last one
        tokens = int(rng.integers(0, 4 * BLOCK_TOKENS))
        segment = int(rng.choice([1, 777, 2048, BLOCK_TOKENS, 3 * BLOCK_TOKENS + 5]))
        got = counted.frozen_segment_loads(tokens, segment)
        choices = routed.step(tokens, frozen=True, as_sets=True)
        want = segment_loads(choices, experts, segment)
        assert got.dtype == np.int64 and got.shape == (-(-tokens // segment), experts), case
        assert np.array_equal(got, want), (case, spec, tokens, segment)
        assert int(got.sum()) == tokens * top_k
        # both drew the same from the caller's generator and changed nothing else
        assert np.array_equal(counted.step(500), routed.step(500)), case


def test_segment_loads_of_pieces_add_up_to_the_whole() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        experts, segment = int(rng.integers(1, 20)), int(rng.integers(1, 40))
        choices = rng.integers(0, experts, (int(rng.integers(0, 300)), 3))
        whole = segment_loads(choices, experts, segment)
        cut = int(rng.integers(0, len(choices) + 1))
        total = np.zeros_like(whole)
        for first, piece in ((0, choices[:cut]), (cut, choices[cut:])):
            part = segment_loads(piece, experts, segment, first)
            at = first // segment
            total[at : at + len(part)] += part
        assert np.array_equal(total, whole)
        assert np.array_equal(whole.sum(axis=0), expert_loads(choices, experts))


def test_grouped_computation_batch_maxvio_is_the_choices_one_exactly() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        experts, sequence = int(rng.integers(1, 12)), int(rng.integers(1, 30))
        tokens = int(rng.integers(sequence, 40 * sequence))
        skew = rng.dirichlet(np.ones(experts))
        choices = rng.choice(experts, size=(tokens, int(rng.integers(1, 4))), p=skew)
        per_sequence = segment_loads(choices, experts, sequence)
        for n in range(1, tokens // sequence + 1):
            want = computation_batch_maxvio(choices, experts, n * sequence)
            assert grouped_computation_batch_maxvio(per_sequence, tokens, sequence, n) == want
    with pytest.raises(SimulationError, match="at least that many tokens"):
        grouped_computation_batch_maxvio(np.zeros((1, 2), dtype=np.int64), 3, 4, 1)


def test_router_steps_metrics_are_those_of_the_joined_choices() -> None:
    """run_layer against the general path it replaced: every held-out choice joined, then
    counted; the same floats, bit for bit."""
    wl = RouterStepsWorkload(
        tokens_per_step=2048,
        experts=16,
        top_k=3,
        ep_ranks=4,
        steps=8,
        maxvio_batch_window_steps=4,
        heldout_tokens=3 * BLOCK_TOKENS + 1000,  # a partial last block and sequence
        sequence_tokens=300,
        computation_batch_sequences=[1, 7, 50],
        routing=RoutingSpec(distribution="zipf", balancing="alf_lb", drift_per_step=0.01),
    )
    got = router_steps.run_layer(wl, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    router = Router(wl.routing, wl.experts, wl.top_k, rng)
    for _ in range(wl.steps):
        router.update(expert_loads(router.step(wl.tokens_per_step, as_sets=True), wl.experts))
    heldout = router.step(wl.heldout_tokens, frozen=True, as_sets=True)
    assert got.maxvio_global == maxvio(expert_loads(heldout, wl.experts))
    for n in wl.computation_batch_sequences:
        want = computation_batch_maxvio(heldout, wl.experts, n * wl.sequence_tokens)
        assert got.maxvio_computation_batch[n] == want, n


def _heldout_peak_bytes(tokens: int) -> int:
    router = Router(RoutingSpec(distribution="zipf"), 64, 6, np.random.default_rng(0))
    router.frozen_segment_loads(BLOCK_TOKENS, 2048)  # first-call allocations out of the figure
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        router.frozen_segment_loads(tokens, 2048)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_heldout_counting_does_not_hold_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "_MAX_THREADS", 1)
    few, many = 2 * BLOCK_TOKENS, 32 * BLOCK_TOKENS
    grown = _heldout_peak_bytes(many) - _heldout_peak_bytes(few)
    # the counts grow by (many - few) / 2048 sequences x 64 experts x 8 B (32 KB); the joined
    # int64 choices would grow by (many - few) x 6 x 8 B (11.8 MB)
    assert grown < (many - few) * 6 * 8 / 20
