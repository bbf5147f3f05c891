"""The lean WebSocket protocol ``rspp serve`` runs (rspp.server._wsproto), on a real socket.

An echo ASGI app on uvicorn with :class:`LeanWebSocketProtocol`; the client is the
``websockets`` sans-I/O client protocol over a raw TCP stream, so the tests choose how
frames are split across reads (many frames in one segment, a frame cut byte by byte)
and can send what a polite client never would (fragments, oversized, unmasked or
invalid frames), which the protocol must hand to the ``websockets`` parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.uri import parse_uri

from rspp.server._wsproto import LeanWebSocketProtocol
from rspp.transports._websocket import SEND_GATE

MAX_SIZE = 70_000


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo every message back (bytes as bytes, text as text) until the client leaves."""
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})
        else:
            await send({"type": "websocket.send", "text": msg["text"]})


@contextlib.asynccontextmanager
async def server(app: Any = echo, **config: Any) -> AsyncIterator[tuple[int, uvicorn.Server]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off",
                                        ws=LeanWebSocketProtocol, ws_max_size=MAX_SIZE,
                                        access_log=False, **config))
    task = asyncio.ensure_future(srv.serve(sockets=[sock]))
    while not srv.started:  # noqa: ASYNC110 - uvicorn exposes no readiness event
        await asyncio.sleep(0.005)
    try:
        yield sock.getsockname()[1], srv
    finally:
        srv.should_exit = True
        await asyncio.wait({task})
        sock.close()


class Client:
    """A sans-I/O ``websockets`` client on a raw stream: ``write`` sends bytes as given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.proto = ClientProtocol(parse_uri("ws://127.0.0.1/x"), max_size=None)
        self.events: list[Any] = []

    @classmethod
    async def open(cls, port: int) -> Client:
        c = cls(*await asyncio.open_connection("127.0.0.1", port))
        c.proto.send_request(c.proto.connect())
        c.flush()
        while c.proto.handshake_exc is None and not c.events:
            await c.read()
        assert c.proto.handshake_exc is None
        c.events.clear()  # the 101 response
        return c

    def frames(self, build: Any) -> bytes:
        """The bytes the client protocol would send for ``build(proto)``."""
        build(self.proto)
        return b"".join(self.proto.data_to_send())

    def flush(self) -> None:
        self.writer.write(b"".join(self.proto.data_to_send()))

    async def read(self) -> bool:
        data = await self.reader.read(65536)
        if not data:
            self.proto.receive_eof()
            return False
        self.proto.receive_data(data)
        self.events.extend(self.proto.events_received())
        self.flush()  # e.g. the automatic pong to a server ping
        return True

    async def messages(self, n: int) -> list[Frame]:
        """The next ``n`` data frames from the server."""
        while sum(1 for e in self.events if e.opcode in (Opcode.TEXT, Opcode.BINARY)) < n:
            if not await self.read():
                break
        data = [e for e in self.events if e.opcode in (Opcode.TEXT, Opcode.BINARY)]
        self.events = [e for e in self.events if e.opcode not in (Opcode.TEXT, Opcode.BINARY)]
        return data[:n]

    async def closed(self) -> Close:
        """The server's close frame (read until the connection ends)."""
        while self.proto.close_rcvd is None and await self.read():
            pass
        assert self.proto.close_rcvd is not None
        return self.proto.close_rcvd


def lean_state(srv: uvicorn.Server) -> list[bool | None]:
    return [getattr(c, "_lean", None) for c in srv.server_state.connections]


PAYLOADS: list[bytes] = [b"", b"a", bytes(range(125)), bytes(126), bytes(640),
                         bytes(range(256)) * 256, bytes(65_536), b"\x01" * MAX_SIZE]


async def test_data_frames_echo_whatever_the_segmentation() -> None:
    async with server(ws_ping_interval=None) as (port, srv):
        c = await Client.open(port)
        # every length encoding (7-bit, 16-bit, 64-bit), binary and text, in one write
        wire = b"".join(c.frames(lambda p, d=d: p.send_binary(d)) for d in PAYLOADS)
        wire += c.frames(lambda p: p.send_text("héllo, wörld ✓".encode()))
        c.writer.write(wire)
        got = await c.messages(len(PAYLOADS) + 1)
        assert [bytes(f.data) for f in got[:-1]] == PAYLOADS
        assert [f.opcode for f in got[:-1]] == [Opcode.BINARY] * len(PAYLOADS)
        assert got[-1].opcode is Opcode.TEXT and got[-1].data.decode() == "héllo, wörld ✓"
        # the same frames cut at every byte: partial headers, masks and payloads
        small = b"".join(c.frames(lambda p, d=d: p.send_binary(d)) for d in PAYLOADS[:5])
        for i in range(len(small)):
            c.writer.write(small[i:i + 1])
            await c.writer.drain()
        got = await c.messages(5)
        assert [bytes(f.data) for f in got] == PAYLOADS[:5]
        assert lean_state(srv) == [True]  # every frame took the lean path
        c.writer.close()


async def test_client_ping_gets_its_pong_and_the_lean_path_goes_on() -> None:
    async with server(ws_ping_interval=None) as (port, srv):
        c = await Client.open(port)
        c.writer.write(c.frames(lambda p: p.send_ping(b"are you there")))
        c.writer.write(c.frames(lambda p: p.send_binary(b"after the ping")))
        got = await c.messages(1)
        pongs = [e for e in c.events if e.opcode is Opcode.PONG]
        assert [bytes(p.data) for p in pongs] == [b"are you there"]
        assert bytes(got[0].data) == b"after the ping"
        assert lean_state(srv) == [True]
        c.writer.close()


