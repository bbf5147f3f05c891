"""SystemClock and VirtualClock implement the Clock protocol deterministically."""

from __future__ import annotations

import asyncio

import pytest

from rspp.kernel._clock import ClockError, SystemClock, VirtualClock
from rspp.kernel._handles import Clock

pytestmark = pytest.mark.unit


def test_both_clocks_satisfy_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(VirtualClock(), Clock)


def test_system_clock_monotonic_and_wall() -> None:
    clock = SystemClock()
    a = clock.monotonic_ns()
    b = clock.monotonic_ns()
    assert b >= a
    assert clock.wall_ms() > 1_600_000_000_000


async def test_virtual_sleep_advances_in_deadline_order() -> None:
    clock = VirtualClock(start_monotonic_ns=0, start_wall_ms=1_000)
    woke: list[tuple[str, int]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic_ns()))

    async with asyncio.TaskGroup() as tg:
        tg.create_task(sleeper("late", 2.0))
        tg.create_task(sleeper("early", 0.5))
        tg.create_task(sleeper("mid", 1.0))
    assert woke == [("early", 500_000_000), ("mid", 1_000_000_000), ("late", 2_000_000_000)]
    assert clock.wall_ms() == 3_000


async def test_manual_advance_wakes_only_due_sleepers() -> None:
    clock = VirtualClock(auto_advance=False)
    task = asyncio.create_task(clock.sleep(0.1))
    await asyncio.sleep(0)
    clock.advance(50)
    await asyncio.sleep(0)
    assert not task.done()
    assert clock.pending_timers == 1
    clock.advance(50)
    await task
    assert clock.monotonic_ns() == 100_000_000
    assert clock.pending_timers == 0


async def test_cancelled_sleeper_is_removed() -> None:
    clock = VirtualClock(auto_advance=False)
    task = asyncio.create_task(clock.sleep(1.0))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.next_deadline_ns() is None


async def test_negative_values_rejected() -> None:
    clock = VirtualClock()
    with pytest.raises(ClockError, match="never goes backwards"):
        clock.advance(-1)
    with pytest.raises(ClockError, match="seconds must be >= 0"):
        await clock.sleep(-0.1)
    with pytest.raises(ClockError, match="seconds must be >= 0"):
        await SystemClock().sleep(-1)
