"""A session's ledger of what its turns waited for shared pool slots (F-105)."""

from __future__ import annotations

from rspp.kernel import TurnPoolWaits
from rspp.kernel._pool import _MAX_TURNS


def test_a_turns_waits_add_up_and_are_taken_once_in_whole_milliseconds() -> None:
    waits = TurnPoolWaits()
    waits.add("t1", 1_500_000)
    waits.add("t1", 2_600_000)
    waits.add(None, 9_000_000_000)  # work outside a turn is nobody's wait
    waits.add("t2", 999_999)
    assert waits.take("t1") == 4
    assert waits.take("t1") == 0  # taken: forgotten
    assert waits.take("t2") == 0  # under a millisecond
    assert waits.take("never") == 0


def test_turns_never_taken_are_forgotten_oldest_first() -> None:
    waits = TurnPoolWaits()
    for i in range(_MAX_TURNS + 1):
        waits.add(f"t{i}", 5_000_000)
    assert waits.take("t0") == 0  # the oldest went when the bound was passed
    assert waits.take("t1") == 5
    assert waits.take(f"t{_MAX_TURNS}") == 5
