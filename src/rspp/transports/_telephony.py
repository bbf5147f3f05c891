"""The telephony media-streams endpoint (Twilio Media Streams protocol; F-085, F-089).

:func:`twilio_stream_route` returns the Starlette route ``/v1/telephony/twilio/stream``
a carrier connects to after the TwiML ``<Connect><Stream>`` of the voice webhook.
A thin adapter onto the shared transport contract (:class:`LiveTransport` behind a
:class:`LiveSession`); per call, in order:

1. accept; read ``connected`` (optional) and ``start`` (within the start timeout).
   Anything else first (``media`` before ``start``) closes the stream with a reason;
2. the session token of ``start.customParameters.token`` is verified through the
   injected :class:`TokenVerifier` BEFORE any audio is accepted (the session id is
   ``customParameters.session_id``, else the call id); the media format must be
   mu-law 8 kHz mono;
3. the session opens (or is refused, with a close reason) through the shared
   :class:`SessionHub`, declaring 8 kHz PCM both ways and acknowledged playback;
4. a reader turns ``media`` into PCM16 (mu-law table) for the session, which
   resamples it (soxr) and re-chunks it to 20 ms at the pipeline rate; ``dtmf`` into
   a control event on the graph's ``input.control`` entry (attributes
   ``transport.name`` / ``transport.dtmf``); ``mark`` echoes into playback truth;
   ``stop`` hangs up: the active turn aborts and the session closes. A writer sends
   the paced reply frames as mu-law ``media`` (with a ``mark`` after the frames the
   transport marks) and ``clear`` on barge-in.

Bad input (malformed or unknown messages, bad base64, media before ``start``, a
``start`` without a valid token) is logged with the call id and answered by closing
the stream with a reason; it never crashes the server nor touches another call.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
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
from rspp.transports._intake import TAKEN, IntakeRest, installed, start_intake
from rspp.transports._marks import parse_mark
from rspp.transports._mulaw import mulaw_encode, mulaw_expand
from rspp.transports._protocol import Clear, ErrorEvent, ProtocolError, ServerEvent
from rspp.transports._session_port import (
    CLOSE_BAD_REQUEST,
    CLOSE_FLOOD,
    CLOSE_FORBIDDEN,
    CLOSE_TIMEOUT,
    CLOSE_TOO_LARGE,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNAVAILABLE,
    ClientAudio,
    LiveSession,
    Outbound,
    SessionRefused,
    TokenRefused,
    TokenVerifier,
)
from rspp.transports._twilio_protocol import (
    CarrierMessage,
    CarrierWriter,
    Connected,
    Dtmf,
    Mark,
    Media,
    StreamStart,
    StreamStop,
    carrier_error,
    decode_carrier,
    decode_carrier_raw,
    decode_payload,
)
from rspp.transports._websocket import SEND_NOW, TEXT_SINK, SessionHub

__all__ = ["TWILIO_STREAM_PATH", "TelephonyOptions", "twilio_stream_route"]

log = logging.getLogger("rspp.transports.telephony")
TWILIO_STREAM_PATH = "/v1/telephony/twilio/stream"
CARRIER_RATE = 8000
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
#: the ``media.track`` values of the caller's audio (None: a carrier that sends one track)
_INBOUND = frozenset((None, "inbound", "inbound_track"))


@dataclass(frozen=True, slots=True)
class TelephonyOptions:
    #: largest carrier message (a JSON text frame)
    max_message_bytes: int = 64 * 1024
    #: largest decoded media payload (mu-law bytes; 1 s)
    max_media_bytes: int = 8000
    #: ``start`` must arrive within this
    start_timeout_s: float = 10.0
    #: resample 8 kHz <-> the pipeline rate without soxr's block delay (quality QQ): the
    #: reply starts ~110 ms sooner and the recogniser does no worse on phone audio
    #: (docs/benchmarks.md); False: soxr HQ
    low_latency_resampling: bool = True


class _Close(Exception):
    """End the stream: close code and a one-line reason (``logged``: the server log's
    version of it, without what the carrier sent; by default the reason)."""

    def __init__(self, code: int, reason: str, logged: str | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason
        self.logged = reason if logged is None else logged


class _Call:
    """One carrier stream: its socket, call/stream ids and the send side.

    Once accepted, messages go through the raw ASGI ``receive``/``send`` (the per-message
    path: 50 messages a second each way), keeping the Starlette wrapper's connection
    states as its own ``receive``/``send`` keep them (its ``close`` still uses it).
    Only the writer task sends (the reader never answers the carrier; the close comes
    after both tasks ended), so sends need no lock.
    """

    def __init__(self, ws: WebSocket, opts: TelephonyOptions, receive: Receive,
                 send: Send) -> None:
        self.ws, self.opts = ws, opts
        self.raw_receive, self._send = receive, send
        self.call_sid = "-"
        self.stream_sid = ""
        self.out = CarrierWriter("")
        self._write_now: Callable[[Message], bool] | None = (
            ws.scope.get("extensions") or {}).get(SEND_NOW)

    async def receive(self) -> str | None:
        """The next text message; None when the carrier disconnected."""
        ensure_receivable(self.ws)
        return self.text(await self.raw_receive())

    def text(self, msg: Message) -> str | None:
        """The text of a raw ASGI message; None for a disconnect."""
        got = incoming(self.ws, msg)
        if got is None:
            return None
        text: str | None = got.get("text")
        if text is None:
            raise _Close(CLOSE_BAD_REQUEST, "binary frames are not part of the protocol")
        if len(text) > self.opts.max_message_bytes:
            raise _Close(CLOSE_TOO_LARGE, f"message of {len(text)} bytes exceeds "
                         f"{self.opts.max_message_bytes}")
        return text

    def send(self, text: str) -> Awaitable[None]:
        """Send one text message (the awaitable of the raw send itself: no coroutine of
        its own, as reply frames go out 50 times a second)."""
        return send_raw(self.ws, self._send, {"type": "websocket.send", "text": text})

    @property
    def sends_now(self) -> bool:
        """The server writes a message synchronously (:data:`~rspp.transports.SEND_NOW`)."""
        return self._write_now is not None

    def send_now(self, item: Outbound) -> bool:
        """Write ``item``'s carrier message at once, from whoever put it on the call's
        outbound queue while the writer waits for one (the runtime's pacer: no writer
        wake-up per reply frame); False: the writer sends it (the server cannot write
        without waiting, the connection is closing, or a frame carries a mark: two
        messages, which must both go or neither)."""
        write = self._write_now
        if write is None or self.ws.application_state is not WebSocketState.CONNECTED:
            return False
        if isinstance(item, AudioFrame):
            if item.mark is not None:
                return False
            return not item.pcm or write(
                {"type": "websocket.send", "text": self.out.media(mulaw_encode(item.pcm))})
        text = self.event_text(item)
        return text is None or write({"type": "websocket.send", "text": text})

    def event_text(self, item: ServerEvent) -> str | None:
        """The carrier message of a session event (``clear``); None: it has none
        (transcripts, reply text, turn events, stats; an error is logged)."""
        if isinstance(item, Clear):
            return self.out.clear()
        if isinstance(item, ErrorEvent):
            log.warning("call %s: %s (%s): %s", self.call_sid, item.code, item.field,
                        item.message)
        return None

    async def close(self, code: int, reason: str, logged: str | None = None) -> None:
        if code != 1000:
            log.warning("call %s: closing the stream (%d): %s", self.call_sid, code,
                        reason if logged is None else logged)
        await close_quietly(self.ws, code, reason)


def twilio_stream_route(hub: SessionHub, verifier: TokenVerifier, *,
                        path: str = TWILIO_STREAM_PATH,
                        options: TelephonyOptions | None = None) -> WebSocketRoute:
    """The carrier media-streams WebSocket route (see the module docstring)."""
    # an ASGI app object (not a function of a WebSocket, which Starlette would wrap as a
    # session): the per-message path reads and writes the raw ASGI messages
    return WebSocketRoute(path, _Endpoint(hub, verifier, options or TelephonyOptions()),
                          name="telephony_twilio_stream")


class _Endpoint:
    """The route's ASGI app: one carrier stream."""

    def __init__(self, hub: SessionHub, verifier: TokenVerifier,
                 opts: TelephonyOptions) -> None:
        self.hub, self.verifier, self.opts = hub, verifier, opts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws = WebSocket(scope, receive, send)
        await ws.accept()
        call = _Call(ws, self.opts, receive, send)
        try:
            await _serve(call, self.hub, self.verifier)
        except _Close as exc:
            await call.close(exc.code, exc.reason, exc.logged)
        except WebSocketDisconnect:
            return


