"""Pure helpers of top-k routing over one block of tokens: the softmax gate, DeepSeek-V3's
node-limited selection, and the gating weights (alf_lb.md sections 1 and 9; docs/alf_lb.md).

Arrays are ``(tokens, experts)`` float32 unless said otherwise; experts are grouped contiguously
(group g holds experts g*E/G .. (g+1)*E/G - 1), as DeepSeek-V3's ``n_group`` groups sit on
nodes.
"""

from __future__ import annotations

import numpy as np

from gpusim.errors import SimulationError


def top_k_columns(score: np.ndarray, top_k: int) -> np.ndarray:
    """Column indices of the ``top_k`` largest entries of each row (distinct, unordered)."""
    n_cols = score.shape[1]
    if top_k == n_cols:
        return np.broadcast_to(np.arange(n_cols), score.shape).copy()
    order = np.argpartition(score, n_cols - top_k, axis=1)
    # a copy: a view would keep the whole (rows, n_cols) index array alive with the choices
    picked: np.ndarray = order[:, n_cols - top_k :].copy()
    return picked


TOP_K_SETS_MAX = 4
"""The largest ``top_k`` :func:`top_k_sets` picks by repeated maxima (beyond, a partition is
as cheap)."""
TOP_K_SETS_COLUMNS_PER_K = 24
"""... and only from rows this many times ``top_k`` long (a partition of short rows is cheap:
measured, the maxima pay from about 48 columns for top-2 and 96 for top-4)."""


def top_k_sets(score: np.ndarray, top_k: int) -> np.ndarray:
    """The sets :func:`top_k_columns` picks, each row's in another order (largest first): for
    callers that only count choices. Small ``top_k`` are picked by ``top_k`` row maxima, a few
    times cheaper than a partition; a row whose ``top_k``-th largest entry does not beat the
    next one (a tie at the boundary, or a NaN) has more than one such set, and gets the
    partition's."""
    n_cols = score.shape[1]
    if top_k > TOP_K_SETS_MAX or n_cols < TOP_K_SETS_COLUMNS_PER_K * top_k:
        return top_k_columns(score, top_k)
    work = score.copy()
    rows = np.arange(score.shape[0])
    picked = np.empty((score.shape[0], top_k), dtype=np.intp)
    for j in range(top_k):
        column = work.argmax(axis=1)
        picked[:, j] = column
        work[rows, column] = -np.inf
    last = score[rows, picked[:, -1]]
    unsure = ~(last > work.max(axis=1))
    if unsure.any():
        picked[unsure] = top_k_columns(score[unsure], top_k)
    return picked


def softmax_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by each row's maximum (no overflow)."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return p


def limit_to_groups(
    score: np.ndarray, groups: int, groups_per_token: int, per_group_top: int
) -> np.ndarray:
    """``score`` with every expert outside each token's best ``groups_per_token`` groups set to
    -inf; a group's rank is the sum of its ``per_group_top`` largest scores (DeepSeek-V3:
    the sum of the top K_r / M affinities of a node's experts)."""
    n, experts = score.shape
    if experts % groups:
        raise SimulationError(f"{experts} experts cannot be split into {groups} groups")
    size = experts // groups
    if not 1 <= per_group_top <= size:
        raise SimulationError(f"per_group_top {per_group_top} must be between 1 and {size}")
    grouped = score.reshape(n, groups, size)
    best = np.partition(grouped, size - per_group_top, axis=2)[:, :, size - per_group_top :]
    chosen = top_k_columns(best.sum(axis=2), groups_per_token)
    allowed = np.zeros((n, groups), dtype=bool)
    np.put_along_axis(allowed, chosen, True, axis=1)
    limited: np.ndarray = np.where(
        np.repeat(allowed, size, axis=1), score, np.float32(-np.inf)
    ).astype(score.dtype, copy=False)
    return limited


def groups_touched(choices: np.ndarray, experts_per_group: int) -> np.ndarray:
    """Per token, how many distinct expert groups its choices fall in."""
    group = np.sort(choices // experts_per_group, axis=1)
    touched: np.ndarray = 1 + np.count_nonzero(np.diff(group, axis=1), axis=1)
    return touched


def gating_weights(affinity: np.ndarray, choices: np.ndarray, renormalise: bool) -> np.ndarray:
    """The weights of each token's chosen experts: their affinities (no bias), divided by their
    sum when ``renormalise`` (DeepSeek-V3), else as they are (the ALF paper's g = s)."""
    chosen = np.take_along_axis(affinity, choices, axis=1)
    if not renormalise:
        return chosen
    total = chosen.sum(axis=1, keepdims=True)
    weights: np.ndarray = chosen / np.where(total > 0, total, 1)
    return weights


__all__ = [
    "gating_weights",
    "groups_touched",
    "limit_to_groups",
    "softmax_rows",
    "top_k_columns",
    "top_k_sets",
]
