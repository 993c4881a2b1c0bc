"""The thin SimPy wrapper every model runs in: one environment and one trace recorder.

It holds no random generator: the engine is deterministic, and a workload that draws random
numbers makes its own generators from the scenario's seed, which the workload registry passes to
both fidelities alike (``des(node, workload, *, seed)``, ``analytic(..., *, seed)``)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import simpy
from simpy.core import BoundClass, EmptySchedule, StopSimulation
from simpy.events import NORMAL, PENDING, URGENT, Event, EventPriority, Initialize, Process, Timeout

from gpusim.engine.heap import heappop, heappush
from gpusim.engine.trace import TraceRecorder
from gpusim.gc_pause import gc_frozen


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it schedules (for event-rate figures) and can
    run a call where a triggered event would run it, without the event (:meth:`defer`).

    Every event, a process's start included, reaches SimPy's queue through ``schedule``; this
    one pushes the same heap entry SimPy's does, with its own count as the entry's id (the
    tie-break that keeps events of one instant and priority in scheduling order, as SimPy's
    counter does), so counting costs nothing and the event order is SimPy's. ``timeout`` makes
    SimPy's :class:`~simpy.events.Timeout` and pushes it itself (SimPy's constructor calls
    ``schedule``: a second Python call for the event most models make most), and ``process``
    likewise builds SimPy's Process and its start.
    """

    # SimPy's own state, declared so that the compiled class keeps it in slots (SimPy's code
    # reads and writes it through them, as before through the instance dict)
    _now: float
    _queue: list[tuple[float, EventPriority, int, Event]]
    _active_proc: Process | None

    def __init__(self, initial_time: float = 0.0) -> None:
        super().__init__(initial_time)
        self._ids = 0  # the next event id: events, deferred calls and held calls take them
        # ids taken by calls that are not events (yet): events_scheduled is _ids less these,
        # so scheduling an event updates one counter
        self._not_events = 0
        self._deferred: list[tuple[int, Callable[[], None]]] = []
        # the key (priority, id) of the event or deferred call running now (see :meth:`passed`)
        self._cur_prio: int = NORMAL
        self._cur_eid = -1
        # SimPy binds its event factories (timeout, event, process, ...) to each instance for
        # speed, but only those of the instance's own class: bind the base class's too, or
        # every env.timeout() would go through a descriptor (about 15 % of the event rate).
        for name, attr in vars(simpy.Environment).items():
            if isinstance(attr, BoundClass):
                setattr(self, name, getattr(self, name))

    @property
    def events_scheduled(self) -> int:
        """Events pushed on SimPy's queue so far (deferred calls run in place are not events)."""
        return self._ids - self._not_events

    def schedule(self, event: Event, priority: EventPriority = NORMAL, delay: float = 0) -> None:
        """Schedule ``event`` with ``priority`` after ``delay`` (SimPy's contract), counting it."""
        eid = self._ids
        self._ids = eid + 1
        heappush(self._queue, (self._now + delay, priority, eid, event))

    def timeout(self, delay: float = 0, value: Any | None = None) -> Timeout:
        """``env.timeout(delay, value)``: SimPy's Timeout (its compiled subclass), scheduled."""
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        ev = _Timeout(self, delay, value)
        eid = self._ids
        self._ids = eid + 1
        heappush(self._queue, (self._now + delay, NORMAL, eid, ev))
        return ev

    def event(self) -> Event:
        """``env.event()``: SimPy's Event (its compiled subclass)."""
        return _Event(self)

    def process(self, generator: Generator[Event, Any, Any]) -> Process:
        """``env.process(generator)``: SimPy's Process (its compiled subclass) and its
        Initialize event, the event pushed here (one call instead of three: a stream starts one
        per operation)."""
        if not hasattr(generator, "throw"):
            raise ValueError(f"{generator} is not a generator.")
        proc = _Process(self, generator)
        init = new_event_object(Initialize)
        init.env = self
        init.callbacks = [proc._resume]
        init._value = None
        init._ok = True
        eid = self._ids
        self._ids = eid + 1
        heappush(self._queue, (self._now, URGENT, eid, init))
        proc._target = init
        return proc

    def defer(self, call: Callable[[], None]) -> None:
        """Run ``call()`` exactly where an event triggered now with ``call`` as its only callback
        would run (``ev = env.event(); ev.callbacks.append(...); ev.succeed()``), but without
        the event when nothing else is due before it: the call takes the next event id, and
        once the current event's callbacks are done it runs in place unless the queue holds an
        entry that sorts before (now, NORMAL, that id); then, and only then, an event with that
        very key carries it (and the calls deferred after it). The order of every callback is
        therefore the one the event would give."""
        eid = self._ids
        self._ids = eid + 1
        self._not_events += 1
        self._deferred.append((eid, call))

    def succeed(self, event: Event, value: Any = None) -> None:
        """``event.succeed(value)`` with the event's callbacks run through :meth:`defer`: where
        the scheduled event would run them, mostly without scheduling it."""
        if event._value is not PENDING:
            raise RuntimeError(f"{event} has already been triggered")
        event._ok = True
        event._value = value
        self.defer(partial(_run_callbacks, event))

    def peek(self) -> float:
        """The time of the next event (SimPy's ``peek``); now while a deferred call waits."""
        return self._now if self._deferred else float(super().peek())

    def step(self) -> None:
        """Process the next event (SimPy's ``step``), then the calls deferred meanwhile."""
        self._steps(once=True)

    def run(self, until: float | Event | None = None) -> Any:
        """SimPy's ``run``; without ``until``, the steps run in one loop (no call per event)."""
        if until is not None:
            return super().run(until)
        try:
            self._steps(once=False)
        except StopSimulation as exc:
            return exc.args[0]
        except EmptySchedule:
            pass
        return None

    def _steps(self, once: bool) -> None:
        """Process events as :meth:`step` does: one when ``once``, else until the queue is
        empty (``EmptySchedule``)."""
        queue = self._queue
        while True:
            if not self._deferred:  # else some were deferred outside a step: run them first
                # SimPy 4's step, inlined: through super() it adds a quarter to the bare loop
                try:
                    self._now, self._cur_prio, self._cur_eid, event = heappop(queue)
                except IndexError:
                    raise EmptySchedule from None
                if isinstance(event, _Timeout):  # most events; compiled, its slots read directly
                    callbacks = event.callbacks
                    event.callbacks = None
                    ok = True  # a timeout is triggered when made: it cannot fail
                else:
                    callbacks, event.callbacks = event.callbacks, None  # type: ignore[assignment]
                    ok = event._ok
                try:
                    for callback in callbacks:
                        callback(event)
                except StopSimulation:  # run(until=...): the rest run when the simulation resumes
                    event.callbacks = callbacks[callbacks.index(callback) + 1 :]
                    self.schedule(event, EventPriority(-1))
                    raise
                if not ok and not hasattr(event, "_defused"):
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    raise exc
            if self._deferred:
                self._run_calls(self._deferred)
            if once:
                return

    def _run_calls(self, calls: list[tuple[int, Callable[[], None]]]) -> None:
        """Run deferred ``calls`` in order while nothing on the queue is due before the next;
        hand the rest to an event with the next one's key when something is. Calls deferred
        meanwhile join ``calls`` when it is the pending list (their ids come after), else wait
        in it."""
        queue, now = self._queue, self._now
        while calls:
            eid = calls[0][0]
            if queue:
                head = queue[0]
                if head[0] == now and (head[1] < NORMAL or (head[1] == NORMAL and head[2] < eid)):
                    self._not_events -= 1  # the call's id is now an event's
                    carrier = triggered_event(self, partial(_run_deferred, self, calls))
                    heappush(queue, (now, NORMAL, eid, carrier))
                    if calls is self._deferred:
                        self._deferred = []
                    return
            self._cur_prio = NORMAL
            self._cur_eid = eid
            calls.pop(0)[1]()

    def take_id(self) -> int:
        """Take the id an event scheduled now would take, without scheduling one: a model that
        keeps a call for later in its own virtual time (a *held* call) gives it the key
        ``(time, NORMAL, id)`` its event would have had, so that every other event keeps its id
        and the held call can still be placed exactly among them (:meth:`passed`,
        :meth:`schedule_held`)."""
        eid = self._ids
        self._ids = eid + 1
        self._not_events += 1
        return eid

    def passed(self, time: float, eid: int) -> bool:
        """Whether an event with the key ``(time, NORMAL, eid)`` would have run before the event
        or deferred call running now: a held call with that key must then run (in key order)
        before anything the running one does to the state it touches."""
        now = self._now
        if time != now:
            return time < now
        prio = self._cur_prio
        return prio > NORMAL or (prio == NORMAL and eid < self._cur_eid)

    def schedule_held(self, time: float, eid: int, call: Callable[[], None]) -> None:
        """Schedule a held call as the event it stands for: an event, already triggered, with
        the key ``(time, NORMAL, eid)`` (``time`` not before now) and ``call`` as its callback."""
        self._not_events -= 1  # the held call's id is now an event's
        heappush(self._queue, (time, NORMAL, eid, triggered_event(self, partial(_run_held, call))))


