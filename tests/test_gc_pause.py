"""``gc_paused``: the cyclic collector is off inside and back in its former state after."""

from __future__ import annotations

import gc

import pytest

from gpusim.gc_pause import gc_paused


def test_gc_paused_restores_the_former_state() -> None:
    was = gc.isenabled()
    try:
        gc.enable()
        with gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(RuntimeError), gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("body failed")
        assert gc.isenabled()  # on again after an error
        gc.disable()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # a caller's disabled collector stays disabled
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()
