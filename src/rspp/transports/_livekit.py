"""The LiveKit transport (F-083): a live session as an agent participant of a LiveKit room.

Optional: it needs the LiveKit SDKs (``pip install 'rspp[livekit]'``: ``livekit`` for the
room, ``livekit-api`` for access tokens); nothing here imports them until a room is
joined, so the rest of RSPP runs without them (:func:`livekit_available`).

:class:`RoomAgent` is a thin adapter onto the shared transport contract, like the
WebSocket and telephony endpoints: it joins the session's room with an agent token
(:func:`agent_token`), publishes one reply audio track (an ``AudioSource`` fed with the
paced 20 ms frames of the :class:`LiveSession`, ``clear`` empties its queue), subscribes
to the caller's microphone (its ``AudioStream`` frames become session ingress, downmixed
to mono PCM16), uses the data channel (topic ``rspp``) for the same JSON events as the
WebSocket protocol (server events out; ``text``, ``interrupt``, ``end`` in), turns SIP
DTMF into control events on ``input.control`` and follows the caller: when the caller's
participant leaves, the call is over (the active turn aborts, the session closes). Joining
retries with a :class:`ReconnectPolicy` (exponential backoff with jitter); the SDK itself
resumes a dropped connection (``reconnecting``/``reconnected``), and a room disconnect
that is not ours ends the session like a hang-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from rspp.errors import RSPPError
from rspp.transports._egress import AudioFrame
from rspp.transports._protocol import (
    Clear,
    End,
    ErrorEvent,
    Interrupt,
    ProtocolError,
    ServerEvent,
    TextIn,
    decode_client,
    encode_message,
)
from rspp.transports._session_port import ClientAudio, LiveSession

__all__ = [
    "DATA_TOPIC",
    "ROOM_AUDIO",
    "LiveKitConfig",
    "LiveKitUnavailable",
    "ReconnectPolicy",
    "RoomAgent",
    "agent_token",
    "caller_token",
    "frame_to_pcm",
    "livekit_available",
    "pcm_to_frame",
]

log = logging.getLogger("rspp.transports.livekit")
#: data-channel topic of the session's JSON events (both directions)
DATA_TOPIC = "rspp"
#: the rate audio crosses the room at (WebRTC's Opus runs at 48 kHz)
ROOM_RATE = 48000
#: the audio a room agent declares to its session
ROOM_AUDIO = ClientAudio(sample_rate=ROOM_RATE, output_sample_rate=ROOM_RATE,
                         transport="livekit")


class LiveKitUnavailable(RSPPError):
    """The LiveKit SDKs are not installed."""


def livekit_available() -> bool:
    """True when ``livekit`` and ``livekit-api`` are importable (``rspp[livekit]``)."""
    try:
        return all(importlib.util.find_spec(m) is not None
                   for m in ("livekit.rtc", "livekit.api"))
    except ModuleNotFoundError:  # find_spec of a submodule imports its parent package
        return False


def _sdk() -> tuple[Any, Any]:
    """``(livekit.rtc, livekit.api)``; raises LiveKitUnavailable naming the extra."""
    try:
        from livekit import api, rtc
    except ImportError as exc:
        raise LiveKitUnavailable("the LiveKit transport needs the LiveKit SDKs: "
                                 "pip install 'rspp[livekit]'") from exc
    return rtc, api


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Exponential backoff with jitter for joining a room (and re-joining after a drop)."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 10.0
    #: tries in all (the first included)
    attempts: int = 6
    #: each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    jitter: float = 0.2

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits before the 2nd, 3rd, ... attempt (``attempts - 1`` of them)."""
        r = rng or random.Random()
        d = self.initial_s
        for _ in range(max(0, self.attempts - 1)):
            yield min(self.max_s, d) * (1 + self.jitter * (2 * r.random() - 1))
            d *= self.factor


@dataclass(frozen=True, slots=True)
class LiveKitConfig:
    """Where the LiveKit server is and the API key pair that signs room tokens."""

    url: str
    api_key: str
    api_secret: str
    #: identity prefix of the agent participant (``<prefix>-<session id>``)
    identity: str = "rspp-agent"
    token_ttl_s: int = 3600
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)


def agent_token(cfg: LiveKitConfig, room: str, session_id: str) -> str:
    """The runtime's room token: join ``room`` as an agent, publish audio and data."""
    _, api = _sdk()
    grants = api.VideoGrants(room_join=True, room=room, agent=True, can_publish=True,
                             can_subscribe=True, can_publish_data=True)
    token = (api.AccessToken(cfg.api_key, cfg.api_secret)
             .with_identity(f"{cfg.identity}-{session_id}").with_name("RSPP agent")
             .with_grants(grants).with_ttl(timedelta(seconds=cfg.token_ttl_s)))
    return str(token.to_jwt())


