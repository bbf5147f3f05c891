"""How a payload travels beside its envelope: transport frames and timeline lines.

* **Binary transport frame** (MessagePack): a 3-element array
  ``[kind, envelope, payload_or_nil]`` -- ``kind`` is the schema kind name, the
  envelope is the record map, the payload is a tagged map (``"type"`` field) or
  nil. Audio bytes stay raw binary. :func:`encode_frame` / :func:`decode_frame`.
* **JSON transport frame / timeline line** (JSON Lines): one object per line,
  ``{"kind": K, "record": {...}, "payload": {...}}`` (:class:`TimelineEntry`);
  ``record`` validates against ``K``; audio bytes are base64 in JSON. Recordings
  usually store :class:`~rspp.contracts.AudioRef` (sha256 + length) instead of bytes.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from rspp.contracts._payload import AudioPayload, Payload
from rspp.contracts._schema_check import ValidationIssue
from rspp.contracts._validate import (
    KINDS,
    ContractKind,
    ContractStruct,
    ContractValidationError,
    _convert,
    _from_msgspec,
    check_versions,
    from_builtins,
    kind_of,
    to_builtins,
    validate,
)
from rspp.errors import ContractError


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One line of a JSON Lines timeline: ``{"kind", "record", "payload"}``."""

    kind: ContractKind
    record: dict[str, Any]
    payload: Payload | None = None


_PAYLOAD_DECODER: Final = msgspec.msgpack.Decoder(Payload)
_FRAME_DECODER: Final = msgspec.msgpack.Decoder(tuple[str, dict[str, Any], Any])
_ENCODER: Final = msgspec.msgpack.Encoder()


#: Timeline lines of this kind carry one accepted turn's OR-02 evidence. It is not a
#: reference-schema kind: the observability package defines and checks its record.
EVIDENCE_KIND: Final = "or02_evidence"

#: Reason prefix of the TelemetryLane audit record a VAD writes when it ends an utterance,
#: followed by the input sample index just after the last voiced frame: the "end of user
#: speech" anchor of turn latencies (table of ``rspp run`` and ``rspp slo report``).
SPEECH_END_AUDIT: Final = "vad:speech_end:sample="

def make_entry(record: ContractStruct, payload: Payload | None = None) -> TimelineEntry:
    """A timeline entry for a typed record (the record is converted to builtins)."""
    kind = kind_of(record)
    data = to_builtins(record, check=False)
    return TimelineEntry(kind=kind, record=data, payload=payload)  # type: ignore[arg-type]


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
        return None, [_from_msgspec(exc)]
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
        check_versions(record)
    payload: Payload | None = None
    if raw_payload is not None:
        try:
            payload = _PAYLOAD_DECODER.decode(_ENCODER.encode(raw_payload))
        except msgspec.ValidationError as exc:
            issue = _from_msgspec(exc)
            path = "payload" if issue.path == "<root>" else f"payload.{issue.path}"
            raise ContractValidationError(
                "payload", [ValidationIssue(path, issue.message)]
            ) from exc
        if isinstance(payload, AudioPayload) and (issues := payload.check()):
            raise ContractValidationError("payload", issues)
    return record, payload
