"""The ports a network transport plugs into: token verification and session factories.

A transport endpoint (WebSocket today; WebRTC, telephony and LiveKit later)
knows nothing about control planes, leases or pipelines. The server injects:

* a :class:`TokenVerifier`: ``await verify(token, session_id)`` returns the
  :class:`SessionGrant` the token carries, or raises :class:`TokenRefused`
  with a WebSocket close code and a one-line reason (expired, tampered,
  wrong tenant, wrong session);
* a :class:`SessionFactory`: ``await open(session_id, grant, audio)`` returns a
  :class:`LiveSession` (the local factory builds it with the same assembly as
  ``rspp run``; ``rspp serve`` with one governed by the control plane). It may
  raise :class:`SessionRefused` (lease not granted, control plane unreachable,
  pipeline not found) with a close code and reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from rspp.errors import RSPPError
from rspp.transports._egress import AudioFrame
from rspp.transports._protocol import ErrorEvent, ServerEvent

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_CONFLICT",
    "CLOSE_FLOOD",
    "CLOSE_FORBIDDEN",
    "CLOSE_TIMEOUT",
    "CLOSE_TOO_LARGE",
    "CLOSE_TOO_SLOW",
    "CLOSE_UNAUTHORIZED",
    "CLOSE_UNAVAILABLE",
    "ClientAudio",
    "LiveSession",
    "Outbound",
    "SendNow",
    "SessionFactory",
    "SessionGrant",
    "SessionRefused",
    "TokenRefused",
    "TokenVerifier",
]

#: WebSocket close codes of the protocol (4000-4999 are application codes)
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TIMEOUT = 4408
CLOSE_CONFLICT = 4409
CLOSE_TOO_LARGE = 4413
CLOSE_FLOOD = 4429
CLOSE_TOO_SLOW = 4430
CLOSE_UNAVAILABLE = 4503


class SessionGrant(msgspec.Struct, frozen=True, kw_only=True):
    """What a verified session token grants (the transport-side view of its claims)."""

    session_id: str
    tenant_id: str
    lease_epoch: int = 1
    pipeline_name: str | None = None
    pipeline_version: str | None = None
    runtime_id: str | None = None
    expires_at_s: int | None = None


class TokenRefused(RSPPError):
    """The token does not grant this session; ``code`` is the WebSocket close code."""

    def __init__(self, reason: str, code: int = CLOSE_UNAUTHORIZED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class SessionRefused(RSPPError):
    """The session cannot be opened (lease, control plane, pipeline); a clear reason."""

    def __init__(self, reason: str, code: int = CLOSE_UNAVAILABLE) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class TokenVerifier(Protocol):
    """Verifies a session token for ``session_id`` (the server's implementation)."""

    async def __call__(self, token: str, session_id: str) -> SessionGrant: ...


class ClientAudio(msgspec.Struct, frozen=True, kw_only=True):
    """The audio a client declared in its ``start`` message."""

    sample_rate: int = 16000
    output_sample_rate: int = 16000
    sequenced: bool = False
    #: the client wants ``turn_row`` events (timeline viewers)
    timeline: bool = False
    #: the client echoes frame marks once heard (a phone carrier): playback signals
    #: and commits follow the echoes (:meth:`LiveSession.heard`)
    playback_acks: bool = False
    #: resample without soxr's ~100 ms block delay (quality ``QQ``): phone audio
    low_latency_resampling: bool = False
    #: the kind of connection; it picks the spec's jitter profile (F-087)
    transport: Literal["websocket", "telephony", "webrtc", "livekit"] = "websocket"
    #: the client gets a ``stats`` event every second (a phone carrier has no message for
    #: one: its stream makes none)
    stats: bool = True
    #: the event types the client subscribed to (``start.events``, F-022); None: every event
    events: frozenset[str] | None = None


#: one outbound item: a protocol event, or a paced reply audio frame
Outbound = ServerEvent | AudioFrame
#: writes one outbound item to the connection at once; False: it cannot without waiting
#: (the item then goes through the connection's outbound stream)
SendNow = Callable[[Outbound], bool]


@runtime_checkable
class LiveSession(Protocol):
    """One live session as a transport endpoint drives it (any number of connections)."""

    @property
    def session_id(self) -> str: ...

    @property
    def tenant_id(self) -> str: ...

    @property
    def sample_rate(self) -> int:
        """The pipeline rate ingress is re-chunked to."""

    @property
    def output_sample_rate(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    @property
    def close_reason(self) -> str | None: ...

    def connect(self, audio: ClientAudio, send_now: SendNow | None = None
                ) -> AsyncIterator[Outbound]:
        """A new connection (first or resumed): the outbound stream for it. With
        ``send_now`` an item may leave through it at once instead of through the stream
        (while the stream waits for its next item, after the same checks)."""

    def notify(self, event: ServerEvent) -> None:
        """Queue an event (a non-fatal ``error``) for the current connection."""

    def reject(self, error: ErrorEvent, logged: str, field: str) -> None:
        """Client input not taken: ``error`` to the client, ``logged`` (no client bytes,
        counted under ``field``) to the server's log, a bounded number of lines per
        interval."""

    def is_fenced(self, turn_id: str) -> bool:
        """The cancel fence of ``turn_id`` is up: none of its audio may be played any more."""

    def push_audio(self, pcm: bytes, seq: int | None = None) -> Awaitable[None]:
        """Client PCM16 in the declared format (any size; ``seq`` when sequenced); await
        the result (the frame is taken when it is done)."""

    async def push_text(self, text: str, key: str | None = None) -> None:
        """Typed input; ``key``: its idempotency key (a duplicate is dropped)."""

    async def push_control(self, kind: str, value: str, attrs: Mapping[str, Any]) -> bool:
        """A transport control input (a DTMF digit) for the graph's ``input.control``."""

    def heard(self, turn_id: str, frames: int) -> None:
        """The client confirmed the first ``frames`` reply frames of ``turn_id`` heard."""

    async def interrupt(self) -> None: ...

    async def end_of_utterance(self) -> None:
        """The client's push-to-talk release: the utterance ends without the VAD's silence."""

    def capture_debug(self, seconds: float) -> None:
        """Record this session's debug events for ``seconds`` (F-076)."""

    async def end(self) -> None:
        """No more input: pending turns finish, then the session closes."""

    async def disconnected(self) -> None:
        """The connection is gone: ``disconnected``, ``stall``, abort, resume window."""

    async def hang_up(self, reason: str) -> None:
        """The caller left for good: the active turn aborts now, then the session closes."""

    async def close(self, reason: str) -> None: ...

    async def wait_closed(self) -> None: ...


class SessionFactory(Protocol):
    """Opens live sessions (local: the ``rspp run`` assembly; served: control-plane governed)."""

    async def open(self, session_id: str, grant: SessionGrant,
                   audio: ClientAudio) -> LiveSession: ...
