"""The token router: expert popularity, biased top-k selection, ALF-LB bias updates, and the
routed batch of one MoE layer forward (capacity drops included).

Model (alf_lb.md sections 1-2, 9, 11; docs/alf_lb.md). Token t's affinity for expert e is
``s[t, e] = G(logit[e] + noise_scale * z[t, e])`` with ``z`` standard normal and G the ``gate``
(sigmoid, or softmax over the experts); token t picks the ``top_k`` distinct experts with the
largest ``s[t, e] + b[e]`` (multiplicative variant: ``s[t, e] * b[e]``), among its best
``node_limited`` groups when set (:func:`~gpusim.workloads.moe.gates.limit_to_groups`). The
bias ``b`` only decides selection: the gating weights (:meth:`Router.route` with ``gates``) are
the chosen affinities without it, renormalised per ``renormalise_gates``. After a batch,
:meth:`Router.update` moves ``b`` with that batch's loads, so the next batch sees the bias
learnt from the previous one (ALF Algorithm 1). ``step(tokens, frozen=True)`` routes held-out
tokens with the bias and logits as they are, changing nothing (MaxVio_global).

Popularity logits per ``RoutingSpec.distribution``:

- ``uniform``: all 0;
- ``zipf``: ``-zipf_exponent * log(rank)``, ranks 1..E given to experts by a seeded permutation
  (so the most popular expert has logit 0);
- ``dirichlet``: ``log(w / max(w))`` with ``w ~ Dir(dirichlet_concentration)``; dividing by the
  largest weight (a constant shift of every logit) puts the most popular expert at logit 0, as for
  ``zipf`` and ``uniform``, which matters because the sigmoid is not shift-invariant;
- ``trace``: per-step expert counts from a JSON file (a list of steps, each a list of E
  non-negative counts; step i uses entry ``i mod len``). Each token picks ``top_k`` distinct
  experts by systematic (Madow) sampling with inclusion probabilities ``top_k * c_e / sum(c)``,
  so expected loads follow the counts exactly (shares above ``1 / top_k`` are capped at
  probability 1 and the excess is spread over the others in proportion). A trace records the
  router's choices, balancing included, so the bias does not re-route trace tokens (it is still
  updated).

Drift (any distribution but ``trace``): after each training step's tokens are routed, every
expert's logit takes a ``N(0, drift_per_step)`` increment (a random walk; the first step sees
the distribution's logits). ASSUMPTION, docs/alf_lb.md.

Balancing: ``none``; ``alf_lb``: the bias update of :meth:`Router.update` (stopping at
``alf_update_stop_step``, DeepSeek-V3's schedule); ``aux_loss``: after each step every expert's
logit moves by ``-aux_loss_learning_rate * dL/dlogit``, the gradient of the switch-style balance
loss with ``aux_loss_alpha`` (:mod:`~gpusim.workloads.moe.aux_loss`), against the same
(drifting) popularity. ``sequence_aux_alpha`` adds DeepSeek-V3's sequence-wise loss's gradient
step beside any balancing.

Random numbers: each step draws one 63-bit seed from the caller's generator and routes tokens in
fixed blocks of :data:`BLOCK_TOKENS`, block i using its own generator seeded by
``(step seed, i)``; the drift increment uses ``(step seed, DRIFT_STREAM)``, so drift draws
nothing from the caller's generator and ``drift_per_step = 0`` is exactly the static case.
Blocks may run on a few threads (numpy releases the GIL); results do not depend on the number
of threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from gpusim.errors import SimulationError
from gpusim.spec.base import Dtype
from gpusim.spec.moe import (
    MoELayerWorkload,
    RoutingSpec,
    RoutingTraceError,
    read_routing_trace,
    too_few_experts_reason,
)
from gpusim.workloads.moe.aux_loss import (
    SequenceBalanceGradient,
    sigmoid_balance_gradient,
    softmax_balance_gradient,
)
from gpusim.workloads.moe.balance_metrics import expert_loads, maxvio, segment_loads
from gpusim.workloads.moe.gates import (
    gating_weights,
    limit_to_groups,
    softmax_rows,
    top_k_columns,
    top_k_sets,
)
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch
from gpusim.workloads.moe.uniform_choices import uniform_choices

BLOCK_TOKENS = 8192
"""Tokens routed per random-number block (fixed, so results do not depend on threading)."""

DRIFT_STREAM = 2**32 - 1
"""The second seed word of a step's drift generator (block generators use the block index)."""


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_MAX_THREADS = max(1, min(4, _usable_cpus()))


