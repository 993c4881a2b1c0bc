"""The engine's heappush and heappop: ``_heap_c``'s where the compiled engine runs, heapq's
elsewhere.

``_heap_c.c`` is heapq's sifting with the tuple comparison done in C for floats and ints (every
outcome Python's, the list after each call heapq's; tests/test_native.py compares them). The
engine's heaps are lists of tuples led by floats and ints (SimPy's queue, the fluid network's
completion heaps, the persistent kernel's held deliveries), and comparing those through Python
objects was about 15 % of a FlashMoE DES's instructions. Where the engine runs from source
(gpusim/native.py: the tests, ``GPUSIM_PURE_PYTHON``, a build without it), heapq's run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpusim.native import c_module

if TYPE_CHECKING:  # one signature for both: heapq's
    from heapq import heappop, heappush
else:
    _twin = c_module("gpusim.engine._heap_c")
    if _twin is None:
        from heapq import heappop, heappush
    else:
        heappop, heappush = _twin.heappop, _twin.heappush

__all__ = ["heappop", "heappush"]
