"""How big a run may be: the limits' values alone (the estimates that check them are in
:mod:`gpusim.limits`), so the command line reads its defaults without loading the model."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """How big a run may be. Each has a command-line option of the same name."""

    max_events: float = 2e8
    """Estimated DES events (or analytic steps) per scenario: ``--max-events``."""
    max_memory_GB: float = 8.0
    """Estimated host memory of one scenario's arrays: ``--max-memory-GB``."""
    max_points: int = 100_000
    """Points of one sweep: ``--max-points``."""
