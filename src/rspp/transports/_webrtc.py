"""The WebRTC endpoint of live sessions (aiortc + PyAV; optional extra ``rspp[webrtc]``).

Signalling is one HTTP request (``GET`` on the same path, with the token, gives the
STUN/TURN servers to gather with first): ``POST /v1/sessions/{session_id}/webrtc`` with the
session token (``Authorization: Bearer`` or ``?token=``) and a JSON body
``{"type": "offer", "sdp": "...", "timeline": false}``; the answer comes back as
``{"type": "answer", "sdp": "...", "session_id": ...}`` with every ICE candidate
already gathered (no trickle). In order, per request:

1. the session id and the token are checked (through the injected
   :class:`~rspp.transports.TokenVerifier`) BEFORE the body is read; the body is
   size-limited; refusals are 4xx with a one-line JSON error naming the field;
2. the offer is applied (a malformed SDP or one without audio is a 400 naming
   ``sdp``), the session is opened or resumed through the same :class:`SessionHub`
   as the WebSocket endpoint (one live connection per session, whichever transport);
3. the answer is returned and the peer runs until the session or the peer ends.

This is a thin adapter onto the shared transport contract (:class:`LiveTransport`
behind :class:`~rspp.transports.LiveSession`): inbound Opus is decoded by aiortc and
handed over as PCM16 at its rate (the contract resamples to the pipeline rate and
re-chunks to 20 ms), numbered from the RTP timestamp behind each decoded frame
(:class:`RtpFrameNumbers`) so the jitter buffer of the ``webrtc`` profile sees the
frames a lossy network never delivered; reply audio comes from the contract's paced egress (fence
checked per frame) and is written to a real-time track that checks the fence once
more right before each frame goes to the encoder; the data channel carries the
JSON events of the WebSocket protocol (and takes ``text``, ``interrupt``, ``end``).
ICE failure, a closed peer connection or data channel, or an ended microphone track
ends the connection exactly as a WebSocket disconnect does (``disconnected``,
stall, abort ``transport_disconnect``, resume window).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import importlib.util
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rspp.transports._egress import AudioFrame
from rspp.transports._http_body import read_body_within
from rspp.transports._ingress import Flood, StreamResampler
from rspp.transports._input_rejected import InputRejected
from rspp.transports._protocol import (
    AudioIn,
    Clear,
    End,
    ErrorEvent,
    ProtocolError,
    Ready,
    ServerEvent,
    Start,
    _protocol_error,
    decode_client,
    encode_message,
)
from rspp.transports._session_port import (
    CLOSE_BAD_REQUEST,
    CLOSE_CONFLICT,
    CLOSE_FORBIDDEN,
    CLOSE_TOO_LARGE,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNAVAILABLE,
    ClientAudio,
    LiveSession,
    SessionRefused,
    TokenRefused,
    TokenVerifier,
)
from rspp.transports._websocket import SessionHub, dispatch, reject_input

__all__ = ["WEBRTC_PATH", "IceServer", "WebRTCEndpoint", "WebRTCOptions", "frame_pcm",
           "webrtc_available", "webrtc_route"]

log = logging.getLogger("rspp.transports.webrtc")
WEBRTC_PATH = "/v1/sessions/{session_id}/webrtc"
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_STATUS = {CLOSE_BAD_REQUEST: 400, CLOSE_UNAUTHORIZED: 401, CLOSE_FORBIDDEN: 403,
           CLOSE_CONFLICT: 409, CLOSE_TOO_LARGE: 413, CLOSE_UNAVAILABLE: 503}
#: Opus runs at 48 kHz; the page asks for and gets 48 kHz reply audio
WEBRTC_RATE = 48000


def webrtc_available() -> bool:
    """aiortc and PyAV are installed (``pip install 'rspp[webrtc]'``).

    Found, not imported: ``rspp serve`` asks at start-up, and importing aiortc costs
    ~0.3 s CPU that a server without WebRTC peers never needs (the route imports it on
    the first offer).
    """
    return all(importlib.util.find_spec(m) is not None for m in ("aiortc", "av"))


class RtpFrameNumbers:
    """Frame numbers of one inbound track from the RTP timestamps behind its frames.

    aiortc's receiver orders RTP packets by sequence number in its own small buffer and
    hands the decoder each frame with its RTP timestamp (relative to the track's first,
    wrap-around unrolled) as ``pts``; a packet it never got leaves a gap in those
    timestamps, not in the decoded stream. Numbering frame ``k`` as ``pts // samples``
    (samples of the first frame: 960 for 20 ms of Opus) gives the jitter buffer that gap:
    counted lost, concealed or dropped by the profile, and the pipeline's media time keeps
    the sender's. The RTP sequence number itself never reaches a decoded frame.

    A frame the timestamps cannot number (no ``pts``, another frame length, a timestamp
    off the grid) switches the track to arrival numbering (each frame the next number):
    the order stays, nothing more is counted lost.
    """

    def __init__(self) -> None:
        self._unit = 0
        self._origin = 0
        self._last: int | None = None
        self._by_pts = True

    def number(self, pts: int | None, samples: int) -> int:
        if self._by_pts and pts is not None and samples > 0:
            if self._last is None:
                self._unit, self._origin = samples, pts
            offset = pts - self._origin
            if samples == self._unit and offset % self._unit == 0:
                seq = offset // self._unit
                self._last = seq if self._last is None else max(self._last, seq)
                return seq
        self._by_pts = False
        self._last = 0 if self._last is None else self._last + 1
        return self._last


def frame_pcm(frame: Any) -> bytes:
    """Mono PCM16 of a decoded (Opus) PyAV frame: its first channel, at its rate."""
    channels = len(frame.layout.channels)
    return bytes(frame.to_ndarray().reshape(-1, channels)[:, 0].astype("<i2").tobytes())


class IceServer(msgspec.Struct, frozen=True, kw_only=True):
    """A STUN or TURN server (the browser's ``RTCIceServer`` shape)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class WebRTCOptions:
    #: STUN/TURN servers for both peers (none needed on loopback or a LAN)
    ice_servers: tuple[IceServer, ...] = ()
    #: largest signalling body (bytes)
    max_offer_bytes: int = 64 * 1024
    #: the peer must connect within this after the answer, or the connection is dropped
    connect_timeout_s: float = 30.0
    #: reply frames the track may hold (the contract's pacer keeps it near one)
    track_frames: int = 10
    #: events kept for the data channel until it opens
    pending_events: int = 512
    #: largest data-channel control message
    max_control_bytes: int = 8 * 1024
    #: data-channel bytes not yet sent beyond which the client is too slow to keep
    max_channel_buffer: int = 4 << 20


class Offer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The signalling request body."""

    type: Literal["offer"]
    sdp: Annotated[str, msgspec.Meta(min_length=1, max_length=60_000)]
    #: also send ``turn_row`` events on the data channel (the page's timeline)
    timeline: bool = False


_OFFER = msgspec.json.Decoder(Offer)


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "field": field}},
                        status_code=status)


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token") or None


class ReplyTrack:
    """Reply audio as a real-time WebRTC track (one 20 ms frame per 20 ms; silence between).

    Frames come from the contract's paced egress; ``recv`` checks the cancel fence
    (``fenced``) right before a frame is written to the encoder, so no frame of a
    fenced turn is played even if it was already handed over.
    """

    def __init__(self, rate: int, frame_ms: int, fenced: Callable[[str], bool],
                 max_frames: int) -> None:
        from aiortc.mediastreams import MediaStreamTrack

        class _Track(MediaStreamTrack):
            kind = "audio"

            async def recv(inner) -> Any:
                return await self._recv(inner)

        self.track: Any = _Track()
        self.rate, self.samples = rate, rate * frame_ms // 1000
        self._frame_s = frame_ms / 1000
        self._fenced = fenced
        self._frames: deque[AudioFrame] = deque()
        self._max = max_frames
        self._start: float | None = None
        self._k = 0
        self.written: dict[str | None, int] = {}
        self.fenced_drops = 0
        self.overflow = 0

    def push(self, frame: AudioFrame) -> None:
        if len(self._frames) >= self._max:
            self._frames.popleft()
            self.overflow += 1
        self._frames.append(frame)

    def drop_turn(self, turn_id: str) -> None:
        kept = [f for f in self._frames if f.turn_id != turn_id]
        self.fenced_drops += len(self._frames) - len(kept)
        self._frames = deque(kept)

    def _next_pcm(self) -> bytes | None:
        while self._frames:
            f = self._frames.popleft()
            if f.turn_id is not None and self._fenced(f.turn_id):  # the fence, per frame
                self.fenced_drops += 1
                continue
            self.written[f.turn_id] = self.written.get(f.turn_id, 0) + 1
            return f.pcm
        return None

    async def _recv(self, track: Any) -> Any:
        import av
        from aiortc.mediastreams import MediaStreamError

        if track.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None or now - (self._start + self._k * self._frame_s) > 0.2:
            self._start, self._k = now - self._k * self._frame_s, self._k  # re-anchor, no burst
        due = self._start + self._k * self._frame_s
        if due > now:
            await asyncio.sleep(due - now)
        pcm = self._next_pcm() or bytes(2 * self.samples)
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.samples)
        frame.planes[0].update(pcm[: 2 * self.samples].ljust(2 * self.samples, b"\0"))
        frame.pts = self._k * self.samples
        frame.sample_rate = self.rate
        frame.time_base = fractions.Fraction(1, self.rate)
        self._k += 1
        return frame


@dataclass(slots=True)
class _Peer:
    """One WebRTC connection of one session (see the module docstring)."""

    pc: Any
    handle: LiveSession
    audio: ClientAudio
    opts: WebRTCOptions
    track: ReplyTrack
    resumed: bool
    channel: Any = None
    pending: deque[str] = field(default_factory=deque)
    control: asyncio.Queue[str | bytes] = field(default_factory=lambda: asyncio.Queue(64))
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    why: str | None = None
    fatal: str | None = None
    inbound: Any = None
    input_ended: bool = False
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def end(self, why: str) -> None:
        if self.why is None:
            self.why = why
        self.gone.set()

    def send(self, ev: ServerEvent) -> None:
        text = encode_message(ev).decode()
        ch = self.channel
        if ch is not None and ch.readyState == "open":
            if ch.bufferedAmount > self.opts.max_channel_buffer:
                self.end("client_too_slow")
                return
            ch.send(text)
        elif len(self.pending) < self.opts.pending_events:
            self.pending.append(text)

    def on_channel(self, channel: Any) -> None:
        if self.channel is not None:
            return
        self.channel = channel

        def _message(msg: str | bytes) -> None:
            try:
                self.control.put_nowait(msg)
            except asyncio.QueueFull:
                self.handle.notify(ErrorEvent(code="bad_input", field="$",
                                              message="too many control messages at once"))

        def _close() -> None:
            self.end("datachannel_closed")

        channel.on("message", _message)
        channel.on("close", _close)

        while self.pending and channel.readyState == "open":
            channel.send(self.pending.popleft())

    async def write(self, stream: AsyncIterator[ServerEvent | AudioFrame]) -> None:
        try:
            async for item in stream:
                if isinstance(item, AudioFrame):
                    self.track.push(item)
                    continue
                if isinstance(item, Clear):
                    self.track.drop_turn(item.turn_id)
                self.send(item)
        except OverflowError:
            self.end("client_too_slow")

    async def read_audio(self) -> None:
        from aiortc.mediastreams import MediaStreamError

        track = self.inbound
        resampler: StreamResampler | None = None
        numbers = RtpFrameNumbers()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                self.end("microphone_track_ended")
                return
            if self.input_ended:
                continue  # after `end` the track keeps running; its audio is not input
            pcm = frame_pcm(frame)
            seq: int | None = numbers.number(frame.pts, frame.samples)
            if frame.sample_rate != self.audio.sample_rate:
                if resampler is None or resampler.in_rate != frame.sample_rate:
                    resampler = StreamResampler(frame.sample_rate, self.audio.sample_rate)
                pcm = resampler.convert(pcm)
                seq = None  # a resampler's output is not one piece per frame
            try:
                await self.handle.push_audio(pcm, seq)
            except Flood as exc:
                self.handle.notify(ErrorEvent(code="flood", field="audio", message=str(exc),
                                              fatal=True))
                self.fatal = "audio faster than real time"
                self.end("flood")
                return

    async def read_control(self) -> None:
        while True:
            msg = await self.control.get()
            try:
                decoded = self._decode(msg)
                if isinstance(decoded, End):
                    self.input_ended = True  # the microphone track is not input any more
                await dispatch(self.handle, self.audio, decoded)
            except (ProtocolError, InputRejected) as exc:
                reject_input(self.handle, exc)

    def _decode(self, msg: str | bytes) -> object:
        if isinstance(msg, bytes):
            raise InputRejected("$", "the data channel carries JSON text; audio travels on "
                                "the media track")
        if len(msg) > self.opts.max_control_bytes:
            raise ProtocolError(f"control message of {len(msg)} bytes exceeds "
                                f"{self.opts.max_control_bytes}", "$")
        decoded = decode_client(msg)
        if isinstance(decoded, Start | AudioIn):
            raise InputRejected("type", "over WebRTC the audio format is the media track's; "
                                "send `text`, `interrupt` or `end` on the data channel")
        return decoded

    async def run(self) -> None:
        """Until the session ends (close the peer) or the peer goes (disconnect the session)."""
        stream = self.handle.connect(self.audio)
        self.send(Ready(session_id=self.handle.session_id, sample_rate=self.audio.sample_rate,
                        output_sample_rate=self.handle.output_sample_rate, frame_ms=20,
                        resumed=self.resumed))
        tasks = {asyncio.create_task(self.write(stream), name="webrtc-writer"),
                 asyncio.create_task(self.read_control(), name="webrtc-control"),
                 asyncio.create_task(self._watch_connect(), name="webrtc-connect")}
        if self.inbound is not None:
            tasks.add(asyncio.create_task(self.read_audio(), name="webrtc-audio-in"))
        writer = next(t for t in tasks if t.get_name() == "webrtc-writer")
        gone = asyncio.create_task(self.gone.wait(), name="webrtc-gone")
        try:
            await asyncio.wait({writer, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not writer.done():  # the peer went first
                if self.fatal is not None:
                    await self.handle.close(self.fatal)
                elif not self.handle.closed:
                    await self.handle.disconnected()  # the stream ends: the writer returns
                await asyncio.wait({writer})
        finally:
            for t in (*tasks, gone):
                t.cancel()
            await asyncio.wait({*tasks, gone})
            with contextlib.suppress(Exception):
                await self.pc.close()

    async def _watch_connect(self) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), self.opts.connect_timeout_s)
        except TimeoutError:
            self.end("ice_connect_timeout")


class WebRTCEndpoint:
    """The signalling route and the peers it runs (owned tasks; see the module docstring)."""

    def __init__(self, hub: SessionHub, verifier: TokenVerifier,
                 options: WebRTCOptions | None = None) -> None:
        self.hub, self.verifier = hub, verifier
        self.opts = options or WebRTCOptions()
        self.peers: dict[str, _Peer] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, request: Request) -> Response:
        """``POST /v1/sessions/{id}/webrtc``: offer in, answer out; ``GET``: the ICE servers
        the peer needs before it makes its offer (credentials only to a token holder)."""
        sid = str(request.path_params.get("session_id", ""))
        if not _SESSION_ID.match(sid):
            return _error(400, "bad_request", "session id must be 1-128 of [A-Za-z0-9._:-]",
                          "session_id")
        token = _token(request)
        if token is None:
            return _error(401, "unauthorized", "missing session token: pass Authorization: "
                          "Bearer <token> (or ?token=)", "token")
        try:
            grant = await self.verifier(token, sid)
        except TokenRefused as exc:
            return _error(_STATUS.get(exc.code, 403), "refused", exc.reason, "token")
        if grant.session_id != sid:
            return _error(403, "refused", f"token is for session {grant.session_id}, not {sid}",
                          "token")
        if request.method == "GET":
            return JSONResponse({"session_id": sid, "webrtc": webrtc_available(),
                                 "ice_servers": [msgspec.to_builtins(s)
                                                 for s in self.opts.ice_servers]})
        if not webrtc_available():
            return _error(501, "unavailable", "WebRTC needs the optional extra: pip install "
                          "'rspp[webrtc]' (aiortc, PyAV); use the WebSocket endpoint", None)
        raw = await read_body_within(request, self.opts.max_offer_bytes)
        if raw is None:
            return _error(413, "too_large", f"offer exceeds {self.opts.max_offer_bytes} bytes",
                          "sdp")
        try:
            offer = _OFFER.decode(raw)
        except msgspec.MsgspecError as exc:
            err = _protocol_error(exc)
            return _error(400, "bad_request", f"bad offer: {err}", err.field)
        if "\nm=audio " not in offer.sdp.replace("\r\n", "\n"):
            return _error(400, "bad_request", "the offer has no audio media section (m=audio)",
                          "sdp")
        return await self._answer(sid, grant, offer)

    async def _answer(self, sid: str, grant: Any, offer: Offer) -> Response:
        from aiortc import (
            RTCConfiguration,
            RTCIceServer,
            RTCPeerConnection,
            RTCSessionDescription,
        )

        config = RTCConfiguration(iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in self.opts.ice_servers])
        pc = RTCPeerConnection(configuration=config)
        inbound: list[Any] = []
        channels: list[Any] = []
        pc.on("track", lambda t: inbound.append(t) if t.kind == "audio" else None)
        pc.on("datachannel", channels.append)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        except Exception as exc:  # aiortc raises several types on a malformed SDP
            await pc.close()
            return _error(400, "bad_request", f"malformed SDP offer: {exc}"[:300], "sdp")
        audio = ClientAudio(sample_rate=WEBRTC_RATE, output_sample_rate=WEBRTC_RATE,
                            timeline=offer.timeline, transport="webrtc")
        try:
            handle, resumed = await self.hub.acquire(sid, grant, audio)
        except (SessionRefused, TokenRefused) as exc:
            await pc.close()
            return _error(_STATUS.get(exc.code, 403), "refused", exc.reason, None)
        except Exception as exc:  # a factory failure refuses this session, never the server
            log.error("session %s: cannot open: %r", sid, exc)
            await pc.close()
            return _error(503, "unavailable", f"session cannot be opened: {exc}"[:300], None)
        try:
            track = ReplyTrack(WEBRTC_RATE, 20, handle.is_fenced, self.opts.track_frames)
            pc.addTrack(track.track)
            await pc.setLocalDescription(await pc.createAnswer())  # gathers every candidate
        except Exception as exc:
            self.hub.release(sid)
            await pc.close()
            if not resumed:
                await handle.close("webrtc_negotiation_failed")
            return _error(400, "bad_request", f"cannot answer the offer: {exc}"[:300], "sdp")
        peer = _Peer(pc=pc, handle=handle, audio=audio, opts=self.opts, track=track,
                     resumed=resumed, inbound=inbound[0] if inbound else None)
        for ch in channels:
            peer.on_channel(ch)
        pc.on("datachannel", peer.on_channel)

        def _state() -> None:
            if pc.connectionState == "connected":
                peer.connected.set()
            elif pc.connectionState in ("failed", "closed"):
                peer.end(f"peer_connection_{pc.connectionState}")

        pc.on("connectionstatechange", _state)

        self.peers[sid] = peer
        task = asyncio.create_task(self._run(sid, peer), name=f"webrtc-peer:{sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        desc = pc.localDescription
        return JSONResponse({"type": desc.type, "sdp": desc.sdp, "session_id": sid})

    async def _run(self, sid: str, peer: _Peer) -> None:
        try:
            await peer.run()
        except Exception as exc:  # one peer failing never touches another
            log.error("session %s: webrtc peer failed: %r", sid, exc)
            if not peer.handle.closed:
                await peer.handle.disconnected()
        finally:
            if self.peers.get(sid) is peer:
                del self.peers[sid]
            self.hub.release(sid)

    async def aclose(self) -> None:
        """Drop every peer (server shutdown); their sessions see a disconnect."""
        for peer in list(self.peers.values()):
            peer.end("server_shutdown")
        if self._tasks:
            await asyncio.wait(set(self._tasks))


def webrtc_route(hub: SessionHub, verifier: TokenVerifier, *, path: str = WEBRTC_PATH,
                 options: WebRTCOptions | None = None) -> Route:
    """The WebRTC signalling route (see the module docstring); its endpoint: ``route.webrtc``."""
    endpoint = WebRTCEndpoint(hub, verifier, options)
    route = Route(path, endpoint.handle, methods=["GET", "POST"], name="live_session_webrtc")
    route.webrtc = endpoint  # type: ignore[attr-defined]
    return route
