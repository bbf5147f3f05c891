"""LogLimit: the first lines of a window in full, the rest counted into one summary (NF-006,
NF-013); windows driven by an injected clock, no sleeps."""

from __future__ import annotations

import pytest

from rspp.observability import LogLimit, LogVerdict, held_summary


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_logs_the_first_lines_then_one_summary_per_window_counted_by_key() -> None:
    clock = Clock()
    limit = LogLimit(first=3, interval_s=10.0, clock=clock)
    got = [limit.admit(k) for k in ("audio", "$", "audio", "audio", "$", "audio")]
    assert [v.full for v in got] == [True, True, True, False, False, False]
    assert all(v.held is None for v in got)  # the window is still open
    clock.now += 9.999
    assert limit.admit("type") == LogVerdict(None, False)
    clock.now += 0.001  # the window is over: its counts come with the next occurrence
    assert limit.admit("audio") == LogVerdict({"audio": 2, "$": 1, "type": 1}, True)
    assert limit.admit("audio") == LogVerdict(None, True)  # a new window: lines again
    assert limit.flush() is None  # nothing held in it


def test_flush_hands_over_the_open_windows_counts_once() -> None:
    clock = Clock()
    limit = LogLimit(first=1, interval_s=5.0, clock=clock)
    assert limit.admit("a").full
    assert not limit.admit("a").full and not limit.admit("b").full
    assert limit.flush() == {"a": 1, "b": 1}
    assert limit.flush() is None
    # a quiet source is never held back: its next occurrence, much later, is a line
    clock.now += 3600
    assert limit.admit("a") == LogVerdict(None, True)


def test_every_occurrence_is_a_line_or_a_count() -> None:
    clock = Clock()
    limit = LogLimit(first=5, interval_s=10.0, clock=clock)
    lines, counted = 0, 0
    for i in range(1000):  # 1000 occurrences over 100 s
        clock.now += 0.1
        v = limit.admit(f"k{i % 3}")
        lines += v.full
        counted += sum((v.held or {}).values())
    counted += sum((limit.flush() or {}).values())
    assert lines + counted == 1000
    assert lines <= 5 * 11  # at most `first` a window, one window per 10 s (and the first)


def test_summary_text_names_the_total_and_each_key_most_frequent_first() -> None:
    assert held_summary("input rejections", {"$": 1, "audio": 7, "type": 1}) == (
        "9 more input rejections not logged one by one (audio: 7, $: 1, type: 1)")


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        LogLimit(interval_s=0)
