"""uvicorn's WebSocket protocol with a lean path for the frames live media is made of.

A live session exchanges 50 small frames a second each way. uvicorn's
``websockets-sansio`` protocol parses every incoming frame through the
``websockets`` generator-based parser (a reader, a ``Frame`` object, its checks)
and serialises every outgoing message through a ``Frame`` too: at a few hundred
sessions that is a large share of a runtime's CPU.

:class:`LeanWebSocketProtocol` keeps that protocol for everything (the handshake,
ASGI, flow control, keepalive, closing) and takes two shortcuts once the handshake
is complete and no extension (``permessage-deflate``) was negotiated:

* incoming: a buffer of whole frames is cut in place; each complete, unfragmented
  text or binary frame (masked, no RSV bit, within the size limit) is unmasked and
  handed to the application exactly as uvicorn hands it (``websocket.receive``);
  pings and pongs go to the same handlers uvicorn uses. Reading stops once the
  application is a few messages behind (uvicorn stops at every message and resumes
  when it was taken: two ``epoll_ctl`` calls per frame). At the first frame of any
  other kind (close, a fragment, a protocol error) the remaining bytes go to the
  ``websockets`` parser, which then keeps the connection: it is at a frame boundary,
  having seen no frame bytes since the handshake;
* outgoing: a ``websocket.send`` on an open connection is written as one unmasked
  frame; anything else (accept, close, a connection that is closing) goes through
  uvicorn. The scope's ``rspp.send_now`` extension (:data:`~rspp.transports.SEND_NOW`)
  does the same synchronously, outside any task (the runtime's pacer writes reply
  frames with it): True when written, False when the message has to go through
  ``send`` (writes paused by flow control, the connection not open).
* direct binary frames: the scope offers the application the ``rspp.frame_sink``
  extension (:data:`~rspp.transports.FRAME_SINK`); an application that installs a sink
  gets each binary message from the read callback itself while its receive queue is
  empty (no queued ASGI message, no task wake-up per frame). The sink returns None
  when it took the message, or the message to queue instead (the application is busy:
  it then comes through ``receive`` behind everything queued before it, in order).
  The ``rspp.text_sink`` extension (:data:`~rspp.transports.TEXT_SINK`) does the same
  for text messages (a carrier's JSON ``media`` messages).

The frames on the wire are the same (RFC 6455); only the work per frame is less.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

from rspp.transports import FRAME_SINK, SEND_GATE, SEND_NOW, TEXT_SINK, FrameSink, TextSink

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

__all__ = ["LeanWebSocketProtocol"]

_TEXT, _BINARY, _PING, _PONG = 0x1, 0x2, 0x9, 0xA
_LEAN_OPS = frozenset((_TEXT, _BINARY, _PING, _PONG))
_FIN = 0x80  # the first byte's high nibble: FIN set, no RSV bit
#: messages the application may be behind before the socket stops being read
_BACKLOG = 8
_H = struct.Struct("!H")
_Q = struct.Struct("!Q")


class _Inbox(asyncio.Queue[Any]):
    """A connection's ASGI receive queue: what uvicorn uses of ``asyncio.Queue``
    (``put_nowait``, ``get``, ``empty``, ``qsize``) without its task accounting, its
    ``maxsize`` checks and a ``get_running_loop()`` per wait."""

    def __init__(self) -> None:
        super().__init__()
        self._items: deque[Any] = deque()
        self._readers: deque[asyncio.Future[None]] = deque()
        self._running: asyncio.AbstractEventLoop | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._wake_next()

    def _wake_next(self) -> None:
        readers = self._readers
        while readers:
            reader = readers.popleft()
            if not reader.done():
                reader.set_result(None)
                return

    async def get(self) -> Any:
        items = self._items
        while not items:
            loop = self._running
            if loop is None:
                loop = self._running = asyncio.get_running_loop()
            reader = loop.create_future()
            self._readers.append(reader)
            try:
                await reader
            except BaseException:  # as asyncio.Queue.get: a woken reader that is
                reader.cancel()    # cancelled passes the wake-up on
                with contextlib.suppress(ValueError):
                    self._readers.remove(reader)
                if items and not reader.cancelled():
                    self._wake_next()
                raise
        return items.popleft()


#: the transport's write-buffer high-water mark (asyncio's default is 64 KiB: 2 s of
#: 16 kHz audio that a process resumed after its lease lapsed would still flush)
_WRITE_HIGH = 4096

class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn ``websockets-sansio`` with the lean frame path (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = self._inbox = _Inbox()
        #: None: not decided yet (the handshake is not complete); True: frames are cut
        #: here; False: the ``websockets`` parser has the connection for good
        self._lean: bool | None = None
        self._rest = b""
        self._max_size: int | None = None
        #: the application's binary-message sink (``rspp.frame_sink``), None: none
        self._sink: FrameSink | None = None
        #: the application's text-message sink (``rspp.text_sink``), None: none
        self._text_sink: TextSink | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)  # none: the handshake was refused
        if scope is not None:
            scope["extensions"][FRAME_SINK] = self._set_sink
            scope["extensions"][TEXT_SINK] = self._set_text_sink
            scope["extensions"][SEND_NOW] = self._write_now

    def _set_sink(self, sink: FrameSink | None) -> None:
        self._sink = sink

    def _set_text_sink(self, sink: TextSink | None) -> None:
        self._text_sink = sink

    def data_received(self, data: bytes) -> None:
        lean = self._lean
        if lean is None and self.handshake_complete:
            lean = self._lean = self._may_cut()
            self._max_size = self._limit()
        if not lean:
            super().data_received(data)
            return
        buf = self._rest + data if self._rest else data
        n = len(buf)
        pos = 0
        limit = self._max_size
        queue = self._inbox
        view = memoryview(buf)
        while n - pos >= 6:  # the smallest masked frame: 2 header + 4 mask bytes
            b0 = buf[pos]
            b1 = buf[pos + 1]
            op = b0 & 0x0F
            length = b1 & 0x7F
            if b0 & 0xF0 != _FIN or not b1 & 0x80 or op not in _LEAN_OPS \
                    or (op >= _PING and length > 125):
                self._hand_over(buf, pos)  # close, fragment, bad frame: the parser's
                return
            head = pos + 2
            if length == 126:
                if n - pos < 8:
                    break
                length = _H.unpack_from(buf, head)[0]
                head += 2
            elif length == 127:
                if n - pos < 14:
                    break
                length = _Q.unpack_from(buf, head)[0]
                head += 8
            if limit is not None and length > limit:
                self._hand_over(buf, pos)  # the parser refuses it (1009)
                return
            end = head + 4 + length
            if end > n:
                break
            payload = apply_mask(view[head + 4:end], buf[head:head + 4])
            pos = end
            if op == _BINARY or op == _TEXT:  # (``_to_app`` inlined: the media messages)
                if op == _BINARY:
                    content: Any = payload
                    sink: Any = self._sink
                    key = "bytes"
                else:
                    try:
                        content = payload.decode()
                    except UnicodeDecodeError:  # uvicorn's own path closes with 1007
                        self._lean, self._rest = False, b""
                        self.curr_msg_data_type = "text"
                        self.frames = [payload]
                        self.send_receive_event_to_app()
                        return
                    sink = self._text_sink
                    key = "text"
                if self.close_sent:
                    continue
                if sink is None or queue._items:
                    message: Any = {"type": "websocket.receive", key: content}
                else:  # nothing queued before it: the application takes it now
                    message = sink(content)
                    if message is None:
                        continue
                queue.put_nowait(message)
                if not self.read_paused and queue.qsize() >= _BACKLOG:
                    self.read_paused = True
                    self.transport.pause_reading()
            else:  # a ping is answered, a pong ends the keepalive wait: as uvicorn does
                frame = Frame(Opcode.PING if op == _PING else Opcode.PONG, payload)
                self.conn.recv_frame(frame)
                if op == _PING:
                    self.handle_ping()
                else:
                    self.handle_pong(frame)
        self._rest = buf[pos:] if pos < n else b""

    def _to_app(self, message: Any) -> None:
        """Queue a message for the application, as uvicorn does, but stop reading the
        socket only once the application is ``_BACKLOG`` messages behind (uvicorn stops
        at every message and resumes when the application took it: two ``epoll_ctl``
        calls per frame with uvloop). The backlog stays bounded: reading stops there and
        resumes when the application has taken every message (uvicorn's ``receive``)."""
        if self.close_sent:  # past ``websocket.close``: dropped, as uvicorn drops it
            return
        queue = self._inbox
        queue.put_nowait(message)
        if not self.read_paused and queue.qsize() >= _BACKLOG:
            self.read_paused = True
            self.transport.pause_reading()

    def _may_cut(self) -> bool:
        """Frames may be cut here: open, no extension, and the ``websockets`` parser is
        waiting at a frame boundary with nothing buffered."""
        conn = self.conn
        if conn.state is not State.OPEN or conn.extensions or self.close_sent \
                or conn.reader.buffer:
            return False
        gen: Any = conn.parser
        while getattr(gen, "gi_yieldfrom", None) is not None:
            gen = gen.gi_yieldfrom
        return getattr(getattr(gen, "gi_code", None), "co_name", "") == "at_eof"

    def _limit(self) -> int | None:
        conn = self.conn
        sizes = [s for s in (conn.max_message_size, conn.max_fragment_size) if s is not None]
        return min(sizes) if sizes else None

    def _hand_over(self, buf: bytes, pos: int) -> None:
        """From ``pos`` on, the ``websockets`` parser reads this connection."""
        self._lean = False
        self._rest = b""
        super().data_received(bytes(buf[pos:]))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # the user-space write buffer stays small: what waits for the socket waits in the
        # session's bounded queue, where the lease gate still sees it (a paused process)
        transport.set_write_buffer_limits(high=_WRITE_HIGH)

    async def send(self, message: ASGISendEvent) -> None:
        gate: Callable[[], bool] | None = message.get(SEND_GATE)  # type: ignore[assignment]
        if gate is not None and not self.writable.is_set():
            await self.writable.wait()  # the socket took what was buffered...
            if gate() is not True:
                return  # ...but the lease lapsed meanwhile (a paused process): dropped
        if not self._write_now(message):
            await super().send(message)

    def _write_now(self, message: Any) -> bool:
        """Write a ``websocket.send`` message as one frame now; False when it cannot go
        without waiting or the lean path (the connection is not open, its writes are
        paused, another message type): uvicorn's ``send`` takes it then."""
        if message["type"] != "websocket.send" or not self._lean_out() \
                or not self.writable.is_set() or self.transport.is_closing():
            return False
        data: Any = message.get("bytes")
        op = 0x82
        if data is None:
            text = message.get("text")
            if text is None:
                return False
            data, op = text.encode(), 0x81
        n = len(data)
        if n < 126:
            head = bytes((op, n))
        elif n < 65536:
            head = bytes((op, 126)) + _H.pack(n)
        else:
            head = bytes((op, 127)) + _Q.pack(n)
        self.transport.write(head + data)
        return True

    def _lean_out(self) -> bool:
        return (self.handshake_complete and not self.close_sent and not self.disconnected
                and self.initial_response is None and not self.conn.extensions
                and self.conn.state is State.OPEN and not self.conn.expect_continuation_frame)
