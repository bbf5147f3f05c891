"""The bounded send queue between a session and its connection (transports._egress)."""

from __future__ import annotations

import asyncio

from rspp.transports._egress import AudioFrame, OutboundQueue
from rspp.transports._protocol import ErrorEvent


def frame(turn: str, seq: int) -> AudioFrame:
    return AudioFrame(turn, seq, bytes(640))


async def test_a_waiting_reader_gets_items_in_order_as_they_come() -> None:
    q = OutboundQueue(max_audio=4, max_events=4)
    reader = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)  # the reader waits on the empty queue
    assert not reader.done()
    q.put_audio(frame("t1", 1))
    assert await reader == frame("t1", 1)
    ev = ErrorEvent(code="bad_input", field="audio", message="x")
    q.put_audio(frame("t1", 2))
    q.put_event(ev)
    assert [await q.get(), await q.get()] == [frame("t1", 2), ev]
    assert q.high_water == 2


async def test_a_cancelled_reader_leaves_the_queue_usable_and_close_ends_it() -> None:
    q = OutboundQueue()
    reader = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    q.put_audio(frame("t1", 1))  # no waiter left behind to wake
    assert await q.get() == frame("t1", 1)
    reader = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.close()
    assert await reader is None


async def test_full_audio_drops_the_oldest_frame_and_a_fenced_turn_is_removed() -> None:
    q = OutboundQueue(max_audio=2, max_events=1)
    assert q.put_audio(frame("t1", 1)) and q.put_audio(frame("t1", 2))
    assert not q.put_audio(frame("t2", 3))  # t1#1 dropped
    assert q.dropped_audio == 1
    assert q.drop_turn("t1") == 1
    assert await q.get() == frame("t2", 3)
    ev = ErrorEvent(code="bad_input", field="audio", message="x")
    assert q.put_event(ev) and not q.put_event(ev)
    assert q.overflowed