@dataclass
class _Block:
    """One block's ``(tokens, top_k)`` choices; its gating weights when asked for; under
    aux_loss the sums over its tokens that the gradient needs (sigmoid: ``first`` = sum of
    s (1 - s); softmax: ``first`` = sum of s, ``second`` = sum of the outer products s s^T)."""

    choices: np.ndarray
    gates: np.ndarray | None = None
    first: np.ndarray | None = None
    second: np.ndarray | None = None
    affinity: np.ndarray | None = None


_BlockFn = Callable[[int], _Block]
_T = TypeVar("_T")


@dataclass(frozen=True)
class RoutedTokens:
    """A batch's ``(tokens, top_k)`` chosen experts and, when asked for, their gating weights
    (float32, same shape; the affinities without the bias, renormalised per the spec)."""

    choices: np.ndarray
    gates: np.ndarray | None


def _refuse_setting_problems(spec: RoutingSpec, experts: int, top_k: int) -> None:
    """Raise the first of the routing's :meth:`~gpusim.spec.moe.RoutingSpec.setting_problems`
    (the model refuses what the loader refuses, whichever way the routing is drawn)."""
    for loc, reason in spec.setting_problems(experts, top_k):
        raise SimulationError(f"routing.{'.'.join(str(part) for part in loc)}: {reason}")


def _inclusion_probabilities(counts: np.ndarray, top_k: int, where: str) -> np.ndarray:
    """Per-expert probabilities (each <= 1, summing to ``top_k``) proportional to ``counts``,
    capping shares above 1/top_k at 1 and spreading the excess over the rest in proportion."""
    share = counts / counts.sum()
    pi: np.ndarray = np.zeros_like(share)
    fixed = np.zeros(share.shape, dtype=bool)
    for _ in range(share.size + 1):
        free = ~fixed
        rest = top_k - int(fixed.sum())
        mass = float(share[free].sum())
        if rest > 0 and mass <= 0.0:
            raise SimulationError(too_few_experts_reason(where, int((counts > 0).sum()), top_k))
        pi[fixed] = 1.0
        pi[free] = rest * share[free] / mass if rest > 0 else 0.0
        over = free & (pi >= 1.0)
        if not over.any():
            break
        fixed |= over
    return pi


def _load_trace(path: Path, experts: int, top_k: int) -> np.ndarray:
    """Inclusion probabilities per step, shape (steps, experts), from a trace file."""
    try:
        counts_per_step = read_routing_trace(path, experts)
    except RoutingTraceError as exc:
        raise SimulationError(str(exc)) from exc
    steps = [
        _inclusion_probabilities(np.asarray(counts, dtype=np.float64), top_k, f"{path}: step {i}")
        for i, counts in enumerate(counts_per_step)
    ]
    table: np.ndarray = np.stack(steps)
    return table


