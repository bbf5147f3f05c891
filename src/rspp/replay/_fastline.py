"""Fast decoding of the event records a streamed replay reads (most lines of a recording).

A voice recording is mostly ``event_record`` lines (an ingress audio frame every 20 ms).
The replay reads each of them twice (the index pass and the feed/compare pass) and
uses a few record fields: the identity and times the index needs, and what the
comparator reads (:func:`~rspp.observability.compare_view`). :func:`event_line`
decodes such a line into a typed struct holding only those fields, which also checks
the envelope types (:func:`~rspp.observability.envelope_problem`) in the decoder, and
skips the rest. It returns None for anything else - another kind, a line not written
field by field as the recorder writes it, a field of the wrong type - and the caller
decodes that line the general way (:func:`~rspp.observability.decode_line`), so every
problem is still named as before.

:func:`compared_line` does the same for a turn's lifecycle lines (control signals, turn
transitions, decision outcomes: about half of a turn's lines), which the comparator
reads field by field too.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from rspp.contracts import schema_version_problem
from rspp.observability._timeline_io import TimelineLine

__all__ = ["compared_line", "event_line", "fed_line"]

#: how the recorder (msgspec, fields in declaration order) starts an event record line
_PREFIX = b'{"kind":"event_record","record":{'
#: the per-turn lines a replay only compares (never feeds), as the recorder starts them
_SIGNAL = b'{"kind":"control_signal","record":{'
_TRANSITION = b'{"kind":"turn_transition","record":{'
_DECISION = b'{"kind":"decision_outcome","record":{'
_LIFECYCLE = (_SIGNAL, _TRANSITION, _DECISION)
_U63 = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]


class _Fields(msgspec.Struct):
    """The record fields a replay reads (absent fields stay absent: UNSET is omitted)."""

    schema_version: Any = UNSET  # checked as the general reader checks it, then dropped
    event_scope: Any = UNSET  # the comparator's group of a correlated record (F-013)
    session_id: str | UnsetType | None = UNSET
    pipeline_version: Any = UNSET
    event_id: Any = UNSET
    lane: Any = UNSET
    transport_sequence: _U63 | UnsetType | None = UNSET
    runtime_sequence: _U63 | UnsetType = UNSET
    runtime_timestamp_ms: _U63 | UnsetType = UNSET
    wall_clock_timestamp_ms: _U63 | UnsetType = UNSET
    payload_class: Any = UNSET
    turn_id: str | UnsetType | None = UNSET
    node_id: Any = UNSET
    edge_id: Any = UNSET
    causal_parent_id: Any = UNSET
    authority_epoch: _U63 | UnsetType = UNSET
    scope: Any = UNSET
    reason: Any = UNSET
    signal: Any = UNSET
    outcome_kind: Any = UNSET
    trigger: Any = UNSET
    emitted_by: Any = UNSET
    graph_definition_ref: Any = UNSET
    media_time: Any = UNSET


class _TextPart(msgspec.Struct):
    text: Any = UNSET
    is_final: Any = UNSET


class _TextLine(msgspec.Struct):
    kind: str
    record: _Fields
    payload: _TextPart | None = None


class _WholeLine(msgspec.Struct):
    kind: str
    record: _Fields
    payload: dict[str, Any] | None = None


class _Audio(msgspec.Struct):
    """An audio payload as :func:`~rspp.replay._codec.decode_event` reads it, the base64
    ``data`` decoded to bytes by the decoder (strict types: anything else, the general way)."""

    sample_rate_hz: int
    data: bytes
    channels: int = 1
    encoding: str = "pcm_s16le"
    end_of_stream: bool = False


class _AudioLine(msgspec.Struct):
    kind: str
    record: _Fields
    payload: _Audio


_text = msgspec.json.Decoder(_TextLine)
_whole = msgspec.json.Decoder(_WholeLine)
_audio = msgspec.json.Decoder(_AudioLine)
#: how the recorder starts an audio payload (after the record)
_AUDIO = b'"payload":{"type":"audio",'


def event_line(number: int, raw: bytes, *, whole: bool) -> TimelineLine | None:
    """``raw`` (one JSON line) as a line with the replay's record fields, or None.

    ``whole``: the payload is decoded whole (a line the replay feeds); otherwise only
    its ``text`` and ``is_final`` (as ``payloads="text"`` reads it).
    """
    if not raw.startswith(_PREFIX):
        return None
    try:
        line = (_whole if whole else _text).decode(raw)
    except msgspec.MsgspecError:
        return None  # decoded the general way, which names the problem
    return _line(number, line)


def fed_line(number: int, raw: bytes) -> TimelineLine | None:
    """:func:`event_line` (payload whole) for a line the replay feeds; an audio frame's
    payload comes as a MessagePack file holds it, ``data`` raw bytes (the decoder did the
    base64; :func:`~rspp.replay._codec.decode_event` takes the bytes as they are)."""
    if raw.startswith(_PREFIX) and _AUDIO in raw:  # an audio frame (most lines fed)
        try:
            audio = _audio.decode(raw)
        except msgspec.MsgspecError:
            pass  # (not as the recorder writes it: decoded whole below)
        else:
            return _audio_line(number, audio)
    return event_line(number, raw, whole=True)


def _audio_line(number: int, line: _AudioLine) -> TimelineLine | None:
    fields = line.record
    if fields.schema_version is not UNSET and schema_version_problem(fields.schema_version):
        return None
    record: dict[str, Any] = msgspec.to_builtins(fields)
    record.pop("schema_version", None)
    a = line.payload
    return TimelineLine(line=number, kind=line.kind, record=record, payload={
        "sample_rate_hz": a.sample_rate_hz, "data": a.data, "channels": a.channels,
        "encoding": a.encoding, "end_of_stream": a.end_of_stream})


def compared_line(number: int, raw: bytes, *, checked: bool) -> TimelineLine | None:
    """:func:`event_line` (payload text only) for an event record, or a turn's lifecycle
    line (control signal, turn transition, decision outcome) decoded into the same record
    fields; None: decode it the general way.

    ``checked``: the file was read once already (the index pass of
    :func:`~rspp.replay.load_recording` named any problem) and the line is only compared:
    every field the comparator reads is in the typed record. Otherwise (the index pass
    itself) the lines whose other fields a replay reads stay general: decision outcomes
    (converted whole) and ``drop_notice`` signals (the flushes it replays)."""
    if raw.startswith(_PREFIX):
        return event_line(number, raw, whole=False)
    if not raw.startswith(_LIFECYCLE if checked else (_SIGNAL, _TRANSITION)):
        return None
    try:
        line = _text.decode(raw)
    except msgspec.MsgspecError:
        return None
    if not checked and line.record.signal == "drop_notice":
        return None
    return _line(number, line)


def _line(number: int, line: _TextLine | _WholeLine) -> TimelineLine | None:
    fields = line.record
    if fields.schema_version is not UNSET and schema_version_problem(fields.schema_version):
        return None  # decoded the general way, which refuses it by name
    record: dict[str, Any] = msgspec.to_builtins(fields)
    record.pop("schema_version", None)
    payload = line.payload
    if payload is None or isinstance(payload, dict):
        return TimelineLine(line=number, kind=line.kind, record=record, payload=payload)
    part: dict[str, Any] = {}
    if payload.text is not UNSET:
        part["text"] = payload.text
    if payload.is_final is not UNSET:
        part["is_final"] = payload.is_final
    return TimelineLine(line=number, kind=line.kind, record=record, payload=part)
