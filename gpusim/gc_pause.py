"""Python's cyclic garbage collector paused around a simulation's event loop."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the body with the cyclic garbage collector off; it is on again after (if it was on
    before), even when the body raises.

    An event loop allocates hundreds of thousands of short-lived container objects (events,
    their callback lists, heap entries, task records) that reference counting frees. The
    collector still counts them, and its passes (the full ones walk every object of the process)
    took about 15 % of a FlashMoE forward's CPU time while finding a few hundred objects in
    cycles. Reference counting still frees everything else while it is off; objects in cycles
    wait for the first collection after the body."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
