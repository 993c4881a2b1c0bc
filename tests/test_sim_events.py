"""Simulation.events_scheduled counts every event SimPy schedules, and counting keeps SimPy's
order of simultaneous events."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from gpusim.engine.sim import CountingEnvironment, Simulation


def test_counts_every_scheduled_event() -> None:
    sim = Simulation()
    env = sim.env

    def proc() -> Generator[simpy.Event, Any, None]:
        for _ in range(5):
            yield env.timeout(1)  # 5 timeouts
        yield env.all_of([env.timeout(1), env.timeout(2)])  # 2 timeouts + the condition

    env.process(proc())  # its start (Initialize) and its end (the process event)
    assert sim.events_scheduled() == 1
    sim.run()
    assert sim.events_scheduled() == 1 + 5 + 2 + 1 + 1


def test_simultaneous_events_run_in_scheduling_order() -> None:
    env = CountingEnvironment()
    seen: list[int] = []

    def record(i: int) -> Callable[[simpy.Event], None]:
        return lambda _ev: seen.append(i)

    for i in range(20):
        env.timeout(1.0).callbacks.append(record(i))
    env.run()
    assert seen == list(range(20))
    assert env.events_scheduled == 20


def test_event_factories_stay_bound_to_the_instance() -> None:
    # SimPy binds timeout/event/process per instance for speed; a subclass must keep that
    env = CountingEnvironment()
    assert "timeout" in vars(env) and "event" in vars(env) and "process" in vars(env)
