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


def computation_batch_maxvio(choices: np.ndarray, experts: int, batch_tokens: int) -> float:
    """Mean MaxVio over consecutive batches of ``batch_tokens`` tokens of a ``(tokens, top_k)``
    choice array (a trailing partial batch is left out). At least one whole batch is needed."""
    if batch_tokens < 1:
        raise SimulationError(f"batch_tokens must be at least 1, got {batch_tokens}")
    batches = choices.shape[0] // batch_tokens
    if batches < 1:
        raise SimulationError(
            f"a computation batch of {batch_tokens} tokens needs at least that many tokens, "
            f"got {choices.shape[0]}"
        )
    used = choices[: batches * batch_tokens]
    batch_of = np.repeat(np.arange(batches, dtype=np.int64), batch_tokens * choices.shape[1])
    loads = np.bincount(batch_of * experts + used.ravel(), minlength=batches * experts)
    per_batch = loads.reshape(batches, experts).astype(np.float64)
    mean = per_batch.mean(axis=1)
    vio = np.where(mean > 0.0, (per_batch.max(axis=1) - mean) / np.where(mean > 0, mean, 1.0), 0.0)
    return float(vio.mean())


__all__ = ["computation_batch_maxvio", "expert_loads", "maxvio", "window_mean"]
