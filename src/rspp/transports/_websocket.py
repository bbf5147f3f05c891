"""The WebSocket endpoint of live sessions (protocol ``rspp.v1``; docs/protocol/websocket.md).

:func:`websocket_route` returns a Starlette route for ``/v1/sessions/{session_id}/ws``
that the server mounts. Per connection, in order:

1. negotiate the subprotocol (``rspp.v1.msgpack`` or JSON), accept the handshake;
2. take the session token (``?token=`` or ``Authorization: Bearer``) and verify
   it through the injected :class:`~rspp.transports.TokenVerifier` BEFORE any
   message is read; refusals close with a 44xx code and a one-line reason;
3. read the ``start`` message (the audio format), open or resume the session
   through the :class:`SessionHub` (the injected :class:`SessionFactory`);
4. run a reader (audio and control messages in) and a writer (paced audio and
   events out) until either side ends. On a server that offers the :data:`SEND_NOW`
   scope extension (``rspp serve``'s), an item put on the connection's outbound queue
   while the writer waits for one is written at once by whoever put it (the runtime's
   pacer for reply frames), after the writer's own checks (the egress and lease-epoch
   fences): no writer wake-up per frame. On a server that offers the
   :data:`FRAME_SINK` scope extension (``rspp serve``'s WebSocket protocol), binary
   frames go into the session from the server's read callback while the reader waits
   for a message: no ASGI message and no task wake-up per audio frame; a frame whose
   intake has to wait (the session's flow control) is finished by the reader, and
   everything after it queues behind it, in order.

Bad input never crashes the server nor touches another session: a malformed or
unknown message, audio not in the declared format or an oversized frame is an
``error`` event naming the field; a flood (audio faster than real time) or a
client too slow to read its events closes the connection with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import CoroutineType

from starlette.routing import WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import (
    WebSocket,
    WebSocketDisconnect,
    WebSocketState,
)

from rspp.transports._asgi_ws import close_quietly, ensure_receivable, incoming, send_raw
from rspp.transports._egress import AudioFrame
from rspp.transports._ingress import Flood
from rspp.transports._input_rejected import InputRejected
from rspp.transports._intake import TAKEN, IntakeRest, installed
from rspp.transports._protocol import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    AudioIn,
    AudioOut,
    CaptureDebug,
    End,
    EndOfUtterance,
    ErrorEvent,
    Interrupt,
    ProtocolError,
    Ready,
    ServerEvent,
    Start,
    TextIn,
    decode_client,
    encode_message,
)
from rspp.transports._session_port import (
    CLOSE_BAD_REQUEST,
    CLOSE_CONFLICT,
    CLOSE_FLOOD,
    CLOSE_FORBIDDEN,
    CLOSE_TIMEOUT,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNAVAILABLE,
    ClientAudio,
    LiveSession,
    SessionFactory,
    SessionGrant,
    SessionRefused,
    TokenRefused,
    TokenVerifier,
)

__all__ = ["FRAME_SINK", "SEND_GATE", "SEND_NOW", "SESSION_PATH", "TEXT_SINK", "FrameSink",
           "SessionHub", "TextSink", "WebSocketOptions", "websocket_route"]

log = logging.getLogger("rspp.transports.websocket")
SESSION_PATH = "/v1/sessions/{session_id}/ws"
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
#: the ASGI scope extension (``scope["extensions"]``) of a WebSocket server that hands
#: binary messages to the application from its read callback; its value installs a
#: :data:`FrameSink` (None removes it)
FRAME_SINK = "rspp.frame_sink"
#: takes one binary message in the server's read callback, called only while nothing is
#: queued for the application's ``receive``; returns None when it took the message, else
#: the ASGI message to queue for ``receive`` instead. Never raises.
FrameSink = Callable[[bytes], "Message | None"]
#: the ASGI scope extension of a WebSocket server that hands text messages to the
#: application from its read callback, as :data:`FRAME_SINK` does binary ones: its value
#: installs a :data:`TextSink` (None removes it); the carrier media stream takes its
#: ``media`` messages through it
TEXT_SINK = "rspp.text_sink"
#: takes one text message in the server's read callback, called only while nothing is
#: queued for the application's ``receive``; returns None when it took the message, else
#: the ASGI message to queue for ``receive`` instead. Never raises.
TextSink = Callable[[str], "Message | None"]
#: the ASGI scope extension of a WebSocket server that writes a ``websocket.send``
#: message synchronously: its value takes the message and returns True when it was
#: written, False when it must go through ``send`` (it would wait, or the connection is
#: not open); the writer task then is not woken for every reply frame
SEND_NOW = "rspp.send_now"
#: a ``websocket.send`` message's key for the session's output gate: a server that waits
#: for the socket before writing (flow control) checks it again after the wait and drops
#: the message when it no longer holds (``rspp serve``'s WebSocket protocol)
SEND_GATE = "rspp.send_gate"
#: a queued message's key for the rest of a frame the sink started (:class:`IntakeRest`)
_REST = "rspp.rest"


@dataclass(frozen=True, slots=True)
class WebSocketOptions:
    #: largest binary audio frame (bytes); larger frames are dropped with an error event
    max_audio_frame_bytes: int = 32 * 1024
    #: largest text (JSON) control message
    max_control_bytes: int = 8 * 1024
    #: the ``start`` message must arrive within this
    start_timeout_s: float = 10.0


class _Fatal(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class SessionHub:
    """The live sessions of one runtime, by id: opened through the factory, resumed by id."""

    def __init__(self, factory: SessionFactory) -> None:
        self.factory = factory
        self.sessions: dict[str, LiveSession] = {}
        self._connected: set[str] = set()
        self._opening: dict[str, asyncio.Lock] = {}

    def _prune(self) -> None:
        for sid in [s for s, h in self.sessions.items() if h.closed]:
            del self.sessions[sid]

    async def acquire(self, session_id: str, grant: SessionGrant,
                      audio: ClientAudio) -> tuple[LiveSession, bool]:
        """The session for a verified connection and whether it is a resume."""
        self._prune()
        if session_id in self._connected:
            raise SessionRefused(f"session {session_id} already has a live connection",
                                 CLOSE_CONFLICT)
        lock = self._opening.setdefault(session_id, asyncio.Lock())
        try:
            return await self._acquire(lock, session_id, grant, audio)
        finally:
            if not lock.locked():
                self._opening.pop(session_id, None)

    async def _acquire(self, lock: asyncio.Lock, session_id: str, grant: SessionGrant,
                       audio: ClientAudio) -> tuple[LiveSession, bool]:
        async with lock:
            handle = self.sessions.get(session_id)
            resumed = handle is not None and not handle.closed
            if handle is None or handle.closed:
                handle = await self.factory.open(session_id, grant, audio)
                self.sessions[session_id] = handle
            elif handle.tenant_id != grant.tenant_id:
                raise TokenRefused(f"token of tenant {grant.tenant_id} cannot resume a session "
                                   "of another tenant", CLOSE_FORBIDDEN)
            self._connected.add(session_id)
        return handle, resumed

    def release(self, session_id: str) -> None:
        self._connected.discard(session_id)
        self._prune()

    @property
    def active(self) -> int:
        return sum(1 for h in self.sessions.values() if not h.closed)

    async def aclose(self, reason: str = "server_shutdown") -> None:
        """Close every session (server shutdown)."""
        for handle in list(self.sessions.values()):
            await handle.close(reason)
        self.sessions.clear()


def _token(ws: WebSocket) -> str | None:
    token = ws.query_params.get("token")
    if token:
        return token
    auth = ws.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class _Connection:
    """One WebSocket connection of one session (reader + writer).

    Once the handshake is done, messages go through the raw ASGI ``receive``/``send``
    (the per-frame path), keeping the Starlette wrapper's connection states as its own
    ``receive``/``send`` keep them (its ``close`` and refusals still use it).
    """

    def __init__(self, ws: WebSocket, msgpack: bool, opts: WebSocketOptions,
                 receive: Receive, send: Send) -> None:
        self.ws, self.msgpack, self.opts = ws, msgpack, opts
        #: the ASGI receive, read directly by the session's read loop
        self.raw_receive = receive
        self._send = send
        self._send_lock = asyncio.Lock()
        self._write_now: Callable[[Message], bool] | None = (
            ws.scope.get("extensions") or {}).get(SEND_NOW)
        self.audio: ClientAudio | None = None

    def _message(self, msg: ServerEvent | AudioFrame) -> Message:
        if isinstance(msg, AudioFrame):
            if self.msgpack:
                return {"type": "websocket.send", "bytes": encode_message(
                    AudioOut(turn_id=msg.turn_id, seq=msg.seq, data=msg.pcm), msgpack=True)}
            return {"type": "websocket.send", "bytes": msg.pcm}
        if self.msgpack:
            return {"type": "websocket.send", "bytes": encode_message(msg, msgpack=True)}
        return {"type": "websocket.send", "text": encode_message(msg).decode()}

    async def send(self, msg: ServerEvent | AudioFrame,
                   gate: Callable[[], bool] | None = None) -> None:
        """Send ``msg``; with ``gate`` (the session's output authority), only if it still
        holds when the bytes go to the socket (checked again after any wait: a process
        paused past its lease must not flush what it queued before)."""
        out = self._message(msg)
        lock = self._send_lock
        await lock.acquire()  # not ``async with``: two coroutines fewer per frame
        try:
            if gate is not None:
                if not gate():
                    return
                out[SEND_GATE] = gate  # the server checks it again after a socket wait
            await send_raw(self.ws, self._send, out)
        finally:
            lock.release()

    @property
    def sends_now(self) -> bool:
        """The server writes a message synchronously (:data:`SEND_NOW`)."""
        return self._write_now is not None

    def send_now(self, msg: ServerEvent | AudioFrame) -> bool:
        """Write ``msg`` at once (no task, no wait); False when it has to go through
        :meth:`send` (another send in progress, the server cannot write without waiting,
        the connection is closing)."""
        write = self._write_now
        if write is None or self._send_lock.locked() \
                or self.ws.application_state is not WebSocketState.CONNECTED:
            return False
        return write(self._message(msg))

    async def close(self, code: int, reason: str) -> None:
        await close_quietly(self.ws, code, reason)

    async def refuse(self, code: int, reason: str, field: str | None = None) -> None:
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await self.send(ErrorEvent(code="refused", field=field, message=reason, fatal=True))
        await self.close(code, reason)

    async def receive(self) -> tuple[str | None, bytes | None] | None:
        """The next message as (text, bytes); None when the client disconnected."""
        ensure_receivable(self.ws)
        return self.received(await self.raw_receive())

    def received(self, msg: Message) -> tuple[str | None, bytes | None] | None:
        """A raw ASGI message as :meth:`receive` returns it."""
        got = incoming(self.ws, msg)
        return None if got is None else (got.get("text"), got.get("bytes"))

    def decode(self, text: str | None, data: bytes | None) -> object:
        """A control message, or raw audio bytes (JSON variant binary frames)."""
        if text is not None:
            if len(text) > self.opts.max_control_bytes:
                raise ProtocolError(f"control message of {len(text)} bytes exceeds "
                                    f"{self.opts.max_control_bytes}", "$")
            return decode_client(text)
        raw = data or b""
        if len(raw) > self.opts.max_audio_frame_bytes:
            raise InputRejected("audio", f"frame of {len(raw)} bytes exceeds "
                                f"{self.opts.max_audio_frame_bytes} bytes; send 20-100 ms "
                                "frames")
        if self.msgpack:
            return decode_client(raw, msgpack=True)
        return raw

    async def read_start(self) -> Start:
        got = await asyncio.wait_for(self.receive(), self.opts.start_timeout_s)
        if got is None:
            raise WebSocketDisconnect(1000)
        msg = self.decode(*got)
        if not isinstance(msg, Start):
            raise _Fatal(CLOSE_BAD_REQUEST, "the first message must be `start` (declares the "
                         "audio format)")
        return msg


def websocket_route(factory: SessionFactory | SessionHub, verifier: TokenVerifier, *,
                    path: str = SESSION_PATH,
                    options: WebSocketOptions | None = None) -> WebSocketRoute:
    """The live-session WebSocket route (see the module docstring)."""
    hub = factory if isinstance(factory, SessionHub) else SessionHub(factory)
    opts = options or WebSocketOptions()

    # an ASGI app object (not a function of a WebSocket, which Starlette would wrap as a
    # session): the per-frame path reads and writes the raw ASGI messages
    route = WebSocketRoute(path, _Endpoint(hub, verifier, opts), name="live_session_ws")
    route.hub = hub  # type: ignore[attr-defined]
    return route


class _Endpoint:
    """The route's ASGI app: one connection of :func:`_serve`."""

    def __init__(self, hub: SessionHub, verifier: TokenVerifier,
                 opts: WebSocketOptions) -> None:
        self.hub, self.verifier, self.opts = hub, verifier, opts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _serve(WebSocket(scope, receive, send), receive, send, self.hub, self.verifier,
                     self.opts)


async def _serve(ws: WebSocket, receive: Receive, send: Send, hub: SessionHub,
                 verifier: TokenVerifier, opts: WebSocketOptions) -> None:
    offered = ws.scope.get("subprotocols") or []
    msgpack = SUBPROTOCOL_MSGPACK in offered
    sub = SUBPROTOCOL_MSGPACK if msgpack else (
        SUBPROTOCOL_JSON if SUBPROTOCOL_JSON in offered else None)
    sid = str(ws.path_params.get("session_id", ""))
    token = _token(ws)
    await ws.accept(subprotocol=sub)
    conn = _Connection(ws, msgpack, opts, receive, send)
    if not _SESSION_ID.match(sid):
        await conn.refuse(CLOSE_BAD_REQUEST, "session id must be 1-128 of [A-Za-z0-9._:-]",
                          "session_id")
        return
    if token is None:
        await conn.refuse(CLOSE_UNAUTHORIZED, "missing session token: pass ?token= or "
                          "Authorization: Bearer", "token")
        return
    try:
        grant = await verifier(token, sid)
    except TokenRefused as exc:
        await conn.refuse(exc.code, exc.reason, "token")
        return
    if grant.session_id != sid:
        await conn.refuse(CLOSE_FORBIDDEN, f"token is for session {grant.session_id}, not {sid}",
                          "token")
        return
    try:
        start = await conn.read_start()
    except TimeoutError:
        await conn.refuse(CLOSE_TIMEOUT, f"no `start` within {opts.start_timeout_s:g} s", "type")
        return
    except (ProtocolError, InputRejected) as exc:
        await conn.refuse(CLOSE_BAD_REQUEST, f"bad `start`: {exc}", exc.field)
        return
    except _Fatal as exc:
        await conn.refuse(exc.code, exc.reason, "type")
        return
    except WebSocketDisconnect:
        return
    audio = ClientAudio(sample_rate=start.sample_rate,
                        output_sample_rate=start.output_sample_rate or start.sample_rate,
                        sequenced=start.sequenced, timeline=start.timeline,
                        events=frozenset(start.events) if start.events else None)
    try:
        handle, resumed = await hub.acquire(sid, grant, audio)
    except (SessionRefused, TokenRefused) as exc:
        await conn.refuse(exc.code, exc.reason)
        return
    except Exception as exc:  # a factory failure refuses this session, never the server
        log.error("session %s: cannot open: %r", sid, exc)
        await conn.refuse(CLOSE_UNAVAILABLE, f"session cannot be opened: {exc}"[:120])
        return
    conn.audio = audio
    try:
        await _run(conn, handle, audio, resumed)
    finally:
        hub.release(sid)


async def _run(conn: _Connection, handle: LiveSession, audio: ClientAudio,
               resumed: bool) -> None:
    stream = handle.connect(audio, conn.send_now if conn.sends_now else None)
    try:
        await conn.send(Ready(session_id=handle.session_id, sample_rate=audio.sample_rate,
                              output_sample_rate=handle.output_sample_rate,
                              frame_ms=20, resumed=resumed,
                              lease_epoch=getattr(handle, "lease_epoch", None)))
    except (RuntimeError, OSError, WebSocketDisconnect):
        # the client gave up while its session opened: no error (nobody is there to be
        # told), the session waits for a resume as after any disconnect
        log.info("session %s: the client left before `ready`", handle.session_id)
        if not handle.closed:
            await handle.disconnected()
        return

    gate = getattr(handle, "may_send", None)  # the lease gate at the socket (served)

    async def write() -> tuple[int, str] | None:
        try:
            async for item in stream:
                await conn.send(item, gate)
        except OverflowError as exc:
            return CLOSE_TOO_SLOW, str(exc)
        except (RuntimeError, OSError, WebSocketDisconnect):
            return None  # the client is gone; the reader sees the disconnect
        return 1000, handle.close_reason or "session closed"

    reader = asyncio.create_task(_read_loop(conn, handle, audio), name="ws-reader")
    writer = asyncio.create_task(write(), name="ws-writer")
    await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    close: tuple[int, str] | None = None
    if reader.done():
        exc = reader.exception()
        if isinstance(exc, _Fatal):  # the session cannot continue (flood)
            close = exc.code, exc.reason
            writer.cancel()
            await asyncio.wait({writer})
            await handle.close(exc.reason)
        else:
            if exc is not None:
                log.error("session %s: reader failed: %r", handle.session_id, exc)
            if not handle.closed:
                await handle.disconnected()  # the stream ends: the writer returns
            await asyncio.wait({writer})
            close = writer.result() if not writer.cancelled() else None
            if close is None and exc is not None:
                close = 1011, "internal error"
    else:
        close = writer.result()
        if close is not None and close[0] == CLOSE_TOO_SLOW and not handle.closed:
            await handle.disconnected()
        if close is not None:
            await conn.close(*close)
        # the reader sees the close (or the client is gone); bounded, then cancelled
        await asyncio.wait({reader}, timeout=2.0)
        if not reader.done():
            reader.cancel()
            await asyncio.wait({reader})
        elif isinstance(reader.exception(), Exception) and not handle.closed:
            await handle.disconnected()
        return
    if close is not None:
        await conn.close(*close)


class _DirectFrames:
    """A connection's :data:`FrameSink`: while the reader waits for a message (``idle``),
    a binary frame is decoded and goes into the session right in the server's read
    callback, as the reader would take it; an intake that has to wait is queued for the
    reader as an :class:`IntakeRest` (the reader is busy from then on, so every later message
    queues behind it)."""

    __slots__ = ("_max", "_push", "_raw", "audio", "conn", "handle", "idle", "rest")

    def __init__(self, conn: _Connection, handle: LiveSession, audio: ClientAudio) -> None:
        self.conn, self.handle, self.audio = conn, handle, audio
        self.idle = False
        #: a rest queued for the reader and not taken yet
        self.rest: IntakeRest | None = None
        #: binary frames are bare PCM16 (JSON variant, unnumbered): ``decode`` and
        #: ``dispatch`` of a frame within the limits are one ``push_audio``
        self._raw = not conn.msgpack and not audio.sequenced
        self._max = conn.opts.max_audio_frame_bytes
        self._push = handle.push_audio

    def __call__(self, data: bytes) -> Message | None:
        if not self.idle or self.handle.closed:
            return {"type": "websocket.receive", "bytes": data}
        try:
            n = len(data)
            if self._raw and n <= self._max and not n % 2:
                aw = self._push(data)
            else:
                aw = dispatch(self.handle, self.audio, self.conn.decode(None, data))
            if aw is TAKEN:  # the session took it inside the call
                return None
            # a coroutine is its own iterator (``__await__`` would wrap it: one object more)
            it = aw if type(aw) is CoroutineType else aw.__await__()
            yielded = it.send(None)
        except StopIteration:
            return None
        except (ProtocolError, InputRejected) as exc:
            reject_input(self.handle, exc)
            return None
        except (Exception, asyncio.CancelledError) as exc:
            rest = IntakeRest(None, exc=exc)  # (a flood): the reader raises it, as queued
        else:
            rest = IntakeRest(it, yielded)
        self.idle = False
        self.rest = rest
        return {"type": "websocket.receive", _REST: rest}


def reject_input(handle: LiveSession, exc: ProtocolError | InputRejected) -> None:
    """A bad message is an ``error`` event naming the field; the session goes on."""
    code = "bad_message" if isinstance(exc, ProtocolError) else exc.code
    # the message goes to the client, the log (bounded per session) gets no client bytes
    if isinstance(exc, ProtocolError):  # the field may be a name the client made up
        logged, field = exc.loggable, exc.loggable.partition(":")[0]
    else:
        logged, field = f"{exc.field}: {exc}", exc.field
    handle.reject(ErrorEvent(code=code, field=exc.field, message=str(exc)), logged, field)


async def _read_loop(conn: _Connection, handle: LiveSession, audio: ClientAudio) -> None:
    receive, received = conn.raw_receive, conn.received  # (the state is CONNECTED here)
    direct = _DirectFrames(conn, handle, audio)
    with installed((conn.ws.scope.get("extensions") or {}).get(FRAME_SINK), direct):
        while not handle.closed:
            direct.idle = True
            msg = await receive()
            direct.idle = False
            rest: IntakeRest | None = msg.get(_REST)
            if rest is None:
                got = received(msg)
                if got is None:
                    return
            else:
                direct.rest, got = None, None
            try:
                if got is not None:
                    await dispatch(handle, audio, conn.decode(*got))
                elif rest is not None:
                    await rest
            except Flood as exc:
                await conn.send(ErrorEvent(code="flood", field="audio", message=str(exc),
                                           fatal=True))
                raise _Fatal(CLOSE_FLOOD, "audio faster than real time") from None
            except (ProtocolError, InputRejected) as exc:
                reject_input(handle, exc)


def dispatch(handle: LiveSession, audio: ClientAudio, msg: object) -> Awaitable[None]:
    """One decoded client message (or raw audio bytes) into the session (every transport).

    Not a coroutine itself (audio frames pass here 50 times a second per session): bad
    input raises at the call; the returned awaitable takes the message in.
    """
    if isinstance(msg, bytes):
        seq: int | None = None
        if audio.sequenced:
            if len(msg) < 4:
                raise InputRejected("audio", "sequenced frames start with a 4-byte sequence "
                                    "number")
            seq, msg = int.from_bytes(msg[:4], "big"), msg[4:]
        if len(msg) % 2:
            raise InputRejected("audio", f"frame of {len(msg)} bytes is not PCM16 (declared "
                                f"pcm_s16le mono at {audio.sample_rate} Hz)")
        return handle.push_audio(msg, seq)
    if isinstance(msg, AudioIn):
        if len(msg.data) % 2:
            raise InputRejected("data", f"frame of {len(msg.data)} bytes is not PCM16")
        return handle.push_audio(msg.data, msg.seq)
    return _control(handle, msg)


async def _control(handle: LiveSession, msg: object) -> None:
    """A control message (anything but audio) into the session."""
    if isinstance(msg, TextIn):
        await handle.push_text(msg.text, msg.id)
    elif isinstance(msg, Interrupt):
        await handle.interrupt()
    elif isinstance(msg, EndOfUtterance):
        await handle.end_of_utterance()
    elif isinstance(msg, CaptureDebug):
        handle.capture_debug(msg.seconds)
    elif isinstance(msg, End):
        await handle.end()
    elif isinstance(msg, Start):
        raise InputRejected("type", "`start` was already received; the audio format is fixed "
                            "for the connection")
    else:  # pragma: no cover - the decoder only yields the union
        raise InputRejected("type", f"unexpected message {type(msg).__name__}")
