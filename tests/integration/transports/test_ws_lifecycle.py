"""Disconnect, stall, abort, resume and cleanup of live sessions (F-091); slow clients (F-090)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
import websockets

from rspp.client import LiveClient
from rspp.errors import LifecycleError
from rspp.transports import (
    SUBPROTOCOL_JSON,
    ClientAudio,
    ErrorEvent,
    LiveOptions,
    LiveSessionHandle,
    Start,
    TurnEvent,
    encode_message,
)

pytestmark = pytest.mark.integration

SILENCE = bytes(640)


def connection_signals(timeline: Path) -> list[tuple[str, str | None]]:
    out = []
    for line in timeline.read_text().splitlines():
        ln = json.loads(line)
        rec = ln["record"]
        if ln["kind"] == "control_signal" and rec["signal"] in (
                "connected", "disconnected", "stall", "ended", "abort", "close", "commit"):
            out.append((rec["signal"], rec.get("reason")))
    return out


async def until_turn_opens(client: LiveClient, pcm: bytes) -> str:
    """Stream ``pcm`` then silence until the server opens a turn; its id."""
    async def talk() -> None:
        await client.stream_pcm(pcm)
        while True:
            await client.stream_pcm(SILENCE * 10)

    sender = asyncio.create_task(talk())
    try:
        async for ev in client.events():
            if isinstance(ev, TurnEvent) and ev.state == "open":
                return ev.turn_id
    finally:
        sender.cancel()
        await asyncio.wait({sender})
    raise AssertionError("the connection closed before a turn opened")


async def until(cond: Any, timeout_s: float = 60.0) -> None:
    """Readiness probe on server state (bounded)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.02)


async def test_disconnect_records_disconnected_stall_abort_close_then_cleanup(
        serve, speech, issue) -> None:
    async with serve(LiveOptions(stall_timeout_s=0.3, resume_window_s=1.5)) as srv:
        client = await LiveClient.connect(srv.url("d1"), token=issue("d1"))
        tid = await until_turn_opens(client, speech["question"][0])
        handle = srv.hub.sessions["d1"]
        client.ws.transport.abort()  # the network drops: no close handshake
        await handle.wait_closed()
        assert handle.closed and handle.close_reason == "resume_window_expired"
        assert "d1" not in srv.hub.sessions or srv.hub.sessions["d1"].closed
    timeline = srv.factory.timeline_for("d1")
    assert timeline is not None
    sigs = connection_signals(timeline)
    names = [s for s, _ in sigs]
    i = names.index("disconnected")
    assert names[i:i + 2] == ["disconnected", "stall"]
    assert ("abort", "transport_disconnect") in sigs[i:]
    assert names[names.index("abort", i) + 1] == "close"
    assert sigs[-1] == ("ended", "resume_window_expired")
    assert tid
    # the session's state machine owned every state (F-138) ...
    life = handle.lifecycle
    assert [(f.value, e.value, t.value) for f, e, t in life.history] == [
        ("CONNECTING", "connected", "ACTIVE"), ("ACTIVE", "disconnected", "RECONNECTING"),
        ("RECONNECTING", "stall", "RECONNECTING"),
        ("RECONNECTING", "resume_timeout", "DRAINING"), ("DRAINING", "end", "ENDED")]
    # ... and rejects ENDED -> ACTIVE and a second end without changing anything
    history, seen = list(life.history), len(life.rejections)
    with pytest.raises(LifecycleError, match="not allowed in ENDED"):
        handle.connect(ClientAudio(sample_rate=16000, output_sample_rate=16000))
    await handle.close("again")
    assert [r.code for r in life.rejections[seen:]] == ["illegal_transition", "duplicate_end"]
    assert life.history == history and life.state.value == "ENDED"


async def test_reconnect_within_the_window_resumes_the_same_session(serve, speech,
                                                                    issue) -> None:
    async with serve(LiveOptions(stall_timeout_s=30.0, resume_window_s=60.0)) as srv:
        first = await LiveClient.connect(srv.url("r1"), token=issue("r1"))
        tid = await until_turn_opens(first, speech["question"][0])
        handle = srv.hub.sessions["r1"]
        await first.close()
        await until(lambda: handle.transport.queue is None)  # the server saw the disconnect
        again = await LiveClient.connect(srv.url("r1"), token=issue("r1"))
        assert again.ready.resumed and again.ready.session_id == "r1"
        assert srv.hub.sessions["r1"] is handle  # same session, new connection

        async def finish() -> None:
            await again.stream_pcm(SILENCE * 25)
            await again.end()

        sender = asyncio.create_task(finish())
        events = [ev async for ev in again.events()]
        await sender
    commits = [e for e in events if isinstance(e, TurnEvent) and e.state == "commit"]
    assert [e.turn_id for e in commits] == [tid]
    timeline = srv.factory.timeline_for("r1")
    assert timeline is not None
    sigs = connection_signals(timeline)
    assert ("connected", "resumed") in sigs
    names = [s for s, _ in sigs]
    assert "stall" not in names and names.index("disconnected") < names.index("commit")


