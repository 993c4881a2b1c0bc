"""The result of one simulation: scalar metrics, per-GPU breakdowns, per-link bytes, a trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpusim.engine.trace import TraceEvent


@dataclass(frozen=True)
class Outcome:
    """What a workload model reports; ``simulate`` wraps it with the run's identity."""

    makespan_s: float
    metrics: dict[str, float]
    per_gpu: dict[str, dict[str, float]] = field(default_factory=dict)
    link_bytes: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """One simulated scenario. Picklable; ``summary()`` is its JSON form (without the trace)."""

    scenario: str
    fidelity: str
    seed: int
    scenario_hash: str
    profile_id: str
    topology: str
    gpusim_version: str
    makespan_s: float
    metrics: dict[str, float]
    per_gpu: dict[str, dict[str, float]]
    link_bytes: dict[str, float]
    series: dict[str, list[float]]
    wall_s: float
    events: int
    trace: list[TraceEvent] | None = None

    def summary(self) -> dict[str, Any]:
        """The result proper as plain JSON-ready data: deterministic (the same scenario and seed
        give the same bytes), so neither the trace nor the wall time (see :meth:`timing`)."""
        return {
            "scenario": self.scenario,
            "fidelity": self.fidelity,
            "seed": self.seed,
            "scenario_hash": self.scenario_hash,
            "topology": self.topology,
            "profile_id": self.profile_id,
            "gpusim_version": self.gpusim_version,
            "makespan_s": self.makespan_s,
            "metrics": self.metrics,
            "per_gpu": self.per_gpu,
            "link_bytes": self.link_bytes,
            "series": self.series,
            "events": self.events,
        }

    def timing(self) -> dict[str, Any]:
        """What differs between two runs of one scenario: the wall time it took."""
        return {"scenario_hash": self.scenario_hash, "wall_s": self.wall_s}
