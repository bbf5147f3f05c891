"""Payload bodies: what travels beside the (closed) event envelope.

The envelope never carries bodies. A body is one of the tagged structs below
(``"type"``: ``audio``, ``audio_ref``, ``text``, ``metrics``, ``debug``, ``error``);
:mod:`rspp.contracts._framing` defines how it travels next to its envelope.

Audio metadata (F-023): an ``audio_raw`` envelope carries ``media_time``
(``sample_index`` or ``pts_ms``); the payload carries encoding, sample rate and
channels, and ``end_of_stream`` marks the last chunk of a turn's stream. Text
(F-024): partial and final text with monotonically increasing ``revision`` per
``segment_id``; a final is emitted once and never revised
(:class:`TextRevisionTracker` enforces both). :func:`event_type` names the event
type (F-022: audio, text, control, metrics, debug, error) of an envelope + body.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta

from rspp.contracts._enums import Lane
from rspp.contracts._schema_check import ValidationIssue
from rspp.contracts._types import NonEmptyStr, NonNegInt, PosInt, Sha256Hex
from rspp.errors import ContractError

AudioEncoding: TypeAlias = Literal["pcm_s16le", "pcm_f32le", "opus", "mulaw", "alaw"]

#: Bytes per sample per channel of the uncompressed encodings.
_SAMPLE_WIDTH: Final[dict[str, int]] = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1, "alaw": 1}


class TextPayload(
    msgspec.Struct,
    tag="text",
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
):
    """A partial or final text hypothesis of one segment (F-024)."""

    text: str
    is_final: bool
    revision: NonNegInt
    segment_id: NonEmptyStr = "0"


class AudioPayload(
    msgspec.Struct,
    tag="audio",
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
):
    """One chunk of audio with explicit encoding metadata (F-023)."""

    sample_rate_hz: Annotated[int, Meta(ge=1000, le=384000)]
    channels: Annotated[int, Meta(ge=1, le=8)]
    data: bytes
    encoding: AudioEncoding = "pcm_s16le"
    end_of_stream: bool = False

    def check(self) -> list[ValidationIssue]:
        """Issues of the body (whole frames for PCM); empty when well-formed."""
        width = _SAMPLE_WIDTH.get(self.encoding)
        if width is not None and len(self.data) % (width * self.channels):
            return [
                ValidationIssue(
                    "payload.data",
                    f"{len(self.data)} bytes is not a whole number of {self.encoding} frames of "
                    f"{width * self.channels} bytes ({self.channels} channel(s))",
                )
            ]
        return []


class AudioRef(
    msgspec.Struct,
    tag="audio_ref",
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
):
    """A recorded audio body by reference: content hash and length, not bytes."""

    sha256: Sha256Hex
    length: NonNegInt
    sample_rate_hz: PosInt
    channels: PosInt
    encoding: AudioEncoding = "pcm_s16le"
    uri: NonEmptyStr | None = None


class MetricsPayload(
    msgspec.Struct,
    tag="metrics",
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
):
    """One measurement (latency, queue depth, ...) with its unit and labels."""

    name: NonEmptyStr
    value: float
    unit: str = ""
    labels: dict[str, str] = {}


class DebugPayload(
    msgspec.Struct,
    tag="debug",
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
):
    """Free-form diagnostics for developers (never sensitive content)."""

    message: str
    fields: dict[str, str] = {}


class ErrorPayload(
    msgspec.Struct,
    tag="error",
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
):
    """A normalised error: stable code, human message, whether a retry may help."""

    code: NonEmptyStr
    message: str
    retryable: bool = False


Payload: TypeAlias = (
    TextPayload | AudioPayload | AudioRef | MetricsPayload | DebugPayload | ErrorPayload
)


class EventType(StrEnum):
    """The six event types a pipeline carries (F-022)."""

    AUDIO = "audio"
    TEXT = "text"
    CONTROL = "control"
    METRICS = "metrics"
    DEBUG = "debug"
    ERROR = "error"


_TYPE_OF_PAYLOAD: Final[dict[type[Any], EventType]] = {
    AudioPayload: EventType.AUDIO,
    AudioRef: EventType.AUDIO,
    TextPayload: EventType.TEXT,
    MetricsPayload: EventType.METRICS,
    DebugPayload: EventType.DEBUG,
    ErrorPayload: EventType.ERROR,
}


def event_type(lane: Lane | str, payload: Payload | None) -> EventType:
    """Control-lane records are ``control``; otherwise the payload decides.

    A data/telemetry record without a body is ``metrics`` on TelemetryLane and
    ``debug`` on DataLane (a bare marker event).
    """
    if lane == Lane.CONTROL:
        return EventType.CONTROL
    if payload is not None:
        return _TYPE_OF_PAYLOAD[type(payload)]
    return EventType.METRICS if lane == Lane.TELEMETRY else EventType.DEBUG


class TextRevisionTracker:
    """Enforces F-024: revisions grow per segment; a final is emitted once, then immutable."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._final: set[str] = set()

    def accept(self, payload: TextPayload) -> None:
        """Record ``payload`` or raise :class:`ContractError` saying which rule it breaks."""
        seg = payload.segment_id
        if seg in self._final:
            msg = (
                f"segment {seg!r} already has a final text; finals are immutable "
                f"(revision {payload.revision})"
            )
            raise ContractError(msg)
        last = self._last.get(seg)
        if last is not None and payload.revision <= last:
            msg = (
                f"segment {seg!r}: revision {payload.revision} is not greater than the previous "
                f"revision {last}; partial updates must be monotonic"
            )
            raise ContractError(msg)
        self._last[seg] = payload.revision
        if payload.is_final:
            self._final.add(seg)

    def is_final(self, segment_id: str) -> bool:
        return segment_id in self._final
