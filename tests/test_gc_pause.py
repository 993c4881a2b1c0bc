"""``gc_frozen``: the objects that exist on entry are frozen inside and unfrozen after, and the
young generation's threshold is raised inside and set back after."""

from __future__ import annotations

import gc

import pytest

from gpusim.gc_pause import LOOP_YOUNG_THRESHOLD, gc_frozen


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


def test_the_young_threshold_is_raised_inside_and_set_back_after() -> None:
    before = gc.get_threshold()
    with gc_frozen():
        inside = gc.get_threshold()
        assert inside[0] == max(before[0], LOOP_YOUNG_THRESHOLD)
        assert inside[1:] == before[1:]
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), gc_frozen():
        raise RuntimeError("body failed")
    assert gc.get_threshold() == before  # set back after an error too


def test_a_callers_higher_threshold_is_kept() -> None:
    before = gc.get_threshold()
    gc.set_threshold(10 * LOOP_YOUNG_THRESHOLD, *before[1:])
    try:
        with gc_frozen():
            assert gc.get_threshold()[0] == 10 * LOOP_YOUNG_THRESHOLD
    finally:
        gc.set_threshold(*before)