async def _read_start(call: _Call) -> StreamStart:
    while True:
        text = await call.receive()
        if text is None:
            raise WebSocketDisconnect(1000)
        try:
            msg = decode_carrier(text)
        except ProtocolError as exc:
            raise _Close(CLOSE_BAD_REQUEST, f"bad message before `start` ({exc.field}): "
                         f"{exc}", f"bad message before `start`: {exc.loggable}") from None
        if isinstance(msg, StreamStart):
            return msg
        if not isinstance(msg, Connected):
            raise _Close(CLOSE_BAD_REQUEST, f"`{_event_name(msg)}` before `start`")


async def _serve(call: _Call, hub: SessionHub, verifier: TokenVerifier) -> None:
    try:
        start = await asyncio.wait_for(_read_start(call), call.opts.start_timeout_s)
    except TimeoutError:
        raise _Close(CLOSE_TIMEOUT, f"no `start` within {call.opts.start_timeout_s:g} s") \
            from None
    info = start.start
    for name, value in (("callSid", info.call_sid), ("streamSid", info.stream_sid)):
        if not _SESSION_ID.match(value):  # the ids go into every log line of the call
            raise _Close(CLOSE_BAD_REQUEST, f"start.{name} must be 1-128 of [A-Za-z0-9._:-]")
    call.call_sid, call.stream_sid = info.call_sid, info.stream_sid
    call.out = CarrierWriter(info.stream_sid)
    fmt = info.media_format
    if (fmt.encoding, fmt.sample_rate, fmt.channels) != ("audio/x-mulaw", CARRIER_RATE, 1):
        raise _Close(CLOSE_BAD_REQUEST, f"media format {fmt.encoding}/{fmt.sample_rate}/"
                     f"{fmt.channels} is not audio/x-mulaw/8000/1",
                     "start.mediaFormat is not audio/x-mulaw/8000/1")
    params = info.custom_parameters
    token = params.get("token")
    if not token:
        raise _Close(CLOSE_UNAUTHORIZED, "start.customParameters.token is missing: the "
                     "TwiML <Stream> carries the session token as <Parameter name=\"token\">")
    sid = params.get("session_id") or info.call_sid
    if not _SESSION_ID.match(sid):
        raise _Close(CLOSE_BAD_REQUEST, "session id must be 1-128 of [A-Za-z0-9._:-]")
    try:
        grant = await verifier(token, sid)
    except TokenRefused as exc:
        raise _Close(exc.code, exc.reason) from None
    if grant.session_id != sid:
        raise _Close(CLOSE_FORBIDDEN, f"token is for session {grant.session_id}, not {sid}")
    audio = ClientAudio(sample_rate=CARRIER_RATE, output_sample_rate=CARRIER_RATE,
                        playback_acks=True, transport="telephony", stats=False,
                        low_latency_resampling=call.opts.low_latency_resampling)
    try:
        handle, _ = await hub.acquire(sid, grant, audio)
    except (SessionRefused, TokenRefused) as exc:
        raise _Close(exc.code, exc.reason) from None
    except Exception as exc:  # a factory failure refuses this call, never the server
        log.error("call %s: session %s cannot be opened: %r", call.call_sid, sid, exc)
        raise _Close(CLOSE_UNAVAILABLE, f"session cannot be opened: {exc}") from None
    log.info("call %s: stream %s on session %s", call.call_sid, call.stream_sid, sid)
    try:
        await _run(call, handle, audio)
    finally:
        hub.release(sid)


