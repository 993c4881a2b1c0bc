"""The thin SimPy wrapper every model runs in: one environment and one trace recorder.

It holds no random generator: the engine is deterministic, and a workload that draws random
numbers makes its own generators from the scenario's seed, which the workload registry passes to
both fidelities alike (``des(node, workload, *, seed)``, ``analytic(..., *, seed)``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import simpy

from gpusim.engine.trace import TraceRecorder


@dataclass
class Simulation:
    """Shared state of one simulation run."""

    trace: bool = False
    env: simpy.Environment = field(default_factory=simpy.Environment)
    recorder: TraceRecorder = field(init=False)

    def __post_init__(self) -> None:
        self.recorder = TraceRecorder(enabled=self.trace)

    @property
    def now_s(self) -> float:
        """Current simulated time in seconds."""
        return float(self.env.now)

    def run(self) -> float:
        """Run until no events remain; returns the final time in seconds."""
        self.env.run()
        return self.now_s

    def events_scheduled(self) -> int:
        """How many events SimPy has scheduled so far (for event-rate figures). Reads SimPy's
        private event-id counter through its repr ('count(N)'), so nothing is consumed."""
        text = repr(self.env._eid)
        return int(text[text.index("(") + 1 : text.index(")")])