new_event_object = object.__new__
"""An event object without its constructor (``new_event_object(Timeout)``): the caller sets the
attributes SimPy's constructor would (``env``, ``callbacks``, and ``_value``/``_ok`` when it is
triggered); see :meth:`CountingEnvironment.timeout`."""


def _run_callbacks(event: Event) -> None:
    """Process a triggered ``event`` as a step does (see :meth:`CountingEnvironment.succeed`)."""
    callbacks, event.callbacks = event.callbacks, None  # type: ignore[assignment]
    for callback in callbacks:
        callback(event)


class _Event(Event):
    """SimPy's Event with its fields declared: compiled, they live in slots (SimPy's own code
    reads and writes them through the slots' descriptors, as it did through the instance dict),
    and the constructor is one native call. Built as SimPy's constructor builds one."""

    env: Any
    callbacks: Any
    _value: Any
    _ok: Any

    def __init__(self, env: CountingEnvironment) -> None:
        self.env = env
        self.callbacks = []
        self._value = PENDING


class TriggeredEvent(_Event):
    """An event triggered when it is made (ok, value ``None``), as a timeout is; SimPy's
    constructor is not called. The maker sets ``callbacks`` (and ``env`` where anything reads
    it) and schedules it: ``env.schedule(ev, priority, delay)`` gives it the key a timeout of
    that delay would have. Subclasses add the fields their callbacks read (the persistent
    kernel's task batches and closed-form transfers)."""

    def __init__(self) -> None:
        self._ok = True
        self._value = None


