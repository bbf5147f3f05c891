"""``settle_heap``: what ``rspp serve`` does to the collector once started (server/_loop.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from rspp.server._loop import GC_YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector")
def test_the_start_up_heap_leaves_the_collectors_scans() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    gc.collect()  # what is garbage now is collected, not frozen
    tracked = len(gc.get_objects())
    frozen = settle_heap()
    assert frozen == gc.get_freeze_count() >= tracked * 0.9
    assert len(gc.get_objects()) < tracked * 0.1  # a full collection visits only the rest
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
    later = [[i] for i in range(1000)]  # allocated after start-up: still collected
    assert gc.is_tracked(later[0]) and any(o is later for o in gc.get_objects())


@pytest.mark.usefixtures("collector")
def test_a_higher_threshold_or_a_disabled_collector_is_kept() -> None:
    gc.set_threshold(50_000, 20, 30)
    settle_heap()
    assert gc.get_threshold() == (50_000, 20, 30)
    gc.set_threshold(0, 10, 10)  # the collector disabled (threshold 0): left so
    settle_heap()
    assert gc.get_threshold() == (0, 10, 10)
