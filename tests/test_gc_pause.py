"""``gc_frozen``: the objects that exist on entry are frozen inside and unfrozen after."""

from __future__ import annotations

import gc

import pytest

from gpusim.gc_pause import gc_frozen


def test_gc_frozen_freezes_the_objects_of_entry_and_unfreezes_them_after() -> None:
    assert gc.get_freeze_count() == 0
    with gc_frozen():
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()  # the collector stays on: cycles made inside are still freed
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), gc_frozen():
        raise RuntimeError("body failed")
    assert gc.get_freeze_count() == 0  # unfrozen again after an error


def test_a_callers_frozen_objects_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_frozen():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