def caller_token(cfg: LiveKitConfig, room: str, identity: str) -> str:
    """A caller's room token: join ``room``, publish the microphone, subscribe."""
    _, api = _sdk()
    grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True,
                             can_publish_data=True)
    token = (api.AccessToken(cfg.api_key, cfg.api_secret).with_identity(identity)
             .with_grants(grants).with_ttl(timedelta(seconds=cfg.token_ttl_s)))
    return str(token.to_jwt())


def frame_to_pcm(frame: Any) -> bytes:
    """A LiveKit ``AudioFrame`` -> mono PCM16 little-endian (channels averaged)."""
    n, ch = int(frame.samples_per_channel), int(frame.num_channels)
    x = np.frombuffer(bytes(frame.data), dtype="<i2", count=n * ch)
    if ch > 1:
        x = x.reshape(n, ch).astype(np.int32).mean(axis=1).astype("<i2")
    return x.tobytes()


def pcm_to_frame(pcm: bytes, sample_rate: int) -> Any:
    """Mono PCM16 -> a LiveKit ``AudioFrame`` (what an ``AudioSource`` captures)."""
    rtc, _ = _sdk()
    n = len(pcm) // 2
    return rtc.AudioFrame(pcm[: 2 * n], sample_rate, 1, n)


def is_agent(participant: Any) -> bool:
    """True for participants that are agents (never the caller of a session)."""
    rtc, _ = _sdk()
    return bool(participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)


