"""Headroom thresholds beside open turns in the runtime's turn capacity (F-172).

A :class:`~rspp.turns.Headroom` load at its limit defers every new turn, naming the
load, its value and limit; each deferral is counted by its threshold; turns already
admitted keep their capacity. Open turns are checked first.
"""

from __future__ import annotations

import pytest

from rspp.server._capacity_control import CapacityControl
from rspp.server._cpu_load import CpuHeadroom, CpuLoad
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


class _Cpu:
    """The CPU-time and clock sources a :class:`CpuLoad` reads (injected, exact)."""

    def __init__(self) -> None:
        self.now, self.used = 0.0, 0.0

    def run(self, seconds: float, busy_cpus: float) -> None:
        self.now += seconds
        self.used += seconds * busy_cpus


def test_cpu_load_is_process_cpu_time_over_a_sliding_window_of_wall_time() -> None:
    src = _Cpu()
    load = CpuLoad(window_s=1.0, cpu_seconds=lambda: src.used, clock=lambda: src.now, cpus=2)
    assert load.sample() == 0  # one sample: no window yet
    for _ in range(10):
        src.run(0.1, 1.0)  # one of two CPUs busy
        load.sample()
    assert load.percent == 50
    for _ in range(5):  # idle for half the window: the busy half still counts
        src.run(0.1, 0.0)
        load.sample()
    assert load.percent == 25
    for _ in range(10):
        src.run(0.1, 2.0)
        load.sample()
    assert load.percent == 100  # the window slid past the idle samples
    with pytest.raises(ValueError, match="must be positive"):
        CpuLoad(window_s=0)


def test_cpu_headroom_trips_at_its_threshold_and_clears_at_the_resume_level() -> None:
    src = _Cpu()
    cpu = CpuHeadroom(40, 20, CpuLoad(window_s=0.125, cpu_seconds=lambda: src.used,
                                      clock=lambda: src.now, cpus=1))
    capacity = TurnCapacity(CapacityModel(None), (cpu.probe(),))
    events: list[tuple[str, int, int, str]] = []
    control = CapacityControl(capacity.headroom, cpu, lambda e: events.append(
        (e.resource, e.load, e.threshold, e.decision)))
    cpu.sample()
    for busy, admitted in ((0.3, True), (0.45, False), (0.3, False), (0.2, True), (0.3, True)):
        src.run(0.125, busy)  # one window each
        control.tick()
        assert (capacity.admit("s", f"t{busy}", "interactive") is None) == admitted, busy
    assert events == [("cpu", 45, 40, "defer"), ("cpu", 20, 40, "admit")]
    assert capacity.deferred == {"cpu": 2}
    assert control.events == {("cpu", "defer"): 1, ("cpu", "admit"): 1}
    with pytest.raises(ValueError, match="cpu_resume_percent=40"):
        CpuHeadroom(40, 40)


def test_a_deferral_at_a_threshold_not_yet_judged_trips_it_before_it_is_recorded() -> None:
    queued = [0]
    capacity = TurnCapacity(CapacityModel(None), (Headroom("queue_depth", 1, lambda: queued[0]),))
    events: list[str] = []
    control = CapacityControl(capacity.headroom, None, lambda e: events.append(e.reason))
    capacity.on_defer = control.deferred
    queued[0] = 1
    assert capacity.admit("s", "t1", "interactive") == "capacity:queue_depth:1/1"
    assert events == ["capacity_control:queue_depth:1/1:defer"]
    control.tick()  # still over: no second event
    queued[0] = 0
    control.tick()
    assert events[1:] == ["capacity_control:queue_depth:0/1:admit"]
    assert capacity.admit("s", "t2", "interactive") is None
