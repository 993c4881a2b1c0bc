"""Load-balance metrics with the ALF paper's definitions (alf_lb.md section 5; docs/alf_lb.md).

- MaxVio of a load vector: ``(max_i load_i - mean load) / mean load``;
- MaxVio_batch: MaxVio of one training step's loads, averaged over a window of steps;
- MaxVio_global: MaxVio of the loads of many held-out tokens routed by the frozen router;
- MaxVio_computation-batch: MaxVio of the loads of each group of consecutive held-out sequences
  that one expert-parallel computation sees, averaged over the groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpusim.errors import SimulationError


def maxvio(loads: np.ndarray) -> float:
    """MaxVio = (max load - mean load) / mean load (alf_lb.md section 5); 0 when the mean is 0."""
    values = np.asarray(loads, dtype=np.float64)
    if values.size == 0:
        return 0.0
    mean = float(values.mean())
    if mean <= 0.0:
        return 0.0
    return (float(values.max()) - mean) / mean


def expert_loads(choices: np.ndarray, experts: int) -> np.ndarray:
    """Tokens assigned to each expert: the histogram of a ``(tokens, top_k)`` choice array."""
    loads: np.ndarray = np.bincount(choices.ravel(), minlength=experts)
    return loads


def window_mean(series: Sequence[float], window_steps: int) -> float:
    """Mean of the last ``window_steps`` entries of ``series`` (all of them when fewer)."""
    if not series:
        raise SimulationError("window_mean of an empty series")
    if window_steps < 1:
        raise SimulationError(f"window_steps must be at least 1, got {window_steps}")
    return float(np.mean(series[-window_steps:]))


def segment_loads(
    choices: np.ndarray, experts: int, segment_tokens: int, first_token: int = 0
) -> np.ndarray:
    """Per-expert loads of each segment of ``segment_tokens`` consecutive tokens that a
    ``(tokens, top_k)`` choice array touches: row i is token ``first_token + i``, in segment
    ``(first_token + i) // segment_tokens``; an int64 array ``(segments touched, experts)``
    from the first token's segment (partial segments at either end counted as far as they go).
    """
    n = choices.shape[0]
    if n == 0:
        return np.zeros((0, experts), dtype=np.int64)
    first = first_token // segment_tokens
    segments = (first_token + n - 1) // segment_tokens - first + 1
    segment = (np.arange(first_token, first_token + n, dtype=np.int64) // segment_tokens) - first
    flat = (segment[:, None] * experts + choices).ravel()
    loads: np.ndarray = np.bincount(flat, minlength=segments * experts)
    return loads.reshape(segments, experts)


def mean_row_maxvio(loads: np.ndarray) -> float:
    """Mean over the rows of a ``(batches, experts)`` load array of each row's MaxVio (a row
    with no load counts 0)."""
    per_batch = loads.astype(np.float64)
    mean = per_batch.mean(axis=1)
    vio = np.where(mean > 0.0, (per_batch.max(axis=1) - mean) / np.where(mean > 0, mean, 1.0), 0.0)
    return float(vio.mean())


def _whole_batches(tokens: int, batch_tokens: int) -> int:
    """Whole batches of ``batch_tokens`` in ``tokens`` (at least one is needed)."""
    if batch_tokens < 1:
        raise SimulationError(f"batch_tokens must be at least 1, got {batch_tokens}")
    batches = tokens // batch_tokens
    if batches < 1:
        raise SimulationError(
            f"a computation batch of {batch_tokens} tokens needs at least that many tokens, "
            f"got {tokens}"
        )
    return batches


def computation_batch_maxvio(choices: np.ndarray, experts: int, batch_tokens: int) -> float:
    """Mean MaxVio over consecutive batches of ``batch_tokens`` tokens of a ``(tokens, top_k)``
    choice array (a trailing partial batch is left out). At least one whole batch is needed."""
    batches = _whole_batches(choices.shape[0], batch_tokens)
    used = choices[: batches * batch_tokens]
    return mean_row_maxvio(segment_loads(used, experts, batch_tokens))


def grouped_computation_batch_maxvio(
    sequence_loads: np.ndarray, tokens: int, sequence_tokens: int, sequences: int
) -> float:
    """:func:`computation_batch_maxvio` of ``tokens`` tokens over batches of ``sequences``
    sequences, from the loads of each sequence of ``sequence_tokens`` tokens (``(sequences in
    tokens, experts)``, as :func:`segment_loads` counts them; the same result, exactly)."""
    batches = _whole_batches(tokens, sequences * sequence_tokens)
    used = sequence_loads[: batches * sequences]
    return mean_row_maxvio(used.reshape(batches, sequences, -1).sum(axis=1))


__all__ = [
    "computation_batch_maxvio",
    "expert_loads",
    "grouped_computation_batch_maxvio",
    "maxvio",
    "mean_row_maxvio",
    "segment_loads",
    "window_mean",
]