class Router:
    """The router of one MoE layer: popularity, bias, top-k selection and ALF-LB updates.

    ``step(tokens)`` routes one batch; ``update(loads)`` applies the balancing rule with that
    batch's expert loads (alf_lb.md section 2: loads come from the previous batch only).
    """

    def __init__(
        self,
        spec: RoutingSpec,
        experts: int,
        top_k: int,
        rng: np.random.Generator,
        base_dir: Path | None = None,
    ) -> None:
        if experts < 1:
            raise SimulationError(f"router needs at least 1 expert, got {experts}")
        if not 1 <= top_k <= experts:
            raise SimulationError(f"top_k {top_k} must be between 1 and experts {experts}")
        _refuse_setting_problems(spec, experts, top_k)
        multiplicative = spec.balancing == "alf_lb" and spec.alf_update == "multiplicative"
        self.spec = spec
        self.experts = experts
        self.top_k = top_k
        self.steps_taken = 0
        self._rng = rng
        self._multiplicative = multiplicative
        self._trace: np.ndarray | None = None
        self._logits = np.zeros(experts, dtype=np.float64)
        dist = spec.distribution
        if dist == "zipf":
            ranks = rng.permutation(experts) + 1
            self._logits = -spec.zipf_exponent * np.log(ranks.astype(np.float64))
        elif dist == "dirichlet":
            weights = rng.dirichlet(np.full(experts, spec.dirichlet_concentration))
            weights = np.maximum(weights, np.finfo(np.float64).tiny)
            self._logits = np.log(weights / weights.max())
        elif dist == "trace":
            if spec.trace_file is None:
                raise SimulationError("distribution 'trace' needs trace_file")
            path = Path(spec.trace_file)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            self._trace = _load_trace(path, experts, top_k)
        self._bias = np.ones(experts) if multiplicative else np.zeros(experts)
        self._aux_offset = np.zeros(experts, dtype=np.float64)
        self._moments: tuple[np.ndarray, np.ndarray | None] | None = None
        self._sequence_grad: np.ndarray | None = None

    @property
    def bias(self) -> np.ndarray:
        """The selection bias b per expert (a copy)."""
        return self._bias.copy()

    @property
    def popularity_logits(self) -> np.ndarray:
        """The logits routing uses now: the distribution's (drifted so far) plus the aux-loss
        offset (zero unless balancing is aux_loss; zeros for a trace)."""
        logits: np.ndarray = self._logits + self._aux_offset
        return logits

    @property
    def aux_loss_offset(self) -> np.ndarray:
        """What the aux-loss gradient steps have added to each expert's logit so far (a copy)."""
        return self._aux_offset.copy()

    def step(self, tokens: int, *, frozen: bool = False, as_sets: bool = False) -> np.ndarray:
        """Route one batch: the ``(tokens, top_k)`` int array of each token's chosen experts.

        A training step (the default) then drifts the popularity and counts as a step; a
        ``frozen`` one routes fresh tokens with the router as it is and changes nothing (held-out
        evaluation: the paper's MaxVio_global with the final model). ``as_sets``: each token's
        experts in whatever order is cheapest (the same experts, the same random numbers, see
        :func:`~gpusim.workloads.moe.gates.top_k_sets`), for callers that only count them."""
        return self.route(tokens, frozen=frozen, as_sets=as_sets).choices

    def route(
        self, tokens: int, *, frozen: bool = False, gates: bool = False, as_sets: bool = False
    ) -> RoutedTokens:
        """:meth:`step`, also returning the gating weights when ``gates`` (not for a trace,
        which has no affinities). The same seed routes the same tokens either way."""
        block, starts, step_seed, sequence = self._blocks(tokens, frozen, gates, as_sets)
        parts = _run_blocks(block, len(starts), sequence)
        routed = _join(parts, self.top_k, gates)
        if frozen:
            return routed
        if self.spec.drift_per_step > 0.0:
            drift = np.random.Generator(
                np.random.PCG64(np.random.SeedSequence([step_seed, DRIFT_STREAM]))
            )
            self._logits = self._logits + drift.normal(0.0, self.spec.drift_per_step, self.experts)
        if self.spec.balancing == "aux_loss":
            self._moments = _mean_moments(parts, tokens, self.experts)
        if sequence is not None:
            self._sequence_grad = sequence.gradient()
        self.steps_taken += 1
        return routed

    def frozen_segment_loads(self, tokens: int, segment_tokens: int) -> np.ndarray:
        """The experts ``step(tokens, frozen=True)`` would choose (the same random numbers, the
        same sets), counted per consecutive segment of ``segment_tokens`` tokens (the last one
        partial when ``segment_tokens`` does not divide ``tokens``): an int64 array
        ``(ceil(tokens / segment_tokens), experts)``. Counted a block at a time, so it never
        holds the ``(tokens, top_k)`` choices (held-out evaluation of a million tokens)."""
        if segment_tokens < 1:
            raise SimulationError(f"segment_tokens must be at least 1, got {segment_tokens}")
        block, starts, _, _ = self._blocks(tokens, True, False, True)
        experts = self.experts

        def counted(i: int) -> tuple[int, np.ndarray]:
            part = segment_loads(block(i).choices, experts, segment_tokens, starts[i])
            return starts[i] // segment_tokens, part

        loads = np.zeros((-(-tokens // segment_tokens), experts), dtype=np.int64)
        for first, part in _in_order(counted, len(starts), None):
            loads[first : first + len(part)] += part
        return loads

    def _blocks(
        self, tokens: int, frozen: bool, gates: bool, as_sets: bool
    ) -> tuple[_BlockFn, list[int], int, SequenceBalanceGradient | None]:
        """One step's block function, its blocks' first tokens, its seed (drawn from the
        caller's generator here) and, for a training step under the sequence-wise loss, the
        gradient its blocks feed."""
        if tokens < 0:
            raise SimulationError(f"cannot route {tokens} tokens")
        if gates and self._trace is not None:
            raise SimulationError("a 'trace' distribution has no affinities to weight by")
        step_seed = int(self._rng.integers(0, 2**63))
        starts = list(range(0, tokens, BLOCK_TOKENS))
        sequence = None
        if self.spec.sequence_aux_alpha > 0.0 and not frozen:
            sequence = SequenceBalanceGradient(
                self.experts, self.spec.sequence_aux_tokens, self.spec.sequence_aux_alpha
            )
        if self._trace is not None:
            block = self._trace_block(self._trace, tokens, starts, step_seed)
        else:
            block = self._affinity_block(
                tokens, starts, step_seed, gates, as_sets, sequence is not None
            )
        return block, starts, step_seed, sequence

    def _trace_block(
        self, trace: np.ndarray, tokens: int, starts: list[int], step_seed: int
    ) -> _BlockFn:
        """The function routing block i of this step by systematic sampling from the trace."""
        pi = trace[self.steps_taken % len(trace)]
        order = self._rng.permutation(self.experts)
        order = order[pi[order] > 0.0]
        edges = np.concatenate(([0.0], np.cumsum(pi[order])))
        edges[-1] = float(self.top_k)  # exact, so no point falls past the last expert
        top_k = self.top_k

        def block(i: int) -> _Block:
            n = min(BLOCK_TOKENS, tokens - starts[i])
            gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([step_seed, i])))
            # points U, U+1, ..., U+k-1 on [0, k): intervals of width pi_e <= 1 each hold at
            # most one point, so the k experts are distinct and P(e picked) = pi_e.
            points = gen.random(n)[:, None] + np.arange(top_k)
            pos = np.searchsorted(edges, points, side="right") - 1
            picked: np.ndarray = order[np.minimum(pos, len(order) - 1)]
            return _Block(picked)

        return block

    def _affinity_block(
        self,
        tokens: int,
        starts: list[int],
        step_seed: int,
        want_gates: bool,
        as_sets: bool,
        want_affinity: bool,
    ) -> _BlockFn:
        """The function routing block i of this step by biased top-k over the gate's affinities
        (node-limited when the spec says so), with the aux loss's moments, the gating weights
        and the affinities themselves when asked for; ``as_sets``: each token's experts in any
        order."""
        spec = self.spec
        sigma = float(spec.noise_scale)
        bias = self._bias
        top_k = self.top_k
        experts = self.experts
        softmax = spec.gate == "softmax"
        limit = spec.node_limited
        per_group_top = limit.per_group_top(top_k) if limit is not None else 0
        # Both gates are monotone in each token's logits: with a bias that is the same for every
        # expert and no group limit, top-k of the affinity is top-k of z + logit / sigma
        # (cheaper, and identical).
        fast = bool(np.all(bias == bias[0])) and limit is None
        shift = (self.popularity_logits / sigma).astype(np.float32)
        # adding zeros changes no comparison (nor any affinity): skipped for uniform popularity
        zero_shift = not shift.any()
        half_sigma = np.float32(0.5 * sigma)
        add_bias = (2.0 * bias).astype(np.float32)
        mul_bias = bias.astype(np.float32)
        multiplicative = self._multiplicative
        want_moments = spec.balancing == "aux_loss"
        need_affinity = want_gates or want_moments or want_affinity or not fast
        top_k_of = top_k_sets if as_sets else top_k_columns

        def block(i: int) -> _Block:
            n = min(BLOCK_TOKENS, tokens - starts[i])
            gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([step_seed, i])))
            score = gen.standard_normal((n, experts), dtype=np.float32)
            if not zero_shift:
                score += shift  # z + logit / sigma
            if not need_affinity:
                return _Block(top_k_of(score, top_k))
            if softmax:
                affinity = softmax_rows(score * np.float32(sigma))
                select = affinity + bias.astype(np.float32)
                if multiplicative:
                    select = affinity * mul_bias
            else:
                # sigmoid(x) = (1 + tanh(x / 2)) / 2 with x = sigma * (z + logit / sigma):
                # ranking (or summing, for group ranks) sigmoid(x) + b is ranking
                # tanh(x / 2) + 2 b, and sigmoid(x) * b is (1 + tanh(x / 2)) * b.
                half = np.tanh(score * half_sigma)
                affinity = (half + np.float32(1.0)) * np.float32(0.5)
                select = (half + np.float32(1.0)) * mul_bias if multiplicative else half + add_bias
            if fast:
                choices = top_k_of(score, top_k)
            elif limit is not None:
                limited = limit_to_groups(
                    select, limit.groups, limit.groups_per_token, per_group_top
                )
                choices = top_k_of(limited, top_k)
            else:
                choices = top_k_of(select, top_k)
            out = _Block(choices)
            if want_affinity:
                out.affinity = affinity
            if want_gates:
                out.gates = gating_weights(affinity, choices, spec.renormalise_gates)
            if want_moments:
                if softmax:
                    out.first = affinity.sum(axis=0, dtype=np.float64)
                    a64 = affinity.astype(np.float64)
                    out.second = a64.T @ a64
                else:
                    out.first = (affinity * (np.float32(1.0) - affinity)).sum(
                        axis=0, dtype=np.float64
                    )
            return out

        return block

    def update(self, loads: np.ndarray) -> None:
        """Apply the balancing rule with one training batch's per-expert loads.

        With mean load c_bar and violation e_i = c_bar - c_i (positive when underloaded):

        - ``sign``: b_i += u * sign(e_i) (ALF Algorithm 1, DeepSeek-V3);
        - ``proportional``: b_i += u * e_i / c_bar. Normalised by the mean load so that u is
          dimensionless and means the same at any batch size (ALF does not state its scaling;
          raw token counts would make u = 0.01 a step of thousands); an expert at twice the mean
          moves by u, like the sign rule;
        - ``multiplicative``: b_i *= 1 + u * sign(e_i), with b starting at 1 and selecting by
          affinity x b (ALF Table 4); u < 1 keeps b positive.

        ``aux_loss`` leaves the bias alone and moves the logits instead: ``l -= lr * dL/dl``
        with the balance loss's gradient from these loads and the last step's affinities
        (:func:`~gpusim.workloads.moe.aux_loss.sigmoid_balance_gradient`). ``none`` does
        nothing. With ``sequence_aux_alpha`` > 0 the logits also descend DeepSeek-V3's
        sequence-wise loss's gradient from the last training step, whatever the balancing.
        """
        if self._sequence_grad is not None:
            step = self.spec.aux_loss_learning_rate * self._sequence_grad
            self._aux_offset = self._aux_offset - step
            self._sequence_grad = None
        if self.spec.balancing == "none":
            return
        c = np.asarray(loads, dtype=np.float64)
        if c.shape != (self.experts,):
            raise SimulationError(f"update needs {self.experts} expert loads, got {c.shape}")
        if self.spec.balancing == "aux_loss":
            if self._moments is None:
                raise SimulationError("aux_loss update before any training step was routed")
            first, second = self._moments
            alpha = self.spec.aux_loss_alpha
            if second is None:
                grad = sigmoid_balance_gradient(c, first, alpha)
            else:
                grad = softmax_balance_gradient(c, first, second, alpha)
            self._aux_offset = self._aux_offset - self.spec.aux_loss_learning_rate * grad
            return
        stop = self.spec.alf_update_stop_step
        if stop is not None and self.steps_taken > stop:
            return  # DeepSeek-V3's schedule: no bias update from step `stop` on
        mean = float(c.mean())
        u = self.spec.alf_update_rate
        if self.spec.alf_update == "sign":
            self._bias = self._bias + u * np.sign(mean - c)
        elif self.spec.alf_update == "proportional":
            if mean > 0.0:
                self._bias = self._bias + u * (mean - c) / mean
        else:
            self._bias = self._bias * (1.0 + u * np.sign(mean - c))