async def test_server_keepalive_pings_are_answered_through_the_lean_path() -> None:
    # with a pong timeout, uvicorn sends its next ping only after the previous pong was
    # handled: a third ping means two pongs were taken (else it closes with 1011)
    async with server(ws_ping_interval=0.02, ws_ping_timeout=5.0) as (port, srv):
        c = await Client.open(port)
        c.writer.write(c.frames(lambda p: p.send_binary(b"x")))
        await c.messages(1)
        while sum(1 for e in c.events if e.opcode is Opcode.PING) < 3:
            assert await c.read()
        assert c.proto.close_rcvd is None
        assert lean_state(srv) == [True]
        c.writer.close()


async def test_fragmented_message_is_handed_to_the_websockets_parser() -> None:
    async with server(ws_ping_interval=None) as (port, srv):
        c = await Client.open(port)
        c.writer.write(c.frames(lambda p: p.send_binary(b"lean first")))
        assert bytes((await c.messages(1))[0].data) == b"lean first"
        wire = c.frames(lambda p: p.send_binary(b"frag", fin=False))
        wire += c.frames(lambda p: p.send_continuation(b"mented", fin=True))
        wire += c.frames(lambda p: p.send_binary(b"then whole"))
        c.writer.write(wire)
        got = await c.messages(2)
        assert [bytes(f.data) for f in got] == [b"fragmented", b"then whole"]
        assert lean_state(srv) == [False]
        c.writer.close()


@pytest.mark.parametrize(("wire", "code"), [
    # larger than ws_max_size: 1009, as uvicorn's own path refuses it
    ("oversized", 1009),
    # a text frame that is not UTF-8: 1007
    ("bad_utf8", 1007),
    # an unmasked client frame: a protocol error, 1002
    ("unmasked", 1002),
])
async def test_bad_frames_close_as_uvicorn_closes(wire: str, code: int) -> None:
    async with server(ws_ping_interval=None) as (port, _srv):
        c = await Client.open(port)
        c.writer.write(c.frames(lambda p: p.send_binary(b"ok")))
        await c.messages(1)
        if wire == "oversized":
            data = c.frames(lambda p: p.send_binary(bytes(MAX_SIZE + 1)))
        elif wire == "bad_utf8":
            data = c.frames(lambda p: p.send_text(b"\xff\xfe"))
        else:
            data = Frame(Opcode.BINARY, b"plain").serialize(mask=False, extensions=[])
        c.writer.write(data)
        assert (await c.closed()).code == code
        c.writer.close()


async def test_client_close_is_echoed() -> None:
    async with server(ws_ping_interval=None) as (port, _srv):
        c = await Client.open(port)
        c.writer.write(c.frames(lambda p: p.send_binary(b"bye soon")))
        await c.messages(1)
        c.writer.write(c.frames(lambda p: p.send_close(1000, "done")))
        close = await c.closed()
        assert (close.code, close.reason) == (1000, "done")
        c.writer.close()


class Speaker:
    """An ASGI app speaking numbered 1 KiB binary frames through the session's lease gate
    (``SEND_GATE``, as ``rspp serve``'s WebSocket transport sends), as fast as the socket
    takes them, until the gate closes; then one text frame ``end`` (the close reason a
    runtime that lost its lease sends)."""

    def __init__(self) -> None:
        #: the lease as the session sees it: True held, None lost (a woken zombie)
        self.lease: bool | None = True
        #: frames whose send returned (handed to the transport or dropped by the gate)
        self.returned: list[int] = []
        #: the frame whose send is under way
        self.sending: int | None = None

    def gate(self) -> bool | None:
        return self.lease

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await receive()  # the client's ``go``: it read the handshake's answer
        seq = 0
        while self.gate() is True:  # the transport checks the gate before each send
            self.sending = seq
            await send({"type": "websocket.send", "bytes": seq.to_bytes(4, "big") + bytes(1020),
                        SEND_GATE: self.gate})
            self.returned.append(seq)
            seq += 1
        self.sending = None
        await send({"type": "websocket.send", "text": "end"})
        while (await receive())["type"] != "websocket.disconnect":
            pass


async def test_a_frame_waiting_for_the_socket_is_dropped_once_the_lease_is_lost() -> None:
    """The zombie case without the timing: a runtime's send waits for a full socket (its
    client reads nothing; asyncio's write buffer is capped at 4 KiB) when its lease is lost
    (a paused process that wakes after its session failed over); once the socket drains,
    the frame that waited is dropped by the gate's re-check, not written. The client gets
    exactly the frames handed to the socket before the loss, then ``end``."""
    app = Speaker()
    async with server(app) as (port, srv):
        c = await Client.open(port)
        c.writer.write(c.frames(lambda p: p.send_text(b"go")))
        proto = next(iter(srv.server_state.connections))
        # the client reads nothing: the kernel buffers fill, then the 4 KiB user buffer
        while proto.writable.is_set() or app.sending is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # (no event tells a waiting send from a busy loop)
        waiting = app.sending
        assert waiting is not None and waiting not in app.returned
        handed = list(app.returned)
        app.lease = None  # the lease is lost while the frame waits for the socket
        # the client drains the socket: everything written before the loss, then ``end``
        while not any(e.opcode == Opcode.TEXT for e in c.events) and await c.read():
            pass
        got = [int.from_bytes(e.data[:4], "big") for e in c.events if e.opcode == Opcode.BINARY]
        assert [e.data for e in c.events if e.opcode == Opcode.TEXT] == [b"end"]
        assert got == handed == list(range(waiting)), (len(got), len(handed), waiting)
        assert app.returned == [*handed, waiting]  # its send returned: dropped, not written
        c.writer.close()
        await c.writer.wait_closed()