async def _run(call: _Call, handle: LiveSession, audio: ClientAudio) -> None:
    stream = handle.connect(audio, call.send_now if call.sends_now else None)

    async def write() -> tuple[int, str]:
        send, out = call.send, call.out
        try:
            async for item in stream:
                if type(item) is AudioFrame:  # the paced reply frames: inline
                    if item.pcm:
                        await send(out.media(mulaw_encode(item.pcm)))
                    if item.mark is not None:
                        await send(out.mark(item.mark))
                else:
                    await _send(call, item)
        except OverflowError as exc:
            return CLOSE_TOO_SLOW, str(exc)
        except (RuntimeError, OSError, WebSocketDisconnect):
            return 1000, "carrier gone"
        return 1000, handle.close_reason or "session closed"

    reader = asyncio.create_task(_read_loop(call, handle), name="phone-reader")
    writer = asyncio.create_task(write(), name="phone-writer")
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, writer):
            if not task.done():
                task.cancel()
        await asyncio.wait({reader, writer})
    close: tuple[int, str] = (1000, "call ended")
    logged: str | None = None
    why = "server"
    if writer.done() and not writer.cancelled():
        close = writer.result()
    if reader.done() and not reader.cancelled():
        exc = reader.exception()
        if isinstance(exc, _Close):
            close, why, logged = (exc.code, exc.reason), "bad_input", exc.logged
        elif exc is not None:
            log.error("call %s: reader failed: %r", call.call_sid, exc)
            close, why = (1011, "internal error"), "internal_error"
        else:
            why = reader.result() or why
    if not handle.closed:
        # the carrier never resumes a stream: any end of it is the end of the call
        await handle.hang_up(f"call_ended:{why}")
    await call.close(*close, logged)


