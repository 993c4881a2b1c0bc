"""Simulation.events_scheduled counts every event SimPy schedules, counting keeps SimPy's order
of simultaneous events, and a deferred call, or a held one, runs where the event it stands for
would."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import process_semantics
import pytest
import simpy
from simpy.events import PENDING

from gpusim.engine.sim import CountingEnvironment, Simulation


def _fire(act: Callable[[str, int], None], label: str, depth: int, _ev: object) -> None:
    """An event callback that calls ``act(label, depth)``."""
    act(label, depth)


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


def _random_program(
    seed: int, deferred: bool, held: bool = False, succeed: bool = False
) -> tuple[list[tuple[float, str]], int]:
    """A random tree of actions on integer times (so that many share an instant), each logging
    (time, its label) and spawning children: timeouts of 0-2, processes (whose start is an
    URGENT event) and calls triggered now, as ``defer`` calls or as events, and leaves (a log
    entry and nothing else) due 0-2 later, as timeouts or, with ``held``, as held calls
    (``take_id``) that each action runs first once ``passed`` says they are due, some of which
    become their events (``schedule_held``). Decisions depend only on the seed and the label,
    so every way builds the same program. With ``succeed`` (and ``deferred``), a call triggered
    now is an event's callback, the event triggered by ``env.succeed``."""
    env = CountingEnvironment()
    log: list[tuple[float, str]] = []
    pending: list[tuple[float, int, str]] = []  # held leaves: (time, id, label)

    def catch_up() -> None:
        while pending and env.passed(pending[0][0], pending[0][1]):
            at, _eid, leaf = heapq.heappop(pending)
            log.append((at, leaf))

    def now_call(label: str, depth: int) -> None:
        if deferred and succeed:
            ev = env.event()
            ev.callbacks.append(lambda _ev: act(label, depth))
            env.succeed(ev)
        elif deferred:
            env.defer(lambda: act(label, depth))
        else:
            ev = env.event()
            ev.callbacks.append(lambda _ev: act(label, depth))
            ev.succeed()

    def leaf(label: str) -> None:
        catch_up()
        log.append((float(env.now), label))

    def later(label: str, delay: int) -> None:
        if not held:
            env.timeout(delay).callbacks.append(lambda _ev: leaf(label))
            return
        at, eid = env.now + delay, env.take_id()
        if random.Random(f"{seed}/{label}/event").random() < 0.2:
            env.schedule_held(at, eid, lambda: leaf(label))
        else:
            heapq.heappush(pending, (at, eid, label))

    def act(label: str, depth: int) -> None:
        catch_up()
        log.append((float(env.now), label))
        if depth >= 4:
            return
        rng = random.Random(f"{seed}/{label}")
        for i in range(rng.randint(0, 3)):
            child = f"{label}.{i}"
            kind = rng.choice(("timeout", "now", "now", "process", "later"))
            if kind == "timeout":
                ev = env.timeout(rng.choice((0, 0, 1, 2)))
                ev.callbacks.append(partial(_fire, act, child, depth + 1))
            elif kind == "now":
                now_call(child, depth + 1)
            elif kind == "later":
                later(child + " leaf", rng.choice((0, 0, 1, 2)))
            else:
                wait = rng.choice((0, 1))

                def proc(c: str = child, w: int = wait) -> Generator[simpy.Event, Any, None]:
                    act(c, depth + 1)  # runs at the process's (URGENT) start
                    yield env.timeout(w)
                    catch_up()
                    log.append((float(env.now), c + " resumed"))

                env.process(proc())

    rng = random.Random(seed)
    for i in range(4):
        if rng.random() < 0.3:
            now_call(f"r{i}", 0)  # deferred before the run
        else:
            ev = env.timeout(rng.choice((0, 1, 2)))
            ev.callbacks.append(partial(_fire, act, f"r{i}", 0))
    env.run()
    assert env.peek() == math.inf
    while pending:  # due after everything else
        at, _eid, label = heapq.heappop(pending)
        log.append((at, label))
    return log, env.events_scheduled


def test_deferred_calls_run_where_their_events_would() -> None:
    for seed in range(300):
        with_events, scheduled = _random_program(seed, deferred=False)
        deferred, fewer = _random_program(seed, deferred=True)
        assert deferred == with_events, seed
        assert fewer <= scheduled


def test_succeed_runs_callbacks_where_the_event_would() -> None:
    for seed in range(300):
        with_events, scheduled = _random_program(seed, deferred=False)
        succeeded, fewer = _random_program(seed, deferred=True, succeed=True)
        assert succeeded == with_events, seed
        assert fewer <= scheduled


def test_succeed_triggers_the_event_once() -> None:
    env = CountingEnvironment()
    ev = env.event()
    env.succeed(ev, 7)
    assert ev.triggered and not ev.processed and ev.value == 7
    with pytest.raises(RuntimeError):
        env.succeed(ev)
    env.run()
    assert ev.processed
    assert env.events_scheduled == 0  # its callbacks ran in place