async def test_a_slow_client_loses_frames_not_memory(serve, speech, issue) -> None:
    async with serve(LiveOptions(send_queue_frames=10), sndbuf=8192) as srv:
        # a client that reads nothing, with a small receive window (set before connecting)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(srv.base.rsplit(":", 1)[1])))
        ws = await websockets.connect(f"{srv.url('slow1')}?token={issue('slow1')}", sock=sock,
                                      subprotocols=[SUBPROTOCOL_JSON], max_queue=2,  # type: ignore[list-item]
                                      proxy=None, compression=None, ping_interval=None)
        await ws.send(encode_message(Start(sample_rate=16000, output_sample_rate=48000)).decode())
        await ws.recv()  # ready
        handle = srv.hub.sessions["slow1"]
        assert isinstance(handle, LiveSessionHandle)
        tx = handle.transport
        # ask again and again, in real time, never reading: the kernel's socket buffers
        # absorb the first replies, then the bounded send queue must drop
        utterance = speech["question"][0] + bytes(32000 * 4)
        for _ in range(8):
            for i in range(0, len(utterance), 640):
                await ws.send(utterance[i:i + 640].ljust(640, b"\0"))
                await asyncio.sleep(0.02)
            if tx.queue is not None and tx.queue.dropped_audio > 0:
                break
        q = tx.queue
        assert q is not None
        assert q.high_water <= q.max_audio + 40  # bounded: audio frames + a few events
        stats = tx.stats()
        assert stats.dropped_out_frames > 0 and stats.send_queue <= q.max_audio + 40
        ws.transport.abort()


async def _until_close(client: LiveClient, seen: list[Any]) -> TurnEvent:
    """Read ``client``'s events into ``seen`` until a turn closes."""
    async for ev in client.events():
        seen.append(ev)
        if isinstance(ev, TurnEvent) and ev.state == "close":
            return ev
    raise AssertionError(f"the connection ended before a turn closed: {seen}")


async def test_a_text_resent_with_its_id_is_taken_once_across_retry_and_reconnect_f158(
    serve, issue
) -> None:
    async with serve(LiveOptions(stall_timeout_s=30.0, resume_window_s=60.0)) as srv:
        first = await LiveClient.connect(srv.url("k1"), token=issue("k1"))
        await first.send_text("what is your name", id="ask-1")
        await first.send_text("what is your name", id="ask-1")  # a retry of the same input
        seen: list[Any] = []
        closed = await _until_close(first, seen)
        handle = srv.hub.sessions["k1"]
        await first.close()
        await until(lambda: handle.transport.queue is None)  # the server saw the disconnect
        again = await LiveClient.connect(srv.url("k1"), token=issue("k1"))
        assert again.ready.resumed
        await again.send_text("what is your name", id="ask-1")  # replayed after reconnecting
        await again.send_text("what time is it", id="ask-2")
        later: list[Any] = []
        second = await _until_close(again, later)
        await again.end()
        later += [ev async for ev in again.events()]
    opened = [e.turn_id for e in (*seen, *later) if isinstance(e, TurnEvent) and e.state == "open"]
    assert opened == [closed.turn_id, second.turn_id] == ["k1:turn:1", "k1:turn:2"], opened
    dups = [e for e in (*seen, *later) if isinstance(e, ErrorEvent)]
    assert [(e.code, e.field) for e in dups] == [("duplicate", "id")] * 2, dups
    timeline = srv.factory.timeline_for("k1")
    assert timeline is not None
    notices = [json.loads(x)["record"] for x in timeline.read_text().splitlines()
               if '"drop_notice"' in x and "duplicate_idempotency_key" in x]
    first_input = "duplicate_idempotency_key:ask-1:first=k1:input:1"
    assert [n["reason"] for n in notices] == [first_input] * 2
    assert {n["edge_id"] for n in notices} == {"input.text"}


class _GatedFactory:
    """The live server's session factory, holding each ``open`` until ``go`` is set."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.opening = asyncio.Event()
        self.go = asyncio.Event()

    async def open(self, session_id: str, grant: Any, audio: ClientAudio) -> Any:
        self.opening.set()
        await self.go.wait()
        return await self.inner.open(session_id, grant, audio)


async def test_a_client_gone_before_ready_is_a_quiet_disconnect(serve, issue, caplog) -> None:
    async with serve(LiveOptions(stall_timeout_s=30.0, resume_window_s=60.0)) as srv:
        assert srv.server is not None
        gated = srv.hub.factory = _GatedFactory(srv.hub.factory)
        caplog.set_level(logging.INFO)  # uvicorn's error logger was set to CRITICAL
        ws = await websockets.connect(srv.url("gone1"), subprotocols=[SUBPROTOCOL_JSON],  # type: ignore[list-item]
                                      additional_headers=[("Authorization",
                                                           f"Bearer {issue('gone1')}")])
        await ws.send(encode_message(Start(sample_rate=16000)).decode())
        await asyncio.wait_for(gated.opening.wait(), 60)  # the session is opening
        await ws.close()
        await until(lambda: all(p.disconnected for p in srv.server.server_state.connections))
        gated.go.set()  # the session opens for a client that already left
        await until(lambda: "gone1" in srv.hub.sessions
                    and srv.hub.sessions["gone1"].transport.queue is None)
        handle = srv.hub.sessions["gone1"]
        assert handle.lifecycle.state.value == "RECONNECTING"  # waits for a resume
        await until(lambda: not srv.server.server_state.connections)  # the endpoint returned
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert any("left before `ready`" in r.getMessage() for r in caplog.records)
