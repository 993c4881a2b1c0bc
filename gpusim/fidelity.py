"""How a scenario is simulated (``options.fidelity``): defined apart from the specs so that the
command line offers its values without loading them."""

from __future__ import annotations

from enum import StrEnum


class Fidelity(StrEnum):
    """``des``: discrete-event simulation with contention. ``analytic``: closed forms."""

    des = "des"
    analytic = "analytic"
