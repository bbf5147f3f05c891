"""``rspp serve --ws-compression`` modes on a real uvicorn socket (F-031).

The protocol class ``rspp serve`` builds (``compressing_protocol(LeanWebSocketProtocol,
mode, stats)``) behind an ASGI app that answers each message with one text and one binary
message; the client is the ``websockets`` client offering ``permessage-deflate``.
``off`` never negotiates it; ``events`` compresses the text answer and sends the binary
one uncompressed; ``all`` compresses both. Whatever the mode, the client reads exactly
what the app sent, and the client's own compressed messages arrive decompressed.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvicorn
import websockets

from rspp.server._compression import CompressionStats, compressing_protocol
from rspp.server._wsproto import LeanWebSocketProtocol

pytestmark = pytest.mark.integration

TEXT = '{"type":"reply_text","text":"' + "the weather is fine " * 20 + '"}'
AUDIO = bytes(range(256)) * 4


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Per message received: the same text back, then :data:`AUDIO`."""
    await receive()
    await send({"type": "websocket.accept"})
    while (msg := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": msg.get("text") or ""})
        await send({"type": "websocket.send", "bytes": AUDIO})


async def _round_trip(mode: Any) -> tuple[bool, CompressionStats]:
    stats = CompressionStats()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(
        answer, log_level="critical", lifespan="off", access_log=False,
        ws=compressing_protocol(LeanWebSocketProtocol, mode, stats)))
    task = asyncio.ensure_future(srv.serve(sockets=[sock]))
    while not srv.started:  # noqa: ASYNC110 - uvicorn exposes no readiness event
        await asyncio.sleep(0.005)
    try:
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/"
        async with websockets.connect(url, proxy=None, compression="deflate") as ws:
            negotiated = bool(ws.protocol.extensions)
            for _ in range(3):
                await ws.send(TEXT)
                assert await ws.recv() == TEXT
                assert await ws.recv() == AUDIO
    finally:
        srv.should_exit = True
        await asyncio.wait({task})
        sock.close()
    return negotiated, stats


async def test_off_never_negotiates() -> None:
    negotiated, st = await _round_trip("off")
    assert not negotiated and st.connections == 0 and st.out_raw == 0


async def test_events_compresses_text_and_passes_binary() -> None:
    negotiated, st = await _round_trip("events")
    assert negotiated and st.connections == 1
    assert st.out_passed == 3  # the three binary answers went as they were
    assert st.out_raw == 3 * len(TEXT) and 0 < st.out_wire < st.out_raw
    assert st.in_raw == 3 * len(TEXT) and 0 < st.in_wire < st.in_raw  # the client's
    assert st.out_cpu_ns > 0 and st.in_cpu_ns > 0


async def test_all_compresses_every_message() -> None:
    negotiated, st = await _round_trip("all")
    assert negotiated and st.out_passed == 0
    assert st.out_raw == 3 * (len(TEXT) + len(AUDIO)) and st.out_wire < st.out_raw
