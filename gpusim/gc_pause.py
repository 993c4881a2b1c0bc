"""Python's cyclic garbage collector kept off the model's own objects during an event loop."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

LOOP_YOUNG_THRESHOLD = 20_000
"""Young-generation threshold inside :func:`gc_frozen`: net new tracked objects between young
passes (Python's default is 700). A FlashMoE forward (bench_moe) made 295 young passes and spent
about 10 % of its CPU in them; at 20,000 it makes a handful. What it delays is only the freeing
of garbage in cycles, at most this many objects' worth."""


@contextmanager
def gc_frozen() -> Iterator[None]:
    """Run the body with every object that exists now moved out of the collector's reach
    (``gc.freeze``), and back in after (``gc.unfreeze``), even when the body raises.

    An event loop allocates hundreds of thousands of short-lived containers (events, callback
    lists, heap entries, records), which trigger collections; each full one walks every object of
    the process, the model built before the loop included, and finds almost nothing there (a
    FlashMoE forward: 564 young, 51 middle and 4 full passes, about 15 % of its CPU, a few hundred
    objects in cycles). Frozen, those passes skip the model; the collector stays on, so cyclic
    garbage made during the loop is still freed and memory stays bounded. A caller that froze
    objects itself keeps its arrangement: nothing is frozen or unfrozen then.

    The young generation's threshold is raised to :data:`LOOP_YOUNG_THRESHOLD` meanwhile (and
    set back after): a young pass walks every tracked object made since the last pass that is
    still alive, which in an event loop is most of the in-flight events, records and heap
    entries (thousands) whatever the threshold, so fewer passes do less work. A caller's higher
    threshold is kept."""
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], LOOP_YOUNG_THRESHOLD), *threshold[1:])
    try:
        if gc.get_freeze_count():
            yield
            return
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
    finally:
        gc.set_threshold(*threshold)
