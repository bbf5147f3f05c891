"""Fencing at the resource (protocol 1.2): the client refuses outputs of a superseded epoch.

A real WebSocket server (``websockets``) plays a runtime: ``ready`` at lease epoch 3, then
outputs, ``epoch`` events and audio frames. :class:`~rspp.client.LiveClient` connections
that share one :class:`~rspp.client.EpochFence` refuse every output of an epoch lower
than the highest seen of the session (on any connection), count them, and hand on the
rest; ``ready``/``epoch``/``stats`` are never refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.asyncio.server import ServerConnection

from rspp.client import EpochFence, LiveClient
from rspp.transports import (
    EpochEvent,
    Ready,
    ReplyText,
    ServerEvent,
    Stats,
    TurnEvent,
    decode_server,
    encode_message,
)


class _Runtime:
    """Sends what a test queues, after ``ready`` at ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.out: asyncio.Queue[str | bytes | None] = asyncio.Queue()

    async def __call__(self, ws: ServerConnection) -> None:
        await ws.recv()  # start
        await ws.send(encode_message(Ready(session_id="s1", sample_rate=16000,
                                           output_sample_rate=16000, frame_ms=20,
                                           lease_epoch=self.epoch)).decode())
        while (item := await self.out.get()) is not None:
            await ws.send(item)
        await ws.close()

    def send(self, *items: ServerEvent | bytes) -> None:
        for item in items:
            self.out.put_nowait(item if isinstance(item, bytes)
                                else encode_message(item).decode())


async def _connect(runtime: _Runtime, fence: EpochFence) -> tuple[LiveClient, object]:
    server = await websockets.serve(runtime, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    client = await LiveClient.connect(f"ws://127.0.0.1:{port}/v1/sessions/s1/ws",
                                      fence=fence, open_timeout=30)
    return client, server


async def _take(events: AsyncIterator[ServerEvent], n: int) -> list[ServerEvent]:
    return [await asyncio.wait_for(anext(events), 30) for _ in range(n)]


async def test_outputs_of_an_older_epoch_than_any_seen_are_refused_and_counted() -> None:
    fence = EpochFence()
    old_rt, new_rt = _Runtime(3), _Runtime(4)
    old, s1 = await _connect(old_rt, fence)
    assert (old.epoch, fence.highest) == (3, 3)
    events = old.events()
    old_rt.send(EpochEvent(lease_epoch=3, sent_at_ms=1), TurnEvent(turn_id="t1", state="open"))
    got = await _take(events, 2)
    assert [type(e) for e in got] == [EpochEvent, TurnEvent]
    assert old.marked_at_ms == 1
    # the session moved on: a connection at epoch 4 (or the control plane's token) says so
    new, s2 = await _connect(new_rt, fence)
    assert fence.highest == 4 and not fence.stale(4) and fence.stale(3)
    seen: list[tuple[str, bool]] = []
    old.on_output = lambda ev, refused: seen.append((type(ev).__name__, refused))
    old_rt.send(ReplyText(turn_id="t1", text="stale"), b"\x00" * 640, Stats(),
                TurnEvent(turn_id="t1", state="commit", lease_epoch=3))
    # the old runtime follows a rotation in place to epoch 5: its outputs count again
    old_rt.send(EpochEvent(lease_epoch=5, sent_at_ms=2), ReplyText(turn_id="t2", text="ok"))
    got = await _take(events, 3)
    assert [type(e) for e in got] == [Stats, EpochEvent, ReplyText]
    assert (old.refused, old.refused_kinds) == (3, {"ReplyText": 1, "AudioOut": 1,
                                                    "TurnEvent": 1})
    assert seen == [("ReplyText", True), ("AudioOut", True), ("TurnEvent", True),
                    ("ReplyText", False)]
    assert fence.highest == 5 and old.epoch == 5
    # and now the epoch-4 connection is the superseded one
    new_events = new.events()
    new_rt.send(b"\x00" * 640, EpochEvent(lease_epoch=4, sent_at_ms=3), Stats())
    assert [type(e) for e in await _take(new_events, 2)] == [EpochEvent, Stats]
    assert new.refused_kinds == {"AudioOut": 1}
    for rt in (old_rt, new_rt):
        rt.out.put_nowait(None)
    for c in (old, new):
        await c.close()
    for s in (s1, s2):
        s.close()  # type: ignore[attr-defined]


def test_epoch_events_and_turn_epochs_round_trip_in_json_and_msgpack() -> None:
    for msgpack in (False, True):
        ev = EpochEvent(lease_epoch=7, sent_at_ms=1_795_878_199_549)
        assert decode_server(encode_message(ev, msgpack=msgpack), msgpack=msgpack) == ev
        turn = TurnEvent(turn_id="t", state="abort", reason="authority_loss", lease_epoch=6)
        assert decode_server(encode_message(turn, msgpack=msgpack), msgpack=msgpack) == turn
    assert encode_message(EpochEvent(lease_epoch=3, sent_at_ms=5)) == (
        b'{"type":"epoch","lease_epoch":3,"sent_at_ms":5}')


@pytest.mark.parametrize("epoch", [None, 0])
def test_a_session_without_a_lease_is_never_fenced(epoch: int | None) -> None:
    fence = EpochFence()
    fence.see(epoch)
    fence.see(2)
    assert not fence.stale(None) and fence.stale(1) and not fence.stale(2)
