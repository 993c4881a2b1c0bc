"""The draft model's behaviour as a seeded stochastic model (spec: :class:`DraftBehaviour`).

Each output position has its draws, made once per run from the seed (common random numbers: the
same text for every strategy and every hardware, so a change of strategy or of IO speed changes
the schedule, not the luck):

- whether the draft's top token there matches the target's (probability ``correctness``,
  independent per position, under teacher forcing as llmcad.md section 9 measures it);
- its confidence, a Beta draw conditioned on that;
- the second candidate's confidence, a uniform share of the mass the first leaves, and whether
  it is the target's token when the first is not (``alternative_correctness``; SpecInfer's
  further candidates follow geometrically);
- the same again for tokens drafted after a mismatch (off the target's path, never accepted).

A token is *on the target's path* only when every token before it on its branch is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gpusim.spec.speculative import DraftBehaviour


@dataclass(frozen=True)
class DraftToken:
    """One draft step's outcome: whether the top token is on the target's path, its
    confidence, and the second candidate's."""

    on_path: bool
    confidence: float
    alternative_on_path: bool
    alternative_confidence: float


class _Draws:
    """One set of per-position draws."""

    def __init__(self, b: DraftBehaviour, rng: np.random.Generator, positions: int) -> None:
        self.matches = (rng.random(positions) < b.correctness).tolist()
        right = rng.beta(b.confidence_correct[0], b.confidence_correct[1], positions)
        wrong = rng.beta(b.confidence_wrong[0], b.confidence_wrong[1], positions)
        self.confidence = np.where(self.matches, right, wrong).tolist()
        self.share = rng.random(positions).tolist()
        self.alternative = rng.random(positions).tolist()


class DraftSampler:
    """The draft tokens of one run: per-position draws for ``positions`` output positions."""

    def __init__(self, behaviour: DraftBehaviour, seed: int, positions: int) -> None:
        rng = np.random.default_rng(seed)
        self.behaviour = behaviour
        self._on = _Draws(behaviour, rng, positions)
        self._off = _Draws(behaviour, rng, positions)

    def _alternative_rank(self, u: float) -> int:
        """Failures before the first matching lower-ranked candidate (geometric in
        ``alternative_correctness``, from one uniform draw ``u``): 0 when ``u > 1 - q``."""
        q = self.behaviour.alternative_correctness
        if q >= 1.0:
            return 0
        if q <= 0.0 or u <= 0.0:
            return 2**31
        return math.floor(math.log(u) / math.log(1.0 - q))

    def token(self, position: int, prefix_on_path: bool) -> DraftToken:
        """The draft's token at output ``position`` after a prefix on (or off) the path."""
        d = self._on if prefix_on_path else self._off
        matches = d.matches[position]
        confidence = d.confidence[position]
        alternative_right = self._alternative_rank(d.alternative[position]) == 0
        return DraftToken(
            on_path=prefix_on_path and matches,
            confidence=confidence,
            alternative_on_path=prefix_on_path and not matches and alternative_right,
            alternative_confidence=(1.0 - confidence) * d.share[position],
        )

    def chain(self, position: int, length: int) -> int:
        """Draft ``length`` tokens from output ``position`` on an accepted prefix; how many lead
        on the path."""
        matched = 0
        for i in range(length):
            if not self._on.matches[position + i]:
                break
            matched += 1
        return matched

    def ranked_first(self, position: int, candidates: int) -> int:
        """SpecInfer's first tree level at ``position``: the rank of the candidate that is the
        target's token, or -1 if none of ``candidates`` is."""
        if self._on.matches[position]:
            return 0
        rank = 1 + self._alternative_rank(self._on.alternative[position])
        return rank if rank < candidates else -1


__all__ = ["DraftSampler", "DraftToken"]
