"""A Starlette WebSocket's per-message path on the raw ASGI callables.

The media endpoints (WebSocket sessions, carrier streams) accept and refuse through
Starlette's :class:`~starlette.websockets.WebSocket`, then read and write each message
through the raw ASGI ``receive``/``send``: dozens of messages a second per connection
skip the wrapper's layers. These helpers keep the wrapper's connection states as its own
``receive``/``send``/``close`` keep them, so both paths may be mixed on one connection.
"""

from __future__ import annotations

import contextlib

from starlette.types import Message, Send
from starlette.websockets import (
    WebSocket,
    WebSocketDisconnect,
    WebSocketDisconnected,
    WebSocketState,
)

__all__ = ["close_quietly", "ensure_receivable", "incoming", "send_raw"]


def ensure_receivable(ws: WebSocket) -> None:
    """Refuse a receive after the client's disconnect (as the wrapper does)."""
    if ws.client_state is not WebSocketState.CONNECTED:
        raise WebSocketDisconnected("Cannot call \"receive\" once a disconnect message has been "
                           "received.")


def incoming(ws: WebSocket, msg: Message) -> Message | None:
    """A raw ASGI message read from ``ws``: the ``websocket.receive`` message itself, or
    None for a disconnect (the connection's state then says so)."""
    kind = msg["type"]
    if kind == "websocket.receive":
        return msg
    if kind == "websocket.disconnect":
        ws.client_state = WebSocketState.DISCONNECTED
        return None
    raise RuntimeError(f"expected ASGI message websocket.receive or websocket.disconnect, "
                       f"got {kind!r}")


async def send_raw(ws: WebSocket, send: Send, message: Message) -> None:
    """Send one ASGI message on ``ws``; a send after the close is refused, a dead socket
    is a disconnect (1006)."""
    if ws.application_state is not WebSocketState.CONNECTED:
        raise WebSocketDisconnected("Cannot call \"send\" once a close message has been sent.")
    try:
        await send(message)
    except OSError:
        ws.application_state = WebSocketState.DISCONNECTED
        raise WebSocketDisconnect(code=1006) from None


async def close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    """Close ``ws`` with ``code`` and the first 120 bytes of ``reason``, unless it is
    already gone (a close racing the client's own is no error)."""
    if ws.application_state is WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await ws.close(code, reason.encode()[:120].decode(errors="ignore"))
