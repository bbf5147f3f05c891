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
  pings and pongs go to the same handlers uvicorn uses. At the first frame of any
  other kind (close, a fragment, a protocol error) the remaining bytes go to the
  ``websockets`` parser, which then keeps the connection: it is at a frame boundary,
  having seen no frame bytes since the handshake;
* outgoing: a ``websocket.send`` on an open connection is written as one unmasked
  frame; anything else (accept, close, a connection that is closing) goes through
  uvicorn.

The frames on the wire are the same (RFC 6455); only the work per frame is less.
"""

from __future__ import annotations

import struct
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

__all__ = ["LeanWebSocketProtocol"]

_TEXT, _BINARY, _PING, _PONG = 0x1, 0x2, 0x9, 0xA
_LEAN_OPS = frozenset((_TEXT, _BINARY, _PING, _PONG))
_FIN = 0x80  # the first byte's high nibble: FIN set, no RSV bit
_H = struct.Struct("!H")
_Q = struct.Struct("!Q")


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn ``websockets-sansio`` with the lean frame path (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: None: not decided yet (the handshake is not complete); True: frames are cut
        #: here; False: the ``websockets`` parser has the connection for good
        self._lean: bool | None = None
        self._rest = b""

    def data_received(self, data: bytes) -> None:
        lean = self._lean
        if lean is None and self.handshake_complete:
            lean = self._lean = self._may_cut()
        if not lean:
            super().data_received(data)
            return
        buf = self._rest + data if self._rest else data
        n = len(buf)
        pos = 0
        limit = self._limit()
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
            if op == _BINARY:
                self.curr_msg_data_type = "bytes"
                self.frames = [payload]
                self.send_receive_event_to_app()
            elif op == _TEXT:
                self.curr_msg_data_type = "text"
                self.frames = [payload]
                self.send_receive_event_to_app()
            else:  # a ping is answered, a pong ends the keepalive wait: as uvicorn does
                frame = Frame(Opcode.PING if op == _PING else Opcode.PONG, payload)
                self.conn.recv_frame(frame)
                if op == _PING:
                    self.handle_ping()
                else:
                    self.handle_pong(frame)
        self._rest = buf[pos:] if pos < n else b""

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

    async def send(self, message: ASGISendEvent) -> None:
        if (self._lean_out() and message["type"] == "websocket.send"
                and self.writable.is_set()):
            data: Any = message.get("bytes")
            op = 0x82
            if data is None:
                text = message.get("text")
                if text is not None:
                    data, op = text.encode(), 0x81
            if data is not None:
                n = len(data)
                if n < 126:
                    head = bytes((op, n))
                elif n < 65536:
                    head = bytes((op, 126)) + _H.pack(n)
                else:
                    head = bytes((op, 127)) + _Q.pack(n)
                self.transport.write(head + data)
                return
        await super().send(message)

    def _lean_out(self) -> bool:
        return (self.handshake_complete and not self.close_sent and not self.disconnected
                and self.initial_response is None and not self.conn.extensions
                and self.conn.state is State.OPEN and not self.conn.expect_continuation_frame)
