"""The ingress order lock of a live connection (transports._ingress.IngressLock)."""

from __future__ import annotations

import asyncio

import pytest

from rspp.transports._ingress import IngressLock

pytestmark = pytest.mark.unit


async def test_free_lock_is_taken_without_waiting_and_held_once() -> None:
    lock = IngressLock()
    assert lock.try_acquire() and lock.locked()
    assert not lock.try_acquire()  # held: a second taker must wait
    lock.release()
    assert not lock.locked()
    async with lock:
        assert lock.locked()
    assert not lock.locked()


async def test_waiters_get_the_lock_in_arrival_order_and_nobody_overtakes() -> None:
    lock = IngressLock()
    order: list[str] = []

    async def frame(name: str) -> None:
        async with lock:
            order.append(name)
            await asyncio.sleep(0)

    assert lock.try_acquire()
    waiting = [asyncio.ensure_future(frame(n)) for n in ("a", "b", "c")]
    await asyncio.sleep(0)  # all three queue up behind the holder
    lock.release()  # handed to "a": it stays held, so a late taker cannot overtake
    assert lock.locked() and not lock.try_acquire()
    late = asyncio.ensure_future(frame("late"))
    await asyncio.gather(*waiting, late)
    assert order == ["a", "b", "c", "late"]
    assert not lock.locked()


async def test_a_cancelled_waiter_passes_the_lock_on() -> None:
    lock = IngressLock()
    got: list[str] = []

    async def take(name: str) -> None:
        await lock.acquire()
        got.append(name)
        lock.release()

    assert lock.try_acquire()
    first = asyncio.ensure_future(take("first"))
    second = asyncio.ensure_future(take("second"))
    await asyncio.sleep(0)
    lock.release()  # handed to "first" ...
    first.cancel()  # ... which is cancelled before it runs: "second" gets it
    await asyncio.gather(first, second, return_exceptions=True)
    assert first.cancelled() and got == ["second"] and not lock.locked()
    # a waiter cancelled while still waiting is skipped
    assert lock.try_acquire()
    gone = asyncio.ensure_future(take("gone"))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    lock.release()
    assert not lock.locked() and got == ["second"]
