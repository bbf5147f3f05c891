"""Payloads travel beside the closed envelope (F-023 audio metadata, F-024 text revisions)."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest
from _contracts_support import fixture_files, load

from rspp.contracts import (
    AudioPayload,
    AudioRef,
    ContractStruct,
    ContractValidationError,
    ControlSignal,
    DebugPayload,
    ErrorPayload,
    EventRecord,
    EventType,
    MediaTime,
    MetricsPayload,
    Payload,
    TextPayload,
    TextRevisionTracker,
    TimelineEntry,
    check_entry,
    check_record,
    decode_frame,
    encode_frame,
    event_type,
    from_builtins,
    make_entry,
    parse_entry,
    sha256_hex,
)
from rspp.errors import ContractError

pytestmark = pytest.mark.unit


def _fixture(stem: str) -> dict[str, object]:
    path = next(p for p in fixture_files("valid") if p.stem == stem)
    loaded: dict[str, object] = load(path)
    return loaded


def _audio_event() -> EventRecord:
    record = from_builtins("event_record", _fixture("event_record__audio_event_sample_index"))
    assert isinstance(record, EventRecord)
    return record


def _tone(samples: int = 320) -> bytes:
    t = np.arange(samples) / 16000.0
    return (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2").tobytes()


def test_audio_event_needs_media_time_and_payload_carries_encoding() -> None:
    event = _audio_event()
    assert event.media_time == MediaTime(sample_index=16000)
    no_time = msgspec.structs.replace(event, media_time=None)
    assert [i.path for i in check_record(no_time)] == ["media_time"]
    payload = AudioPayload(sample_rate_hz=16000, channels=1, data=_tone())
    assert payload.encoding == "pcm_s16le"
    record, body = decode_frame(encode_frame(event, payload))
    assert record == event
    assert body == payload
    assert isinstance(body, AudioPayload) and body.data == payload.data


def test_end_of_stream_chunk_round_trips() -> None:
    last = AudioPayload(sample_rate_hz=48000, channels=2, data=b"", end_of_stream=True)
    _, body = decode_frame(encode_frame(_audio_event(), last))
    assert isinstance(body, AudioPayload) and body.end_of_stream and body.channels == 2


def test_partial_pcm_frame_is_rejected_with_path() -> None:
    odd = AudioPayload(sample_rate_hz=16000, channels=2, data=b"\x00\x01\x02")
    assert [i.path for i in odd.check()] == ["payload.data"]
    with pytest.raises(ContractValidationError, match=r"payload\.data"):
        decode_frame(encode_frame(_audio_event(), odd))


@pytest.mark.parametrize(
    "frame",
    [b"", b"\x93\xa4junk", msgspec.msgpack.encode(["event_record", {"lane": "DataLane"}, None])],
)
def test_malformed_frames_raise_contract_errors(frame: bytes) -> None:
    with pytest.raises(ContractError):
        decode_frame(frame)


def test_bad_payload_body_is_rejected() -> None:
    envelope = msgspec.to_builtins(_audio_event())
    bad = msgspec.msgpack.encode(
        [
            "event_record",
            envelope,
            {"type": "audio", "sample_rate_hz": 5, "channels": 1, "data": b""},
        ]
    )
    with pytest.raises(ContractValidationError) as info:
        decode_frame(bad)
    assert info.value.issues[0].path == "payload.sample_rate_hz"
    line = msgspec.json.encode(
        make_entry(_audio_event(), AudioPayload(sample_rate_hz=16000, channels=1, data=b"\x01\x02"))
    )
    broken = json.loads(line)
    broken["payload"]["sample_rate_hz"] = 5
    assert [i.path for i in parse_entry(broken)[1]] == ["payload.sample_rate_hz"]


def test_control_signal_frame_without_payload() -> None:
    signal = from_builtins("control_signal", _fixture("control_signal__barge_in"))
    assert isinstance(signal, ControlSignal)
    assert decode_frame(encode_frame(signal)) == (signal, None)


def test_timeline_entry_json_line_validates_record_by_kind() -> None:
    text = TextPayload(text="hello wor", is_final=False, revision=1, segment_id="seg-1")
    entry = make_entry(_audio_event(), text)
    line = msgspec.json.encode(entry)
    parsed, issues = parse_entry(json.loads(line))
    assert issues == [] and parsed == entry
    assert json.loads(line)["payload"]["type"] == "text"
    broken = json.loads(line)
    del broken["record"]["media_time"]
    parsed, issues = parse_entry(broken)
    assert parsed is not None and [i.path for i in issues] == ["record.media_time"]
    assert parse_entry({"kind": "nope", "record": {}})[1][0].path == "kind"
    assert check_entry(TimelineEntry(kind="turn_transition", record={"from_state": "Idle"}))


def test_audio_ref_for_recordings() -> None:
    data = _tone()
    ref = AudioRef(sha256=sha256_hex(data), length=len(data), sample_rate_hz=16000, channels=1)
    entry = make_entry(_audio_event(), ref)
    again = msgspec.json.decode(msgspec.json.encode(entry), type=TimelineEntry)
    assert again.payload == ref
    with pytest.raises(msgspec.ValidationError, match="sha256"):
        msgspec.convert(
            {"type": "audio_ref", "sha256": "x", "length": 1, "sample_rate_hz": 1, "channels": 1},
            AudioRef,
        )


def test_text_partials_are_monotonic_and_final_is_immutable() -> None:
    tracker = TextRevisionTracker()
    tracker.accept(TextPayload(text="hel", is_final=False, revision=0))
    tracker.accept(TextPayload(text="hello", is_final=False, revision=1))
    with pytest.raises(ContractError, match="monotonic"):
        tracker.accept(TextPayload(text="he", is_final=False, revision=1))
    tracker.accept(TextPayload(text="hello there", is_final=True, revision=2))
    assert tracker.is_final("0")
    with pytest.raises(ContractError, match="immutable"):
        tracker.accept(TextPayload(text="hello there!", is_final=True, revision=3))
    tracker.accept(TextPayload(text="next", is_final=True, revision=0, segment_id="1"))


@pytest.mark.parametrize(
    ("lane", "payload", "expected"),
    [
        ("ControlLane", None, EventType.CONTROL),
        (
            "DataLane",
            AudioPayload(sample_rate_hz=16000, channels=1, data=b"\x00\x00"),
            EventType.AUDIO,
        ),
        ("DataLane", TextPayload(text="hi", is_final=True, revision=0), EventType.TEXT),
        (
            "TelemetryLane",
            MetricsPayload(name="queue_depth", value=3, unit="items"),
            EventType.METRICS,
        ),
        ("DataLane", DebugPayload(message="node started"), EventType.DEBUG),
        (
            "DataLane",
            ErrorPayload(code="stt_timeout", message="no result", retryable=True),
            EventType.ERROR,
        ),
        ("TelemetryLane", None, EventType.METRICS),
    ],
)
def test_every_event_type_travels_in_a_frame_and_is_classified(
    lane: str, payload: Payload | None, expected: EventType
) -> None:
    if lane == "ControlLane":
        record: ContractStruct = from_builtins(
            "control_signal", _fixture("control_signal__barge_in")
        )
    else:
        base = _fixture("event_record__text_event") | {"lane": lane}
        record = from_builtins("event_record", base)
    decoded, body = decode_frame(encode_frame(record, payload))
    assert (decoded, body) == (record, payload)
    assert event_type(lane, body) is expected
    line = msgspec.json.encode(make_entry(record, payload))
    entry, issues = parse_entry(json.loads(line))
    assert issues == [] and entry is not None and entry.payload == payload
