"""Uniformly random top-k choices: each token's ``top_k`` distinct experts drawn directly (no
affinities), for routing whose every token picks a uniformly random set of distinct experts
(``RoutingSpec.sampling: counts``, see :meth:`~gpusim.spec.moe.RoutingSpec.counts_problem`).

Floyd's algorithm, vectorised over tokens: for j = E - k .. E - 1, draw t uniform in [0, j] and
take t, or j when t is already taken; every k-subset comes out with probability 1 / C(E, k).
Memory and time are linear in tokens x top_k (times top_k for the duplicate test), not in
tokens x experts as per-token affinities are.
"""

from __future__ import annotations

import numpy as np


def uniform_choices(rng: np.random.Generator, tokens: int, experts: int, top_k: int) -> np.ndarray:
    """The ``(tokens, top_k)`` int64 array of each token's distinct experts, every set of
    ``top_k`` of the ``experts`` equally likely."""
    chosen = np.empty((tokens, top_k), dtype=np.int64)
    for i, j in enumerate(range(experts - top_k, experts)):
        pick = rng.integers(0, j + 1, size=tokens, dtype=np.int64)
        taken = (chosen[:, :i] == pick[:, None]).any(axis=1)
        chosen[:, i] = np.where(taken, j, pick)
    return chosen