def _in_order(fn: Callable[[int], _T], count: int, window: int | None) -> Iterator[_T]:
    """``fn(0) .. fn(count - 1)`` in order, on up to :data:`_MAX_THREADS` threads, submitted
    ``window`` at a time (None: all at once; their results wait in their futures until taken)."""
    threads = min(_MAX_THREADS, count)
    if threads > 1:
        step = count if window is None else window
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for first in range(0, count, step):
                yield from pool.map(fn, range(first, min(count, first + step)))
    else:
        for i in range(count):
            yield fn(i)


def _run_blocks(
    block: _BlockFn, count: int, sequence: SequenceBalanceGradient | None
) -> list[_Block]:
    """Blocks 0 .. count - 1 in order (see :func:`_in_order`). A block's affinities go to
    ``sequence`` (when given) and are then dropped, so that at most a window of ``threads``
    blocks' affinities is alive, never the step's ``(tokens, experts)``."""
    parts: list[_Block] = []
    # blocks with affinities go a window at a time; without, only choices come back
    window = min(_MAX_THREADS, count) if sequence is not None else None
    for part in _in_order(block, count, window):
        if part.affinity is not None:
            if sequence is not None:
                sequence.add(part.choices, part.affinity)
            part.affinity = None
        parts.append(part)
    return parts