def test_a_deferred_call_waits_for_what_is_due_before_it() -> None:
    env = CountingEnvironment()
    seen: list[str] = []
    env.timeout(0).callbacks.append(lambda _ev: seen.append("timeout"))  # scheduled first
    env.defer(lambda: seen.append("deferred"))
    env.event().succeed()  # after the deferred call: runs after it
    assert env.peek() == 0.0
    env.run()
    assert seen == ["timeout", "deferred"]
    assert env.events_scheduled == 3  # the deferred call needed its own event here


def test_held_calls_run_where_their_events_would() -> None:
    held_some = 0
    for seed in range(300):
        with_events, scheduled = _random_program(seed, deferred=True)
        held, fewer = _random_program(seed, deferred=True, held=True)
        assert held == with_events, seed
        assert fewer <= scheduled
        held_some += fewer < scheduled
    assert held_some > 100  # the programs do hold calls


def _fields(ev: simpy.Event) -> dict[str, Any]:
    """An event's fields by the names SimPy's constructor gives them, wherever they live (the
    instance dict of SimPy's class, the slots of the engine's compiled subclasses)."""
    return {
        name: getattr(ev, name)
        for name in ("env", "callbacks", "_value", "_ok", "_delay")
        if hasattr(ev, name)
    }


def test_timeout_and_process_build_what_simpys_constructors_build() -> None:
    """``event``, ``timeout`` and ``process`` skip SimPy's constructors (and a call to
    ``schedule``): the objects are SimPy's classes (subclasses that declare their fields, so
    that the compiled engine keeps them in slots), with the fields and queue entries the
    constructors make."""
    env = CountingEnvironment()

    def gen() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1.0)

    ev_ours, ev_theirs = env.event(), simpy.Event(env)
    assert type(ev_theirs) is simpy.Event and isinstance(ev_ours, simpy.Event)
    assert _fields(ev_ours) == _fields(ev_theirs)
    assert _fields(ev_ours) == {"env": env, "callbacks": [], "_value": PENDING}
    ours, theirs = env.timeout(2.5, "v"), simpy.Timeout(env, 2.5, "v")
    assert type(theirs) is simpy.Timeout and isinstance(ours, simpy.Timeout)
    assert _fields(ours) == _fields(theirs) and _fields(ours)["_delay"] == 2.5
    p_ours, p_theirs = env.process(gen()), simpy.Process(env, gen())
    assert type(p_theirs) is simpy.Process and isinstance(p_ours, simpy.Process)
    assert _fields(p_ours) == _fields(p_theirs)
    assert p_ours.is_alive and p_ours.name == p_theirs.name == "gen"
    for proc in (p_ours, p_theirs):
        init = proc._target
        assert type(init) is simpy.events.Initialize
        assert init.callbacks == [proc._resume] and init._ok and init._value is None
        assert list(vars(init)) == list(vars(p_theirs._target))
    keys = [entry[:3] for entry in sorted(env._queue)]
    assert keys == [(0.0, 0, 2), (0.0, 0, 3), (2.5, 1, 0), (2.5, 1, 1)]
    assert env.events_scheduled == 4
    with pytest.raises(ValueError, match="Negative delay"):
        env.timeout(-1.0)
    with pytest.raises(ValueError, match="is not a generator"):
        env.process(iter([]))  # type: ignore[arg-type]
    env.run()
    assert env.now == 2.5 and p_ours.processed and p_theirs.processed


def test_run_loops_until_empty_and_run_until_still_stops_and_resumes() -> None:
    """``run()`` steps in one loop; ``run(until=...)`` goes through SimPy's, and a run resumed
    after it sees the rest in SimPy's order."""
    env = CountingEnvironment()
    seen: list[tuple[float, int]] = []

    def note(i: int, _ev: simpy.Event) -> None:
        seen.append((env.now, i))

    for i in range(6):
        env.timeout(float(i % 3)).callbacks.append(partial(note, i))
    assert env.run(until=1.0) is None and env.now == 1.0
    assert seen == [(0.0, 0), (0.0, 3)]
    assert env.run() is None and env.now == 2.0
    assert seen == [(0.0, 0), (0.0, 3), (1.0, 1), (1.0, 4), (2.0, 2), (2.0, 5)]
    failing = env.event()
    failing.fail(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        env.run()


def test_processes_behave_as_simpys() -> None:
    """The engine's Process (its own ``_resume``) against SimPy's, program for program: return
    values, failed events thrown in, a failed child, interrupts, an uncaught exception and an
    invalid yield (tests/process_semantics.py; tests/test_native.py compares the compiled
    engine's transcript too)."""
    ours = process_semantics.transcript(CountingEnvironment)
    assert ours == process_semantics.transcript(simpy.Environment)
    assert [end[0] for _, _, end in ours] == ["ran out"] * 3 + ["raised"] * 2
