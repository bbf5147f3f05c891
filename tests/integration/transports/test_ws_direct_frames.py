"""Audio frames straight from the server's read callback into the session (``rspp.frame_sink``).

``rspp serve``'s WebSocket protocol (server/_wsproto.py) offers the endpoint a frame
sink: while the connection's reader waits for a message, a binary frame goes into the
session inside ``data_received`` (no queued ASGI message, no task wake-up). The tests
feed frames to the real protocol instance of a live connection (uvicorn on a real
socket, the offline assistant's session) and look at the session right after the
callback returns: taken at once when the reader is idle; when a frame's intake has to
wait, it and everything after it (control messages too) go in, in order, once it can.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.frames import Frame, Opcode

from rspp.client import LiveClient
from rspp.transports import SUBPROTOCOL_JSON, EndOfUtterance, ErrorEvent, Start, encode_message

from .conftest import record_deliveries, writer_waits

pytestmark = pytest.mark.integration


def wire(op: Opcode, data: bytes) -> bytes:
    """One masked client frame as it arrives on the socket."""
    return Frame(op, data).serialize(mask=True, extensions=[])


async def idle_protocol(srv: Any, transport: Any) -> Any:
    """The server protocol of the one live connection, once its reader waits for a message
    (its frame sink is installed and idle)."""
    assert srv.server is not None
    async with asyncio.timeout(60):
        while True:
            protos = list(srv.server.server_state.connections)
            sink = getattr(protos[0], "_sink", None) if len(protos) == 1 else None
            if sink is not None and sink.idle and transport.session is not None:
                return protos[0]
            await asyncio.sleep(0.01)


async def test_an_audio_frame_is_in_the_session_when_the_read_callback_returns(
        serve, issue) -> None:
    async with serve() as srv, await LiveClient.connect(srv.url("d1"), token=issue("d1")):
        transport = srv.hub.sessions["d1"].transport
        proto = await idle_protocol(srv, transport)
        for k in range(1, 4):  # 20 ms frames, one read callback each
            proto.data_received(wire(Opcode.BINARY, bytes(640)))
            assert transport.meter.frames == k and transport.media_samples == 320 * k
            assert proto.queue.empty()  # no message for the reader: it was not woken


async def test_a_frame_whose_intake_waits_keeps_everything_after_it_in_order(
        serve, issue) -> None:
    async with serve() as srv, await LiveClient.connect(srv.url("d2"), token=issue("d2")):
        transport = srv.hub.sessions["d2"].transport
        proto = await idle_protocol(srv, transport)
        session = transport.session
        seen: list[tuple[str, Any]] = []
        four = record_deliveries(session, seen, 4)
        lock = transport._ingress_lock
        await lock.acquire()  # the intake of the next frame waits (as on flow control)
        proto.data_received(wire(Opcode.BINARY, bytes(640)))
        assert transport.meter.frames == 1 and not seen  # started, waiting for the lock
        proto.data_received(wire(Opcode.TEXT, encode_message(EndOfUtterance())))
        proto.data_received(wire(Opcode.BINARY, bytes(640)) * 2)
        assert transport.meter.frames == 1  # queued behind the waiting frame
        lock.release()
        await asyncio.wait_for(four.wait(), 60)
        # the frame, then the push-to-talk release after it, then the later frames
        assert seen == [("audio_chunk", 0), ("end_of_utterance", 320), ("audio_chunk", 320),
                        ("audio_chunk", 640)]
        assert transport.meter.frames == 3
        del session.deliver_now
        # everything was taken: the next frame goes in from the read callback again
        await idle_protocol(srv, transport)
        proto.data_received(wire(Opcode.BINARY, bytes(640)))
        assert transport.meter.frames == 4 and proto.queue.empty()


async def test_an_outbound_item_leaves_in_the_call_that_puts_it_after_the_writers_checks(
        serve, issue) -> None:
    async with serve() as srv:
        assert srv.server is not None
        ws = await websockets.connect(srv.url("o1"), subprotocols=[SUBPROTOCOL_JSON],  # type: ignore[list-item]
                                      additional_headers=[("Authorization",
                                                           f"Bearer {issue('o1')}")],
                                      compression=None)  # (deflate: no lean path)
        await ws.send(encode_message(Start(sample_rate=16000)).decode())
        assert json.loads(await ws.recv())["type"] == "ready"
        handle = srv.hub.sessions["o1"]
        transport = handle.transport
        queue = await writer_waits(transport)
        (proto,) = srv.server.server_state.connections
        writes: list[bytes] = []
        write = proto.transport.write

        def spy(data: Any) -> None:
            writes.append(bytes(data))
            write(data)

        proto.transport.write = spy
        waiter = queue._waiter
        handle.notify(ErrorEvent(code="probe", message="one"))
        # written inside the call; the writer task was not woken (its wait goes on)
        assert any(b'"one"' in w for w in writes)
        assert not len(queue) and queue._waiter is waiter and not waiter.done()
        # the lease is lost: dropped by the check the writer applies, and counted
        transport.gate = lambda: None
        n = len(writes)
        handle.notify(ErrorEvent(code="probe", message="two"))
        assert len(writes) == n and transport.fenced_outputs == 1
        # authority on hold: not written now; the writer holds it until authority is back
        transport.gate = lambda: False
        handle.notify(ErrorEvent(code="probe", message="three"))
        assert len(writes) == n
        transport.gate = None
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(60):
            while not any(m.get("message") == "three" for m in seen):
                raw = await ws.recv()
                if isinstance(raw, str):
                    seen.append(json.loads(raw))
        await ws.close()
    kinds = [m["type"] for m in seen]
    assert kinds[0] == "epoch"  # protocol 1.2: the epoch of what follows, first
    assert [m["message"] for m in seen if m["type"] == "error"] == ["one", "three"]
