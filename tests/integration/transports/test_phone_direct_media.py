"""Carrier ``media`` messages straight from the server's read callback (``rspp.text_sink``).

``rspp serve``'s WebSocket protocol (server/_wsproto.py) offers the carrier endpoint a
text sink: while the call's reader waits for a message, a ``media`` message goes into
the session inside ``data_received`` (no queued ASGI message, no reader wake-up). The
tests feed text frames to the real protocol instance of a live call (uvicorn on a real
socket, the phone assistant's session) and look at the session right after the callback
returns: taken at once when the reader is idle; when a message's intake has to wait, it
and everything after it go in, in order, once it can; bad input still closes the stream
with the reader's reason. The other way (``rspp.send_now``), a reply frame put on the
call's outbound queue while its writer waits is written in that call.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from websockets.frames import Frame, Opcode

from rspp.client import CarrierCall
from rspp.transports import AudioFrame

from .conftest import record_deliveries, writer_waits
from .test_phone_stream import PHONE

pytestmark = pytest.mark.integration

PAYLOAD = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of mu-law silence


def wire(text: str) -> bytes:
    """One masked client text frame as it arrives on the socket."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=True, extensions=[])


def media(chunk: int, payload: str = PAYLOAD) -> str:
    return json.dumps({"event": "media", "sequenceNumber": str(chunk + 1),
                       "media": {"track": "inbound", "chunk": str(chunk),
                                 "timestamp": str(20 * (chunk - 1)), "payload": payload},
                       "streamSid": "MZdirect"})


async def idle_call(srv: Any, sid: str) -> tuple[Any, Any]:
    """The server protocol of the one carrier stream and its session's transport, once the
    call's reader waits for a message (its text sink installed and idle)."""
    assert srv.server is not None
    async with asyncio.timeout(60):
        while True:
            protos = list(srv.server.server_state.connections)
            sink = getattr(protos[0], "_text_sink", None) if len(protos) == 1 else None
            handle = srv.hub.sessions.get(sid)
            if sink is not None and sink.idle and handle is not None \
                    and handle.transport.session is not None:
                return protos[0], handle.transport
            await asyncio.sleep(0.01)


async def open_call(srv: Any, issue: Any, sid: str) -> tuple[CarrierCall, Any, Any]:
    """A carrier call on session ``sid``, its server protocol and transport (reader idle)."""
    call = await CarrierCall.connect(srv.phone_url, {"token": issue(sid), "session_id": sid})
    proto, transport = await idle_call(srv, sid)
    return call, proto, transport


async def hang_up(call: CarrierCall) -> None:
    await call.hang_up()
    async with asyncio.timeout(30):
        await call.closed.wait()


async def test_a_media_message_is_in_the_session_when_the_read_callback_returns(
        serve, issue) -> None:
    async with serve(source=PHONE) as srv:
        call, proto, transport = await open_call(srv, issue, "m1")
        for k in range(1, 4):  # 20 ms messages, one read callback each
            proto.data_received(wire(media(k)))
            assert transport.meter.frames == k
            assert proto.queue.empty()  # no message for the reader: it was not woken
        # at 2:1 the re-chunker holds a few samples back: ~320 16 kHz samples a message
        assert 2 * 320 <= transport.media_samples <= 3 * 320
        await hang_up(call)


async def test_a_message_whose_intake_waits_keeps_everything_after_it_in_order(
        serve, issue) -> None:
    async with serve(source=PHONE) as srv:
        call, proto, transport = await open_call(srv, issue, "m2")
        session = transport.session
        seen: list[tuple[str, Any]] = []
        four = record_deliveries(session, seen, 4)
        push_control = transport.push_control

        def control_spy(kind: str, value: str, attrs: Any, turn_for: Any) -> Any:
            seen.append((kind, value))
            return push_control(kind, value, attrs, turn_for)

        transport.push_control = control_spy
        # the first 20 ms at 2:1 fall a few samples short of a 16 kHz frame: from the
        # second message on, each one completes a frame
        proto.data_received(wire(media(1)))
        assert transport.meter.frames == 1 and not seen
        lock = transport._ingress_lock
        await lock.acquire()  # the intake of the next message waits (as on flow control)
        proto.data_received(wire(media(2)))
        assert transport.meter.frames == 2 and not seen  # started, waiting for the lock
        proto.data_received(wire(json.dumps({"event": "dtmf", "streamSid": "MZdirect",
                                             "dtmf": {"digit": "7"}})))
        proto.data_received(wire(media(3)) + wire(media(4)))
        assert transport.meter.frames == 2  # queued behind the waiting message
        lock.release()
        await asyncio.wait_for(four.wait(), 60)
        # the waiting message's frame, then the key press, then the later frames
        assert seen == [("audio_chunk", 0), ("dtmf", "7"), ("audio_chunk", 320),
                        ("audio_chunk", 640)]
        assert transport.meter.frames == 4
        del session.deliver_now, transport.push_control
        # everything was taken: the next message goes in from the read callback again
        proto, _ = await idle_call(srv, "m2")
        proto.data_received(wire(media(5)))
        assert transport.meter.frames == 5 and proto.queue.empty()
        await hang_up(call)


async def test_bad_media_from_the_read_callback_closes_with_the_readers_reason(
        serve, issue) -> None:
    async with serve(source=PHONE) as srv:
        call, proto, transport = await open_call(srv, issue, "m3")
        proto.data_received(wire(media(1)))
        assert transport.meter.frames == 1
        big = base64.b64encode(b"\xff" * 8001).decode()  # over max_media_bytes (1 s)
        proto.data_received(wire(media(2, big)))
        async with asyncio.timeout(30):
            await call.closed.wait()
        assert call.close_code == 4400
        assert call.close_reason.startswith("media.payload: media payload over 8000 bytes")
        assert transport.meter.frames == 1


async def test_a_reply_frame_leaves_in_the_call_that_puts_it_a_marked_one_via_the_writer(
        serve, issue) -> None:
    async with serve(source=PHONE) as srv:
        call, proto, transport = await open_call(srv, issue, "m4")
        queue = await writer_waits(transport)
        writes: list[bytes] = []
        marked = asyncio.Event()
        write = proto.transport.write

        def spy(data: Any) -> None:
            writes.append(bytes(data))
            if b'"event":"mark"' in data:
                marked.set()
            write(data)

        proto.transport.write = spy
        waiter = queue._waiter
        pcm = b"\x10\x00" * 160  # 20 ms at the carrier's 8 kHz
        queue.put_audio(AudioFrame(turn_id=None, seq=1, pcm=pcm))
        # written inside the call; the writer task was not woken (its wait goes on)
        assert len(writes) == 1 and b'"event":"media"' in writes[0]
        assert not len(queue) and queue._waiter is waiter and not waiter.done()
        # a frame with a mark is two messages: the writer sends both, in order
        queue.put_audio(AudioFrame(turn_id=None, seq=2, pcm=pcm, mark="t1#2$"))
        assert len(writes) == 1
        await asyncio.wait_for(marked.wait(), 60)
        assert [b'"event":"media"' in w for w in writes] == [True, True, False]
        assert b'"name":"t1#2$"' in writes[2]
        async with asyncio.timeout(60):
            await call.wait_for(lambda: call.stats.media_in >= 2 and call.stats.marks_in >= 1)
        await hang_up(call)