def _join(parts: list[_Block], top_k: int, gates: bool) -> RoutedTokens:
    """The blocks' choices (and gating weights) as one batch."""
    if not parts:
        empty = np.zeros((0, top_k), dtype=np.float32) if gates else None
        return RoutedTokens(np.zeros((0, top_k), dtype=np.int64), empty)
    choices: np.ndarray = np.concatenate([p.choices for p in parts]).astype(np.int64, copy=False)
    weights = None
    if gates:
        weights = np.concatenate([p.gates for p in parts if p.gates is not None])
    return RoutedTokens(choices, weights)


def _mean_moments(
    parts: list[_Block], tokens: int, experts: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The blocks' aux-loss sums divided by the step's tokens (zeros for an empty step)."""
    scale = 1.0 / tokens if tokens else 0.0
    first = sum((p.first for p in parts if p.first is not None), np.zeros(experts)) * scale
    seconds = [p.second for p in parts if p.second is not None]
    second = sum(seconds, np.zeros((experts, experts))) * scale if seconds else None
    return first, second


def route_layer(
    wl: MoELayerWorkload,
    n_gpus: int,
    rng: np.random.Generator,
) -> RoutedBatch:
    """Route one MoE layer forward over ``n_gpus`` expert-parallel GPUs.

    Runs ``wl.routing.warmup_steps`` router steps over the global batch (``tokens_per_gpu x
    n_gpus`` tokens, token t from source GPU ``t // tokens_per_gpu``), each followed by a bias
    update, then the measured step. ``maxvio_batch`` is the MaxVio of the measured step's expert
    loads before dropping. Capacity (:meth:`LayerGeometry.capacity`, None = dropless) limits the
    tokens each (source GPU, expert) pair may send; FlashMoE's slot rule keeps them in arrival
    (token) order and drops slot >= capacity, so ``counts[g, e] = min(demand[g, e], capacity)``
    and ``dropped`` is the sum of the excess. Where the routing draws counts
    (:meth:`~gpusim.spec.moe.RoutingSpec.resolved_sampling`: ``counts``, or ``auto`` where counts
    stand for per-token routing) every token's experts are drawn directly
    (:func:`uniform_choices`; same distribution, other numbers).
    """
    geometry = LayerGeometry.of(wl, [f"gpu{g}" for g in range(n_gpus)], Dtype.fp16)
    tokens = wl.tokens_per_gpu * n_gpus
    if wl.routing.resolved_sampling() == "counts":
        _refuse_setting_problems(wl.routing, wl.experts, wl.top_k)
        # warm-up steps would change nothing the measured step sees: skipped
        choices = uniform_choices(rng, tokens, wl.experts, wl.top_k)
    else:
        router = Router(wl.routing, wl.experts, wl.top_k, rng)
        for _ in range(wl.routing.warmup_steps):
            router.update(expert_loads(router.step(tokens, as_sets=True), wl.experts))
        choices = router.step(tokens, as_sets=True)  # only counted: any order
    source = np.repeat(np.arange(n_gpus, dtype=np.int64), wl.tokens_per_gpu * wl.top_k)
    demand = np.bincount(
        source * wl.experts + choices.ravel(), minlength=n_gpus * wl.experts
    ).reshape(n_gpus, wl.experts)
    capacity = geometry.capacity()
    counts = demand if capacity is None else np.minimum(demand, capacity)
    return RoutedBatch(
        counts=counts,
        dropped=int(demand.sum() - counts.sum()),
        maxvio_batch=maxvio(demand.sum(axis=0)),
    )


__all__ = [
    "BLOCK_TOKENS",
    "DRIFT_STREAM",
    "RoutedTokens",
    "Router",
    "expert_loads",
    "maxvio",
    "route_layer",
]
