"""Child-side SDK of RSPP external nodes (F-122): write a node that runs in its own process.

Standard library only (MessagePack needs ``msgspec``, JSON does not), so a child starts
in milliseconds and never imports the runtime. A node program::

    from rspp_external import Event, Emit, run

    async def shout(event: Event, emit: Emit) -> None:
        emit(str(event.payload).upper())

    run(shout)

The wire protocol (``rspp-external/1``; any language can speak it) is a stream of frames on
the child's stdin (runtime -> child) and stdout (child -> runtime): a 4-byte big-endian
length, then one MessagePack or JSON map (the codec named by ``RSPP_EXTERNAL_CODEC``).

runtime -> child: ``init`` {protocol, node_id, session_id, config}; ``event`` {call, port,
kind, payload, final, attrs, turn_id}; ``cancel`` {call, reason}; ``stop``.
child -> runtime: ``ready`` {protocol} (answer to init); per call any number of ``emit``
{call, port, kind, payload, final, attrs}, then ``done`` {call, cancelled} or ``error``
{call, message, limit}; ``limit`` (optional) names the resource limit the call ran into:
``memory_mb`` (this SDK sends it when the handler raises ``MemoryError`` under the
process's RLIMIT_AS); the runtime reports such an error as a resource-limit violation.

``run`` moves ``sys.stdout`` onto stderr, so a stray ``print`` cannot corrupt the frames;
each call runs as a task, and a ``cancel`` cancels it (the runtime then sees
``done`` with ``cancelled: true``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_FRAME", "PROTOCOL", "Emit", "Event", "Handler", "decode", "encode", "run"]

PROTOCOL = 1
#: the largest frame either side accepts (bytes of the encoded map)
MAX_FRAME = 4 * 1024 * 1024
_LEN = struct.Struct(">I")


def _codec() -> str:
    return os.environ.get("RSPP_EXTERNAL_CODEC", "json")


def encode(msg: dict[str, Any], codec: str | None = None) -> bytes:
    """One frame: length prefix + the encoded map."""
    if (codec or _codec()) == "msgpack":
        import msgspec

        body = msgspec.msgpack.encode(msg)
    else:
        body = json.dumps(msg, separators=(",", ":")).encode()
    return _LEN.pack(len(body)) + body


def decode(body: bytes, codec: str | None = None) -> dict[str, Any]:
    """The map inside one frame body."""
    if (codec or _codec()) == "msgpack":
        import msgspec

        out = msgspec.msgpack.decode(body)
    else:
        out = json.loads(body)
    if not isinstance(out, dict):
        raise ValueError("a frame must hold a map")
    return out


@dataclass(frozen=True)
class Event:
    """One input event of the node."""

    call: int
    port: str
    kind: str
    payload: Any
    final: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)
    turn_id: str | None = None


Emit = Callable[..., None]
Handler = Callable[[Event, Emit], Awaitable[None] | None]


class _Child:
    def __init__(self, handler: Handler, out: Any) -> None:
        self.handler = handler
        self.out = out
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.config: dict[str, Any] = {}

    def send(self, msg: dict[str, Any]) -> None:
        self.out.write(encode(msg))
        self.out.flush()

    async def call(self, ev: Event) -> None:
        def emit(payload: Any, port: str | None = None, kind: str | None = None,
                 final: bool | None = None, attrs: dict[str, Any] | None = None) -> None:
            self.send({"type": "emit", "call": ev.call, "port": port, "kind": kind or ev.kind,
                       "payload": payload, "final": ev.final if final is None else final,
                       "attrs": attrs if attrs is not None else ev.attrs})

        try:
            res = self.handler(ev, emit)
            if inspect.isawaitable(res):
                await res
        except asyncio.CancelledError:
            self.send({"type": "done", "call": ev.call, "cancelled": True})
            return
        except MemoryError as exc:  # an allocation failed under the memory_mb limit
            self.send({"type": "error", "call": ev.call, "limit": "memory_mb",
                       "message": f"MemoryError: {exc}"})
            return
        except Exception as exc:
            self.send({"type": "error", "call": ev.call,
                       "message": f"{type(exc).__name__}: {exc}"})
            return
        finally:
            self.tasks.pop(ev.call, None)
        self.send({"type": "done", "call": ev.call, "cancelled": False})

    def _ended(self, call: int, task: asyncio.Future[None]) -> None:
        """A call cancelled before its task ran never reached its own ``done``: send it."""
        if self.tasks.get(call) is task:
            self.tasks.pop(call)
            if task.cancelled():
                with contextlib.suppress(OSError):  # the runtime may be gone (stop)
                    self.send({"type": "done", "call": call, "cancelled": True})

    def on_frame(self, msg: dict[str, Any]) -> bool:
        kind = msg.get("type")
        if kind == "init":
            self.config = dict(msg.get("config") or {})
            self.send({"type": "ready", "protocol": PROTOCOL})
        elif kind == "event":
            ev = Event(call=int(msg["call"]), port=str(msg.get("port") or ""),
                       kind=str(msg.get("kind") or ""), payload=msg.get("payload"),
                       final=bool(msg.get("final")), attrs=dict(msg.get("attrs") or {}),
                       turn_id=msg.get("turn_id"))
            task = self.tasks[ev.call] = asyncio.ensure_future(self.call(ev))
            task.add_done_callback(lambda t, call=ev.call: self._ended(call, t))
        elif kind == "cancel":
            task = self.tasks.get(int(msg.get("call", -1)))
            if task is not None:
                task.cancel()
        elif kind == "stop":
            return False
        return True


async def _serve(handler: Handler, config_out: dict[str, Any] | None) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_FRAME + 8)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # a stray print goes to stderr, never into the frames
    child = _Child(handler, out)
    try:
        while True:
            try:
                head = await reader.readexactly(_LEN.size)
            except asyncio.IncompleteReadError:
                return  # the runtime closed our stdin: it is done with us
            (size,) = _LEN.unpack(head)
            if size > MAX_FRAME:
                raise SystemExit(f"frame of {size} bytes exceeds {MAX_FRAME}")
            msg = decode(await reader.readexactly(size))
            if not child.on_frame(msg):
                return
            if config_out is not None:
                config_out.update(child.config)
    finally:
        for task in list(child.tasks.values()):
            task.cancel()


def run(handler: Handler, config: dict[str, Any] | None = None) -> None:
    """Serve ``handler`` on stdin/stdout until the runtime stops the node.

    ``config`` (if given) is filled with the ``config`` the spec passed at ``init``.
    """
    asyncio.run(_serve(handler, config))
