"""The events of a persistent kernel (:mod:`gpusim.execution.persistent`): a task batch's end and
a closed-form transfer's end. SimPy events built without their constructor, in a module of their
own so that persistent.py compiles with mypyc (gpusim/native.py), which cannot compile a subclass
of SimPy's classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import simpy

if TYPE_CHECKING:
    from gpusim.execution.persistent import TaskGroup

Payload = Any
Callback = Callable[[Payload], None]


class BypassedTransfer(simpy.Event):
    """A transfer timed in closed form, and the event of its end: ``env.timeout(delay_s)`` with
    one callback. Like a timeout it is triggered when it is made (``Event.__init__`` would make
    it pending) and ``env.schedule(rec, NORMAL, delay_s)`` gives it a timeout's key (``now +
    delay_s`` and the next id), so the order of events is the timeout's. ``FlowGate.send``
    builds one per closed-form transfer without the constructor (``new_event_object``) and sets
    every field below."""

    _ok = True  # triggered when made, as a timeout is (class attributes: no store per event)
    _value = None
    route: tuple[int, ...]
    size_B: float
    cap_Bps: float
    enter_s: float
    """When the bytes start to move (the send's time plus its latency)."""
    callback: Callback
    payload: Payload
    alive: bool
    """False once it has ended or moved into the fluid network (its event is then ignored)."""


class TaskBatch(simpy.Event):
    """Tasks ``first .. first + k - 1`` of ``group`` running on one processor since
    ``start_s``: the payload of their transfer and, where they compute, the event of their
    compute's end (triggered when made, as :class:`BypassedTransfer` is, and scheduled by the
    kernel). The kernel builds one per task, without the constructor (``new_event_object``): it
    sets ``callbacks`` where the batch is an event, and the four fields below."""

    _ok = True
    _value = None
    group: TaskGroup
    first: int
    k: int
    start_s: float
