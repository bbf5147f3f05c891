"""Headroom thresholds beside open turns in the runtime's turn capacity (F-172).

A :class:`~rspp.turns.Headroom` load at its limit defers every new turn, naming the
load, its value and limit; each deferral is counted by its threshold; turns already
admitted keep their capacity. Open turns are checked first.
"""

from __future__ import annotations

import pytest

from rspp.turns import CapacityModel, Headroom
from rspp.turns._capacity import TurnCapacity

pytestmark = pytest.mark.unit


def test_a_load_at_its_threshold_defers_new_turns_and_each_deferral_is_counted() -> None:
    queued, in_flight = [0], [0]
    capacity = TurnCapacity(CapacityModel(2), (
        Headroom("queue_depth", 1, lambda: queued[0]),
        Headroom("provider:llm", 2, lambda: in_flight[0])))
    assert capacity.admit("s1", "t1", "interactive") is None
    queued[0] = 1
    assert capacity.admit("s2", "t1", "interactive") == "capacity:queue_depth:1/1"
    queued[0], in_flight[0] = 0, 3
    assert capacity.admit("s2", "t2", "background") == "capacity:provider:llm:3/2"
    in_flight[0] = 0
    assert capacity.admit("s2", "t3", "interactive") is None
    assert capacity.admit("s3", "t1", "interactive") == "capacity:full:2/2"
    assert capacity.deferred == {"queue_depth": 1, "provider:llm": 1, "full": 1}
    assert capacity.loads() == {"open_turns": (2, 2), "queue_depth": (0, 1),
                                "provider:llm": (0, 2)}


def test_headroom_without_a_turn_bound_and_bad_limits_are_refused() -> None:
    unbounded = TurnCapacity(CapacityModel(None), (Headroom("queue_depth", 1, lambda: 0),))
    for n in range(5):
        assert unbounded.admit("s", f"t{n}", "background") is None
    assert unbounded.loads()["open_turns"] == (5, None)
    with pytest.raises(ValueError, match="limit=0"):
        Headroom("queue_depth", 0, lambda: 0)
    with pytest.raises(ValueError, match="interactive_reserve needs"):
        CapacityModel(None, interactive_reserve=1)
