"""The auxiliary-loss baseline as a dynamic: the gradient of the switch-style balance loss with
respect to each expert's popularity logit (alf_lb.md section 6; docs/alf_lb.md).

``L = alpha * sum_i f_i P_i`` with ``f_i = E / (K T) * load_i`` (treated as a constant: it counts
discrete choices) and ``P_i = (1 / T) sum_t s_{t,i}``. Token t's logit for expert i is
``x_{t,i} = l_i + noise``, so ``dL/dl_j = alpha * sum_i f_i dP_i/dl_j``:

- sigmoid gate, ``s = sigmoid(x)``: ``dP_i/dl_j = delta_ij * mean_t s_{t,i} (1 - s_{t,i})``, so
  ``dL/dl_j = alpha * f_j * mean_t s'_{t,j}``;
- softmax gate, ``s = softmax(x)`` over experts: ``dP_i/dl_j = mean_t s_{t,i} (delta_ij -
  s_{t,j})``, so ``dL/dl_j = alpha * (f_j * mean_t s_{t,j} - sum_i f_i mean_t s_{t,i} s_{t,j})``.

DeepSeek-V3's complementary sequence-wise loss has the same form per sequence of T tokens, with
``P_i = (1 / T) sum_t s'_{t,i}`` and ``s' = s / sum_j s_j`` (the sigmoid affinities normalised over
all experts); averaged over the step's sequences, ``dL/dl_j = alpha * mean_seq mean_t
s'_{t,j} (1 - s_{t,j}) (f_j - sum_i f_i s'_{t,i})``.

Under the sigmoid gate every expert's logit goes down, the overloaded ones (large f) fastest; a
common shift of the logits does not change any token's top-k, so only the differences act.
"""

from __future__ import annotations

import numpy as np

from gpusim.errors import SimulationError


def load_fractions(loads: np.ndarray) -> np.ndarray:
    """``f_i = E / (K T) * load_i``; the loads of T tokens choosing K experts sum to K T, so
    ``f_i = E * load_i / sum(loads)``: 1 for every expert under perfect balance (0 everywhere
    when nothing was routed)."""
    c = np.asarray(loads, dtype=np.float64)
    total = float(c.sum())
    if total <= 0.0:
        return np.zeros_like(c)
    f: np.ndarray = c * (c.size / total)
    return f


def sigmoid_balance_gradient(loads: np.ndarray, slope_mean: np.ndarray, alpha: float) -> np.ndarray:
    """``dL/dl_j = alpha * f_j * mean_t s'_{t,j}`` for the sigmoid gate, from one batch's
    per-expert loads and the batch mean of the sigmoid's slope ``s (1 - s)`` per expert."""
    f = load_fractions(loads)
    slope = np.asarray(slope_mean, dtype=np.float64)
    if slope.shape != f.shape:
        raise SimulationError(f"slope of {slope.shape} experts for {f.shape} loads")
    grad: np.ndarray = alpha * f * slope
    return grad


def softmax_balance_gradient(
    loads: np.ndarray, prob_mean: np.ndarray, prob_outer_mean: np.ndarray, alpha: float
) -> np.ndarray:
    """``dL/dl_j = alpha * (f_j * mean_t s_j - sum_i f_i mean_t s_i s_j)`` for the softmax gate,
    from one batch's loads, the batch mean of s and the batch mean of the outer product s s^T.
    The gradient sums to 0 over experts (softmax is shift-invariant)."""
    f = load_fractions(loads)
    mean = np.asarray(prob_mean, dtype=np.float64)
    outer = np.asarray(prob_outer_mean, dtype=np.float64)
    if mean.shape != f.shape or outer.shape != (f.size, f.size):
        raise SimulationError(f"softmax moments of {mean.shape}, {outer.shape} for {f.shape} loads")
    grad: np.ndarray = alpha * (f * mean - f @ outer)
    return grad


class SequenceBalanceGradient:
    """:func:`sequence_balance_gradient` over a step's tokens given in order, in pieces of any
    size: holds at most one sequence's rows between pieces, not the step's ``(tokens, experts)``
    affinities. Each sequence is computed as a whole, in order, so the gradient is the same
    bits whatever the pieces."""

    def __init__(self, experts: int, sequence_tokens: int, alpha: float) -> None:
        if sequence_tokens < 1:
            raise SimulationError(f"sequence_tokens must be at least 1, got {sequence_tokens}")
        self.experts = experts
        self.sequence_tokens = sequence_tokens
        self.alpha = alpha
        self._total = np.zeros(experts)
        self._sequences = 0
        self._choices: np.ndarray | None = None  # the rows of the unfinished sequence
        self._affinity: np.ndarray | None = None

    def add(self, choices: np.ndarray, affinity: np.ndarray) -> None:
        """The next tokens' ``(tokens, top_k)`` choices and ``(tokens, experts)`` sigmoid
        affinities."""
        if choices.shape[0] != affinity.shape[0]:
            raise SimulationError(
                f"{choices.shape[0]} tokens of choices for {affinity.shape[0]} of affinities"
            )
        if self._choices is not None and self._affinity is not None:
            choices = np.concatenate([self._choices, choices])
            affinity = np.concatenate([self._affinity, affinity])
        seq = self.sequence_tokens
        whole = choices.shape[0] // seq * seq
        for start in range(0, whole, seq):
            self._add_sequence(choices[start : start + seq], affinity[start : start + seq])
        rest = choices.shape[0] > whole
        self._choices = choices[whole:].copy() if rest else None
        self._affinity = affinity[whole:].copy() if rest else None

    def _add_sequence(self, picked: np.ndarray, affinity: np.ndarray) -> None:
        s = affinity.astype(np.float64)
        f = load_fractions(np.bincount(picked.ravel(), minlength=self.experts))
        norm = s / s.sum(axis=1, keepdims=True)  # s'
        spread = norm @ f  # sum_i f_i s'_{t,i}
        self._total += (norm * (1.0 - s) * (f[None, :] - spread[:, None])).mean(axis=0)
        self._sequences += 1

    def gradient(self) -> np.ndarray:
        """The gradient, a trailing shorter sequence counting as one (zeros for no tokens)."""
        if self._choices is not None and self._affinity is not None:
            self._add_sequence(self._choices, self._affinity)
            self._choices = self._affinity = None
        grad: np.ndarray = self.alpha * self._total / max(1, self._sequences)
        return grad


def sequence_balance_gradient(
    choices: np.ndarray, affinity: np.ndarray, sequence_tokens: int, alpha: float
) -> np.ndarray:
    """DeepSeek-V3's sequence-wise balance loss's gradient with respect to each expert's logit
    (sigmoid gate), averaged over the consecutive sequences of ``sequence_tokens`` tokens of one
    step (a trailing shorter sequence counts as one), from the ``(tokens, top_k)`` choices and
    the ``(tokens, experts)`` sigmoid affinities."""
    acc = SequenceBalanceGradient(affinity.shape[1], sequence_tokens, alpha)
    acc.add(choices, affinity)
    return acc.gradient()


__all__ = [
    "SequenceBalanceGradient",
    "load_fractions",
    "sequence_balance_gradient",
    "sigmoid_balance_gradient",
    "softmax_balance_gradient",
]
