"""The draft model's behaviour as a seeded stochastic model (spec: :class:`DraftBehaviour`).

Each draft token has a latent "matches the target under teacher forcing" draw with probability
``correctness``; its confidence is a Beta draw conditioned on that; the second candidate's
confidence is a uniform share of the mass the first leaves, and it is the target's token with
probability ``alternative_correctness`` when the first is not. A token is *on the target's
path* only when every token before it on its branch is: after the first mismatch nothing the
draft proposes can be accepted. Every token costs the same four draws, in the same order, so a
seed fixes the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpusim.spec.speculative import DraftBehaviour


@dataclass(frozen=True)
class DraftToken:
    """One draft step's outcome after a prefix that is (``on_path``) or is not on the target's
    path: whether the top token is on it, its confidence, and the second candidate's."""

    on_path: bool
    confidence: float
    alternative_on_path: bool
    alternative_confidence: float


class DraftSampler:
    """Draws draft tokens from one seeded generator."""

    def __init__(self, behaviour: DraftBehaviour, rng: np.random.Generator) -> None:
        self.behaviour = behaviour
        self.rng = rng

    def token(self, prefix_on_path: bool) -> DraftToken:
        """The next draft token after a prefix that is or is not on the target's path."""
        b, rng = self.behaviour, self.rng
        matches = bool(rng.random() < b.correctness)
        shape = b.confidence_correct if matches else b.confidence_wrong
        confidence = float(rng.beta(shape[0], shape[1]))
        alternative = (1.0 - confidence) * float(rng.random())
        alternative_matches = bool(rng.random() < b.alternative_correctness)
        return DraftToken(
            on_path=prefix_on_path and matches,
            confidence=confidence,
            alternative_on_path=prefix_on_path and not matches and alternative_matches,
            alternative_confidence=alternative,
        )

    def chain(self, length: int) -> int:
        """Draft ``length`` tokens in a row from an accepted prefix; how many lead on the path."""
        matched = 0
        on_path = True
        for _ in range(length):
            on_path = self.token(on_path).on_path
            matched += on_path
        return matched

    def ranked_first(self, candidates: int) -> int:
        """SpecInfer's first tree level: the index of the candidate (by rank) that is the
        target's token, or -1 if none is: the top one with ``correctness``, each next one with
        ``alternative_correctness`` once all before it missed."""
        first = self.token(True)
        if first.on_path:
            return 0
        for rank in range(1, candidates):
            if self.rng.random() < self.behaviour.alternative_correctness:
                return rank
        return -1


__all__ = ["DraftSampler", "DraftToken"]