async def _send(call: _Call, item: AudioFrame | ServerEvent) -> None:
    if isinstance(item, AudioFrame):
        if item.pcm:
            await call.send(call.out.media(mulaw_encode(item.pcm)))
        if item.mark is not None:
            await call.send(call.out.mark(item.mark))
        return
    text = call.event_text(item)
    if text is not None:
        await call.send(text)


class _DirectMedia:
    """A call's :data:`~rspp.transports.TEXT_SINK`: while the reader waits for a message
    (``idle``), a ``media`` message goes into the session right in the server's read
    callback, as the reader would take it (no ASGI message, no reader wake-up: 50 a
    second per call). Anything else (``mark``, ``dtmf``, ``stop``, bad input) is queued
    for the reader, decoded once (:data:`_DECODED`); an intake that has to wait, or that
    raised (a flood, an oversized payload), is queued as an :class:`IntakeRest` that the
    reader awaits (raises) in the message's place (the reader is busy from then on, so
    every later message queues behind it, in order)."""

    __slots__ = ("_max_media", "_max_text", "_push", "handle", "idle", "rest")

    def __init__(self, handle: LiveSession, opts: TelephonyOptions) -> None:
        self.handle = handle
        self.idle = False
        #: a rest queued for the reader and not taken yet
        self.rest: IntakeRest | None = None
        self._push = handle.push_audio
        self._max_media, self._max_text = opts.max_media_bytes, opts.max_message_bytes

    def __call__(self, text: str) -> Message | None:
        if not self.idle or self.handle.closed or len(text) > self._max_text:
            return {"type": "websocket.receive", "text": text}
        try:
            msg = decode_carrier_raw(text)
        except msgspec.MsgspecError:  # the reader decodes it again, closing with the reason
            return {"type": "websocket.receive", "text": text}
        if type(msg) is not Media:
            return {"type": "websocket.receive", "text": text, _DECODED: msg}
        media = msg.media
        if media.track not in _INBOUND:
            return None  # only the caller's audio is session input
        try:
            mulaw = media.payload
            if len(mulaw) > self._max_media:
                decode_payload(msg, self._max_media)  # raises, naming the field
            chunk = media.chunk
            aw = self._push(mulaw_expand(mulaw, 2), int(chunk) if chunk is not None
                            and chunk.isdigit() and len(chunk) < 10 else None)
            if aw is TAKEN:  # the session took it inside the call
                return None
            rest = start_intake(aw)
        except Exception as exc:  # (a flood, a bad payload): the reader raises it
            rest = IntakeRest(None, exc=exc)
        if rest is None:
            return None
        self.idle = False
        self.rest = rest
        return {"type": "websocket.receive", "text": text, _DECODED: rest}


