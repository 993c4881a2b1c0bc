"""A transcript of what SimPy's processes do (values, failures, interrupts, invalid yields),
written against any environment class: the engine's environment builds its own Process,
Timeout and Event subclasses (compiled, with their own ``_resume``), and the tests compare
their transcript with SimPy's own (tests/test_sim_events.py from source, tests/test_native.py
compiled)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

Transcript = list[list[Any]]


def _returns_and_waits(env: simpy.Environment, log: Transcript) -> None:
    def child() -> Generator[simpy.Event, Any, int]:
        yield env.timeout(1.5)
        return 7

    def parent() -> Generator[simpy.Event, Any, None]:
        value = yield env.process(child())
        log.append(["child returned", value, env.now])
        t = env.timeout(0.5, "v")
        log.append(["timeout value", (yield t), env.now])
        log.append(["processed again", (yield t), env.now])  # an event already processed

    env.process(parent())


def _failures_are_thrown_in(env: simpy.Environment, log: Transcript) -> None:
    def failing() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1.0)
        raise KeyError("child")

    def waiter() -> Generator[simpy.Event, Any, None]:
        ev = env.event()
        ev.fail(ValueError("failed event"))
        try:
            yield ev
        except ValueError as exc:
            log.append(["caught", type(exc).__name__, str(exc), env.now])
        try:
            yield env.process(failing())
        except KeyError as exc:
            log.append(["caught child", type(exc).__name__, str(exc), env.now])

    env.process(waiter())


def _interrupts(env: simpy.Environment, log: Transcript) -> None:
    def sleeper() -> Generator[simpy.Event, Any, str]:
        try:
            yield env.timeout(10.0)
        except simpy.Interrupt as intr:
            log.append(["interrupted", intr.cause, env.now])
        yield env.timeout(1.0)
        return "woke"

    def waker(target: simpy.Process) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(2.0)
        target.interrupt("wake up")
        log.append(["after interrupt", target.is_alive, env.now])
        log.append(["sleeper returned", (yield target), env.now])

    env.process(waker(env.process(sleeper())))


def _uncaught(env: simpy.Environment, log: Transcript) -> None:
    def crash() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(3.0)
        raise RuntimeError("uncaught")

    env.process(crash())


def _invalid_yield(env: simpy.Environment, log: Transcript) -> None:
    def bad() -> Generator[Any, Any, None]:
        yield env.timeout(1.0)
        yield 42

    env.process(bad())


PROGRAMS: list[Callable[[simpy.Environment, Transcript], None]] = [
    _returns_and_waits,
    _failures_are_thrown_in,
    _interrupts,
    _uncaught,
    _invalid_yield,
]


def transcript(make_env: Callable[[], simpy.Environment]) -> Transcript:
    """Every program's log in a fresh environment, and how its run ended."""
    out: Transcript = []
    for program in PROGRAMS:
        env = make_env()
        log: Transcript = []
        program(env, log)
        try:
            env.run()
            end = ["ran out", env.now]
        except Exception as exc:  # the transcript records how the run ended
            invalid = "Invalid yield value" in str(exc)
            end = ["raised", type(exc).__name__, str(exc) if not invalid else "invalid", env.now]
        out.append([program.__name__, log, end])
    return out
