"""The thin SimPy wrapper every model runs in: one environment and one trace recorder.

It holds no random generator: the engine is deterministic, and a workload that draws random
numbers makes its own generators from the scenario's seed, which the workload registry passes to
both fidelities alike (``des(node, workload, *, seed)``, ``analytic(..., *, seed)``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from heapq import heappush

import simpy
from simpy.core import BoundClass
from simpy.events import NORMAL, Event, EventPriority

from gpusim.engine.trace import TraceRecorder


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it schedules (for event-rate figures).

    Every event, a process's start included, reaches SimPy's queue through ``schedule``; this
    one pushes the same heap entry SimPy's does, with its own count as the entry's id (the
    tie-break that keeps events of one instant and priority in scheduling order, as SimPy's
    counter does), so counting costs nothing and the event order is SimPy's.
    """

    def __init__(self, initial_time: float = 0.0) -> None:
        super().__init__(initial_time)
        self.events_scheduled = 0
        """Events scheduled so far (SimPy's event ids are 0 .. this - 1)."""
        # SimPy binds its event factories (timeout, event, process, ...) to each instance for
        # speed, but only those of the instance's own class: bind the base class's too, or
        # every env.timeout() would go through a descriptor (about 15 % of the event rate).
        for name, attr in vars(simpy.Environment).items():
            if isinstance(attr, BoundClass):
                setattr(self, name, getattr(self, name))

    def schedule(self, event: Event, priority: EventPriority = NORMAL, delay: float = 0) -> None:
        """Schedule ``event`` with ``priority`` after ``delay`` (SimPy's contract), counting it."""
        eid = self.events_scheduled
        self.events_scheduled = eid + 1
        heappush(self._queue, (self._now + delay, priority, eid, event))


@dataclass
class Simulation:
    """Shared state of one simulation run."""

    trace: bool = False
    env: CountingEnvironment = field(default_factory=CountingEnvironment)
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
        """How many events SimPy has scheduled so far (for event-rate figures)."""
        return self.env.events_scheduled