class RoomAgent:
    """One session's presence in its LiveKit room (see the module docstring).

    ``room`` is an ``rtc.Room`` (injected so tests can drive the event mapping with the
    SDK's real types); ``caller``: the identity whose microphone is the session's input
    (None: the first non-agent participant that publishes audio); ``publish_data``:
    how data-channel messages leave (default: the room's local participant, topic
    :data:`DATA_TOPIC`).
    """

    def __init__(self, handle: LiveSession, room: Any, cfg: LiveKitConfig, *,
                 room_name: str, caller: str | None = None,
                 publish_data: Callable[[bytes], Awaitable[None]] | None = None) -> None:
        self.handle = handle
        self.room = room
        self.cfg = cfg
        self.room_name = room_name
        self.caller = caller
        self.audio = ROOM_AUDIO
        self.source: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ingest: asyncio.Task[Any] | None = None
        self._leaving = False
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.frames_in = 0
        self.frames_out = 0
        self._publish = publish_data or self._publish_to_room
        #: user inputs that are not the microphone (text, interrupt, end, DTMF) are applied
        #: one at a time, in arrival order, like a WebSocket reader does
        self._inputs = asyncio.Lock()

    # ------------------------------------------------------------ tasks
    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("room %s: %s failed: %r", self.room_name, task.get_name(),
                      task.exception())

    # ------------------------------------------------------- room events
    def bind(self) -> None:
        """Subscribe to the room's events (before connecting)."""
        on: Callable[..., Any] = self.room.on
        on("track_subscribed", self.on_track_subscribed)
        on("participant_disconnected", self.on_participant_disconnected)
        on("data_received", self.on_data_received)
        on("sip_dtmf_received", self.on_sip_dtmf)
        on("disconnected", self.on_disconnected)

    def on_track_subscribed(self, track: Any, publication: Any, participant: Any) -> None:
        rtc, _ = _sdk()
        if track.kind != rtc.TrackKind.KIND_AUDIO or is_agent(participant):
            return
        if self.caller is None:
            self.caller = str(participant.identity)
        if participant.identity != self.caller or self._ingest is not None:
            return
        self.ingest(rtc.AudioStream.from_track(track=track, sample_rate=ROOM_RATE,
                                               num_channels=1, frame_size_ms=20))

    def on_participant_disconnected(self, participant: Any) -> None:
        if self.caller is not None and participant.identity == self.caller:
            self._spawn(self.leave("participant_left"), "livekit-hangup")

    def on_disconnected(self, reason: Any = None) -> None:
        if not self._leaving:
            self._spawn(self.leave(f"room_disconnected:{reason}"), "livekit-hangup")

    def on_data_received(self, packet: Any) -> None:
        if packet.topic != DATA_TOPIC:
            return
        who = packet.participant.identity if packet.participant is not None else None
        if self.caller is not None and who not in (None, self.caller):
            return
        try:
            msg = decode_client(bytes(packet.data))
        except ProtocolError as exc:
            self.handle.notify(ErrorEvent(code="bad_message", field=exc.field,
                                          message=str(exc)))
            return
        if isinstance(msg, TextIn):
            self._spawn(self._in_order(self._text(msg.text)), "livekit-text")
        elif isinstance(msg, Interrupt):
            self._spawn(self._in_order(self.handle.interrupt()), "livekit-interrupt")
        elif isinstance(msg, End):
            self._spawn(self._in_order(self.handle.end()), "livekit-end")
        else:
            self.handle.notify(ErrorEvent(code="bad_message", field="type", message=(
                f"`{type(msg).__name__}` is not used over LiveKit: audio is the "
                "microphone track")))

    async def _in_order(self, work: Awaitable[Any]) -> None:
        async with self._inputs:
            await work

    async def _text(self, text: str) -> None:
        try:
            await self.handle.push_text(text)
        except ValueError as exc:  # InputRejected: no text input, or its turn was refused
            self.handle.notify(ErrorEvent(code=getattr(exc, "code", "bad_input"),
                                          field=getattr(exc, "field", "type"),
                                          message=str(exc)))

    def on_sip_dtmf(self, dtmf: Any) -> None:
        digit = str(dtmf.digit).upper()
        self._spawn(self._in_order(self.handle.push_control("dtmf", digit, {
            "transport": {"name": "livekit", "dtmf": digit}})), "livekit-dtmf")

    # ------------------------------------------------------------- media
    def ingest(self, stream: Any) -> None:
        """The caller's microphone: ``AudioFrameEvent`` s of an ``AudioStream`` in."""
        self._ingest = self._spawn(self._pump_in(stream), "livekit-ingest")

    def start(self, source: Any) -> None:
        """Play the session's reply into ``source`` (an ``AudioSource`` at 48 kHz mono)."""
        self.source = source
        self._spawn(self._pump_out(), "livekit-egress")

    async def _publish_to_room(self, data: bytes) -> None:
        await self.room.local_participant.publish_data(data, reliable=True, topic=DATA_TOPIC)

    async def _pump_in(self, stream: Any) -> None:
        try:
            async for ev in stream:
                self.frames_in += 1
                await self.handle.push_audio(frame_to_pcm(ev.frame))
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    async def _pump_out(self) -> None:
        """The session's outbound stream: audio into the track, events on the data channel."""
        async for item in self.handle.connect(self.audio):
            await self.deliver(item)

    async def deliver(self, item: ServerEvent | AudioFrame) -> None:
        """One outbound item: a paced frame into the audio source, or an event as data."""
        if isinstance(item, AudioFrame):
            if item.pcm and self.source is not None:
                self.frames_out += 1
                await self.source.capture_frame(pcm_to_frame(item.pcm, ROOM_RATE))
            return
        if isinstance(item, Clear) and self.source is not None:
            self.source.clear_queue()  # barge-in: what the room has not played is dropped
        await self._publish(encode_message(item))

    # --------------------------------------------------------- lifecycle
    async def join(self, token: str, *, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        """Connect (retrying per the policy), publish the reply track, start the pumps."""
        rtc, _ = _sdk()
        self.bind()
        delays = self.cfg.reconnect.delays()
        while True:
            try:
                await self.room.connect(self.cfg.url, token,
                                        rtc.RoomOptions(auto_subscribe=True))
                break
            except Exception as exc:  # the SDK raises ConnectError, or OSError underneath
                wait = next(delays, None)
                if wait is None:
                    raise
                log.warning("room %s: join failed (%s); retrying in %.1f s", self.room_name,
                            exc, wait)
                await sleep(wait)
        source = rtc.AudioSource(ROOM_RATE, 1, queue_size_ms=200)
        track = rtc.LocalAudioTrack.create_audio_track("rspp-reply", source)
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, opts)
        self.start(source)

    async def leave(self, reason: str) -> None:
        """The call is over (caller left, room gone, session closed): clean everything up."""
        if self._leaving:
            return
        self._leaving = True
        self.end_reason = reason
        if not self.handle.closed:
            await self.handle.hang_up(f"livekit:{reason}")
        me = asyncio.current_task()
        rest = {t for t in self._tasks if t is not me}
        for t in rest:
            t.cancel()
        if rest:
            await asyncio.wait(rest)
        with contextlib.suppress(Exception):
            await self.room.disconnect()
        if self.source is not None:
            with contextlib.suppress(Exception):
                await self.source.aclose()
        self.ended.set()
