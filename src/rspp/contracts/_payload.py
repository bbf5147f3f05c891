"""How a payload body travels beside its (closed) envelope.

The event envelope never carries bodies (audio bytes, text). A body is one of the
tagged payload structs below and travels *beside* the envelope:

* **Transport frame** (MessagePack, binary): a 3-element array
  ``[kind, envelope, payload_or_nil]`` -- ``kind`` is the schema kind name, the
  envelope is the record map, the payload is a tagged map (``"type"`` field:
  ``text``, ``audio``, ``audio_ref``) or nil. Audio bytes stay raw binary.
  Built by :func:`encode_frame`, read by :func:`decode_frame`.
* **JSON transport frame / timeline line** (JSON Lines): one object per line,
  ``{"kind": K, "record": {...}, "payload": {...}}`` (:class:`TimelineEntry`);
  ``record`` validates against ``K``; audio bytes are base64 in JSON. Recordings
  usually store :class:`AudioRef` (sha256 + length) instead of the bytes.

Audio metadata (F-023): an ``audio_raw`` envelope carries ``media_time``
(``sample_index`` or ``pts_ms``); the payload carries encoding, sample rate and
channels. Text (F-024): partial and final text with monotonically increasing
``revision`` per ``segment_id``; a final is emitted once and never revised
(:class:`TextRevisionTracker` enforces both).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta

from rspp.contracts._jsonschema_eval import ValidationIssue
from rspp.contracts._types import NonEmptyStr, NonNegInt, PosInt, Sha256Hex
from rspp.contracts._validate import (
    KINDS,
    ContractStruct,
    ContractValidationError,
    _convert,
    from_builtins,
    kind_of,
    validate,
)
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

    @property
    def frame_count(self) -> int | None:
        """Samples per channel, or ``None`` for compressed encodings."""
        width = _SAMPLE_WIDTH.get(self.encoding)
        return None if width is None else len(self.data) // (width * self.channels)

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


Payload: TypeAlias = TextPayload | AudioPayload | AudioRef


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One line of a JSON Lines timeline: ``{"kind", "record", "payload"}``."""

    kind: Literal[
        "event_record",
        "control_signal",
        "decision_outcome",
        "turn_transition",
        "resolved_turn_plan",
        "artifact_bundle",
    ]
    record: dict[str, Any]
    payload: Payload | None = None


_PAYLOAD_DECODER: Final = msgspec.msgpack.Decoder(Payload)
_FRAME_DECODER: Final = msgspec.msgpack.Decoder(tuple[str, dict[str, Any], Any])
_ENCODER: Final = msgspec.msgpack.Encoder()


def make_entry(record: ContractStruct, payload: Payload | None = None) -> TimelineEntry:
    """A timeline entry for a typed record (the record is converted to builtins)."""
    kind = kind_of(record)
    return TimelineEntry(kind=kind, record=msgspec.to_builtins(record), payload=payload)  # type: ignore[arg-type]


def check_entry(entry: TimelineEntry) -> list[ValidationIssue]:
    """Every issue of a timeline entry: record against its kind, then the payload body."""
    issues = [
        ValidationIssue(f"record.{i.path}" if i.path != "<root>" else "record", i.message)
        for i in validate(entry.kind, entry.record)
    ]
    if isinstance(entry.payload, AudioPayload):
        issues.extend(entry.payload.check())
    return issues


def parse_entry(data: object) -> tuple[TimelineEntry | None, list[ValidationIssue]]:
    """Parse one decoded JSON line into an entry, or return its issues."""
    if not isinstance(data, dict):
        return None, [ValidationIssue("<root>", "a timeline line must be a JSON object")]
    kind = data.get("kind")
    if kind not in KINDS:
        return None, [ValidationIssue("kind", f"must be one of {', '.join(KINDS)}; got {kind!r}")]
    try:
        entry = msgspec.convert(data, TimelineEntry)
    except msgspec.ValidationError as exc:
        return None, [ValidationIssue("<root>", str(exc))]
    return entry, check_entry(entry)


def encode_frame(record: ContractStruct, payload: Payload | None = None) -> bytes:
    """MessagePack transport frame ``[kind, envelope, payload_or_nil]``."""
    return _ENCODER.encode((kind_of(record), record, payload))


def decode_frame(data: bytes, *, validate: bool = True) -> tuple[ContractStruct, Payload | None]:
    """Read a transport frame; raises :class:`ContractError` naming the bad field."""
    try:
        kind, envelope, raw_payload = _FRAME_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        msg = f"malformed frame (expected msgpack [kind, envelope, payload]): {exc}"
        raise ContractError(msg) from exc
    if validate:
        record = from_builtins(kind, envelope)
    else:
        record = _convert(kind, envelope)
    payload: Payload | None = None
    if raw_payload is not None:
        try:
            payload = _PAYLOAD_DECODER.decode(_ENCODER.encode(raw_payload))
        except msgspec.ValidationError as exc:
            raise ContractValidationError(
                "payload", [ValidationIssue("payload", str(exc))]
            ) from exc
        if isinstance(payload, AudioPayload) and (issues := payload.check()):
            raise ContractValidationError("payload", issues)
    return record, payload


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