#: a queued message's key for what :class:`_DirectMedia` made of it: the decoded carrier
#: message, or the rest of a ``media`` message's intake
_DECODED = "rspp.decoded"


async def _read_loop(call: _Call, handle: LiveSession) -> str | None:
    """Carrier messages into the session until ``stop`` (a hang-up) or a disconnect.

    Returns how the call ended (``stop``, ``carrier_disconnected``); the caller hangs
    the session up, outside this task (which is cancelled when the writer ends first).
    On a server that offers :data:`~rspp.transports.TEXT_SINK`, ``media`` messages go
    in from its read callback while this reader waits (:class:`_DirectMedia`).
    Otherwise the ``media`` message (50 a second) is taken inline here: the raw ASGI
    text message (anything else goes through :meth:`_Call.text`), the payload decoded
    with the JSON and the carrier's chunk number straight into the session.
    """
    direct = _DirectMedia(handle, call.opts)
    with installed((call.ws.scope.get("extensions") or {}).get(TEXT_SINK), direct):
        return await _read(call, handle, direct)


async def _read(call: _Call, handle: LiveSession, direct: _DirectMedia) -> str | None:
    receive, text_of = call.raw_receive, call.text  # (the state is CONNECTED here)
    max_media, max_text = call.opts.max_media_bytes, call.opts.max_message_bytes
    push_audio, expand = handle.push_audio, mulaw_expand
    decode = decode_carrier_raw  # (msgspec's errors named below)
    while not handle.closed:
        direct.idle = True
        raw = await receive()
        direct.idle = False
        msg: CarrierMessage | IntakeRest | None = raw.get(_DECODED)
        try:
            if msg is None:
                text = raw.get("text")
                if text is None or len(text) > max_text or raw["type"] != "websocket.receive":
                    text = text_of(raw)
                    if text is None:
                        return "carrier_disconnected"
                msg = decode(text)
            if type(msg) is Media:
                media = msg.media
                if media.track not in _INBOUND:
                    continue  # only the caller's audio is session input
                mulaw = media.payload
                if len(mulaw) > max_media:
                    decode_payload(msg, max_media)  # raises, naming the field
                # the carrier numbers its media chunks (``media.chunk``, 1-based): the
                # jitter buffer orders them
                chunk = media.chunk
                seq = int(chunk) if chunk is not None and chunk.isdigit() and len(chunk) < 10 \
                    else None
                try:
                    taken = push_audio(expand(mulaw, 2), seq)
                    if taken is not TAKEN:  # (a frame taken at once has nothing to await)
                        await taken
                except Flood as exc:
                    raise _Close(CLOSE_FLOOD, f"media faster than real time: {exc}") from None
                continue
            if type(msg) is IntakeRest:  # a media message the sink started
                direct.rest = None
                try:
                    await msg
                except Flood as exc:
                    raise _Close(CLOSE_FLOOD, f"media faster than real time: {exc}") from None
                continue
        except (ProtocolError, msgspec.MsgspecError) as exc:
            err = exc if isinstance(exc, ProtocolError) else carrier_error(exc)
            raise _Close(CLOSE_BAD_REQUEST, f"{err.field}: {err}" if err.field == "media.payload"
                         else f"bad message ({err.field}): {err}",
                         f"bad message: {err.loggable}") from None
        if isinstance(msg, Mark):
            heard = parse_mark(msg.mark.name)
            if heard is not None:
                handle.heard(*heard)
        elif isinstance(msg, Dtmf):
            digit = msg.dtmf.digit.upper()
            await handle.push_control("dtmf", digit, {"transport": {"name": "twilio",
                                                                    "dtmf": digit}})
        elif isinstance(msg, StreamStop):
            return "stop"
        else:
            raise _Close(CLOSE_BAD_REQUEST, f"`{_event_name(msg)}` after `start`")
    return None


def _event_name(msg: object) -> str:
    return str(type(msg).__struct_config__.tag)  # type: ignore[attr-defined]