class _Timeout(Timeout):
    """SimPy's Timeout with its fields declared (see :class:`_Event`); the environment
    schedules it (:meth:`CountingEnvironment.timeout`)."""

    env: Any
    callbacks: Any
    _value: Any
    _ok: Any
    _delay: Any

    def __init__(self, env: CountingEnvironment, delay: float, value: Any) -> None:
        self.env = env
        self.callbacks = []
        self._value = value
        self._delay = delay
        self._ok = True


class _Process(Process):
    """SimPy's Process with its fields declared (see :class:`_Event`) and its ``_resume``
    compiled; the environment schedules its start (:meth:`CountingEnvironment.process`)."""

    env: Any
    callbacks: Any
    _value: Any
    _ok: Any
    _generator: Any
    _target: Any

    def __init__(self, env: CountingEnvironment, generator: Generator[Event, Any, Any]) -> None:
        self.env = env
        self.callbacks = []
        self._value = PENDING
        self._generator = generator

    def _resume(self, event: Any) -> None:
        """SimPy 4's ``Process._resume``, as it is: resume the generator with ``event``'s value
        (or throw its exception in), until it yields an event not yet processed (then wait for
        it) or ends (then trigger the process with its return value or its exception)."""
        env = self.env
        env._active_proc = self
        while True:
            try:
                if isinstance(event, _Timeout) or event._ok:  # a timeout (most): no read
                    event = self._generator.send(event._value)
                else:
                    # the process handles the failed event or fails itself; an exclusive copy
                    # of the exception, so other processes' tracebacks stay their own
                    event._defused = True
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    event = self._generator.throw(exc)
            except StopIteration as e:
                self._ok = True
                self._value = e.args[0] if len(e.args) else None
                env.schedule(self)
                event = None
                break
            except BaseException as e:
                self._ok = False
                self._value = e
                env.schedule(self)
                event = None
                break
            callbacks: Any = getattr(event, "callbacks", _NO_CALLBACKS)
            if callbacks is _NO_CALLBACKS:
                raise RuntimeError(f'Invalid yield value "{event}"')
            if callbacks is not None:  # not processed yet: resume when it is
                callbacks.append(self._resume)
                break
        self._target = event
        env._active_proc = None


_NO_CALLBACKS: Final = object()
"""What a yielded value without ``callbacks`` gives :meth:`_Process._resume` (not an event)."""


def triggered_event(env: CountingEnvironment, callback: Callable[[Event], None]) -> Event:
    """A :class:`TriggeredEvent` of ``env`` with ``callback`` as its one callback, for the caller
    to schedule."""
    ev = TriggeredEvent()
    ev.env = env
    ev.callbacks = [callback]
    return ev


def _run_deferred(
    env: CountingEnvironment, calls: list[tuple[int, Callable[[], None]]], _event: Event
) -> None:
    """The callback of an event that carries deferred ``calls`` which could not run in place
    (:meth:`CountingEnvironment.defer`)."""
    env._run_calls(calls)


def _run_held(call: Callable[[], None], _event: Event) -> None:
    """The callback of an event that runs a held call (:meth:`CountingEnvironment.take_id`)."""
    call()


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
        """Run until no events remain; returns the final time in seconds. The model built
        before is frozen for the garbage collector meanwhile (:func:`gc_frozen`)."""
        with gc_frozen():
            self.env.run()
        return self.now_s

    def events_scheduled(self) -> int:
        """How many events SimPy has scheduled so far (for event-rate figures)."""
        return self.env.events_scheduled
