"""Replay inputs: event codec round trips, cursor persistence, recording errors (OR-03)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from rspp.contracts import ReplayMode
from rspp.kernel import AudioFormat, Event, EventKind
from rspp.replay import ReplayCursor, ReplayError, ReplayInputError, ReplayOptions, load_recording
from rspp.replay._codec import decode_event, encode_event

pytestmark = pytest.mark.unit


def _roundtrip(ev: Event, *, json: bool) -> Event:
    _, payload = encode_event(ev)
    body = msgspec.to_builtins(payload, builtin_types=(bytes,))
    if json:  # through JSON Lines: bytes become base64 text
        body = msgspec.json.decode(msgspec.json.encode(body))
    record = {"media_time": {"sample_index": ev.sample_index}} if ev.sample_index is not None \
        else {}
    return decode_event(record, body, "t.jsonl:1")


@pytest.mark.parametrize("json", [True, False])
def test_codec_round_trips_audio_text_attrs_and_metadata(json: bool) -> None:
    audio = Event(EventKind.AUDIO_CHUNK, b"\x01\x02" * 160, audio_format=AudioFormat(8000, 1),
                  sample_index=320)
    back = _roundtrip(audio, json=json)
    assert (back.kind, back.payload, back.sample_index) == (EventKind.AUDIO_CHUNK,
                                                            audio.payload, 320)
    assert back.audio_format is not None and back.audio_format.sample_rate == 8000
    end = _roundtrip(Event(EventKind.AUDIO_END, b"", audio_format=AudioFormat()), json=json)
    assert end.kind == EventKind.AUDIO_END
    text = Event(EventKind.TEXT, "partial", final=False, revision=2)
    back = _roundtrip(text, json=json)
    assert (back.kind, back.payload, back.final, back.revision, back.attrs) == (
        "text", "partial", False, 2, None)
    eos = _roundtrip(Event(EventKind.TEXT, "", attrs={"eos": True}), json=json)
    assert eos.attrs == {"eos": True} and eos.payload == ""
    custom = _roundtrip(Event("end_of_utterance", "x", attrs={"n": 1}), json=json)
    assert (custom.kind, custom.payload, custom.attrs) == ("end_of_utterance", "x", {"n": 1})
    tagged = Event(EventKind.AUDIO_CHUNK, b"\x00\x00", attrs={"speech": True})
    back = _roundtrip(tagged, json=json)
    assert (back.kind, back.payload, back.attrs) == (EventKind.AUDIO_CHUNK, b"\x00\x00",
                                                     {"speech": True})
    meta = _roundtrip(Event("metric", {"a": [1, 2]}), json=json)
    assert (meta.kind, meta.payload) == ("metric", {"a": [1, 2]})


def test_codec_names_bad_audio_data() -> None:
    with pytest.raises(ValueError, match=r"t.jsonl:7: audio data is not valid base64"):
        decode_event({}, {"sample_rate_hz": 16000, "channels": 1, "data": "%%"}, "t.jsonl:7")


def test_cursor_json_round_trip_and_errors(tmp_path: Path) -> None:
    cursor = ReplayCursor(recording_ref="a.jsonl", recording_digest="d" * 32,
                          mode=ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS,
                          decision_mode=ReplayMode.REPLAY_DECISIONS, position=3, total=9,
                          runtime_sequence=12, runtime_ms=60, lines=20, paused=True)
    path = tmp_path / "c.json"
    cursor.save(path)
    assert ReplayCursor.load(path) == cursor and not cursor.done
    with pytest.raises(ReplayError, match="invalid replay cursor"):
        ReplayCursor.from_json(b'{"position": "x"}')
    with pytest.raises(ReplayError, match="cannot read replay cursor"):
        ReplayCursor.load(tmp_path / "missing.json")


def test_options_reject_swapped_modes() -> None:
    with pytest.raises(ReplayError, match="mode="):
        ReplayOptions(mode=ReplayMode.REPLAY_DECISIONS)
    with pytest.raises(ReplayError, match="decision_mode="):
        ReplayOptions(decision_mode=ReplayMode.RE_SIMULATE_NODES)


_REC = {"schema_version": "v1.0", "event_scope": "session", "session_id": "s",
        "pipeline_version": "1.0.0", "event_id": "s:0", "lane": "DataLane",
        "runtime_sequence": 0, "runtime_timestamp_ms": 0,
        "wall_clock_timestamp_ms": 1_700_000_000_000, "payload_class": "audio_raw",
        "edge_id": "input.audio"}


def _write(path: Path, *lines: dict[str, object]) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(ln) + b"\n" for ln in lines))
    return path


def test_recording_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ReplayInputError, match="no such timeline file"):
        load_recording(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "event_record", "record": {}}\nnot json\n')
    with pytest.raises(ReplayInputError, match=r"bad.jsonl:2: invalid JSON"):
        load_recording(bad)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ReplayInputError, match="empty"):
        load_recording(tmp_path / "empty.jsonl")
    no_ingress = _write(tmp_path / "n.jsonl",
                        {"kind": "event_record", "record": {**_REC, "edge_id": "output.audio"}})
    with pytest.raises(ReplayInputError, match="no ingress events"):
        load_recording(no_ingress)
    stripped = _write(tmp_path / "l0.jsonl", {"kind": "event_record", "record": _REC})
    with pytest.raises(ReplayInputError, match=r"l0.jsonl:1: ingress event 's:0' has no payload"):
        load_recording(stripped)
    ok = _write(tmp_path / "ok.jsonl", {"kind": "event_record", "record": _REC,
                                        "payload": {"type": "audio", "sample_rate_hz": 16000,
                                                    "channels": 1, "data": "AAA="}})
    rec = load_recording(ok)
    assert rec.session_id == "s" and len(rec.ingress) == 1
    assert rec.start_wall_ms == 1_700_000_000_000
    assert rec.playback_store(["stt"]).outputs == {}  # no turn, nothing to play back
    plan = {"kind": "resolved_turn_plan", "record": {"turn_id": "t1", "session_id": "s"}}
    with_turn = load_recording([plan, {"kind": "event_record", "record": _REC, "payload": {
        "type": "audio", "sample_rate_hz": 16000, "channels": 1, "data": b"\x00\x00"}}])
    with pytest.raises(ReplayInputError, match=r"no recorded outputs of the provider nodes"):
        with_turn.playback_store(["stt"])


_AUDIO = {"type": "audio", "sample_rate_hz": 16000, "channels": 1, "data": "AAA="}


@pytest.mark.parametrize(("field", "value"), [
    ("runtime_sequence", "soon"), ("runtime_timestamp_ms", -1), ("authority_epoch", True),
    ("transport_sequence", 2**70), ("turn_id", 5), ("session_id", None)])
def test_streamed_index_names_bad_envelopes_like_the_general_reader(
        tmp_path: Path, field: str, value: object) -> None:
    """The streamed index decodes event records with a typed fast path; a field of the
    wrong type falls back to the general reader, which names it as before."""
    path = _write(tmp_path / "t.jsonl", {"kind": "event_record", "record": {**_REC, field: value},
                                         "payload": _AUDIO})
    with pytest.raises(ReplayInputError) as whole:
        load_recording(path)
    with pytest.raises(ReplayInputError) as streamed:
        load_recording(path, stream=True)
    assert str(streamed.value) == str(whole.value)
    assert f"record.{field}" in str(whole.value) or field == "session_id"


def test_fast_event_line_keeps_what_the_comparator_reads() -> None:
    """A recorder-written event record decodes to the same comparator view either way."""
    from rspp.observability import compare_view
    from rspp.observability._timeline_io import decode_line
    from rspp.replay._fastline import event_line

    record = {**_REC, "turn_id": "t1", "node_id": "asr", "causal_parent_id": "asr#in3",
              "media_time": {"sample_index": 320}, "scope": None}
    for payload in (_AUDIO, {"type": "text", "text": "hi", "is_final": False}, None):
        line = {"kind": "event_record", "record": record}
        if payload is not None:
            line["payload"] = payload
        raw = msgspec.json.encode(line)
        for whole in (True, False):
            fast = event_line(7, raw, whole=whole)
            slow = decode_line("t.jsonl", 7, raw, msgpack=False,
                               payloads=True if whole else "text")
            assert fast is not None and not isinstance(slow, Exception)
            assert compare_view(fast) == compare_view(slow)
            assert fast.record["media_time"] == {"sample_index": 320}
            assert (fast.payload == slow.payload) if whole else \
                ((fast.payload or {}).get("text") == (slow.payload or {}).get("text"))
    # another writer's field order, another kind, bad JSON: the general reader decides
    assert event_line(1, b'{"record": {}, "kind": "event_record"}', whole=False) is None
    assert event_line(1, b'{"kind":"control_signal","record":{}}', whole=False) is None
    assert event_line(1, b'{"kind":"event_record","record":{"runtime_sequence":"x"}}',
                      whole=False) is None


def _event_of(line: object) -> tuple[object, ...] | str:
    """What decode_event rebuilds from a decoded line (or the error it names)."""
    from rspp.observability._timeline_io import TimelineLine

    assert isinstance(line, TimelineLine)
    try:
        ev = decode_event(line.record, line.payload or {}, "t.jsonl:7")
    except ValueError as exc:
        return str(exc)
    fmt = ev.audio_format
    return (ev.kind, ev.payload, ev.sample_index, ev.attrs,
            None if fmt is None else (fmt.sample_rate, fmt.channels, fmt.codec))


@pytest.mark.parametrize("payload", [
    {**_AUDIO, "data": "AAECAwQF"}, {**_AUDIO, "end_of_stream": True, "encoding": "pcm_s16le"},
    {**_AUDIO, "channels": 2, "sample_rate_hz": 8000}, {"type": "audio", "sample_rate_hz": 16000,
                                                        "data": ""},
    # not base64 as a2b_base64(strict_mode=True) wants it: the general way names it
    {**_AUDIO, "data": "AAA"}, {**_AUDIO, "data": "A=AA"}, {**_AUDIO, "data": "AA==AA=="},
    {**_AUDIO, "data": "AA\nA="}, {**_AUDIO, "data": "AA A="}, {**_AUDIO, "data": "AAA*"},
    # types decode_event converts (the typed path leaves them to the general one)
    {**_AUDIO, "channels": "1"}, {**_AUDIO, "end_of_stream": 0}, {**_AUDIO, "data": None},
    {**_AUDIO, "sample_rate_hz": 16000.0}, {"type": "audio", "data": "AAA="},
    {"type": "text", "text": "hi", "is_final": False},
])
def test_fed_audio_line_rebuilds_the_same_event(payload: dict[str, object]) -> None:
    """The feed decodes an audio frame's base64 in the typed decoder; the event it rebuilds
    (or the problem it names) is the general reader's."""
    from rspp.observability import compare_view
    from rspp.observability._timeline_io import decode_line
    from rspp.replay._fastline import fed_line

    record = {**_REC, "media_time": {"sample_index": 320}}
    raw = msgspec.json.encode({"kind": "event_record", "record": record, "payload": payload})
    raw = raw.replace(b"\\\\n", b"\\n")  # (a JSON escape inside the base64 text)
    fast = fed_line(7, raw)
    slow = decode_line("t.jsonl", 7, raw, msgpack=False, payloads=True)
    assert fast is not None and not isinstance(slow, Exception)
    assert compare_view(fast) == compare_view(slow)
    assert _event_of(fast) == _event_of(slow)


_SIGNAL = {"schema_version": "v1.0", "event_scope": "turn", "session_id": "s",
           "pipeline_version": "1.0.0", "event_id": "s:sig:3", "lane": "ControlLane",
           "transport_sequence": None, "runtime_sequence": 3, "runtime_timestamp_ms": 40,
           "wall_clock_timestamp_ms": 1_700_000_000_040, "payload_class": "metadata",
           "turn_id": "t1", "authority_epoch": 1, "signal": "commit", "emitted_by": "RK-03"}
_TRANSITION = {"from_state": "Active", "trigger": "commit", "to_state": "Terminal",
               "deterministic": True}


@pytest.mark.parametrize(("kind", "record", "field"), [
    ("event_record", {**_REC, "schema_version": "v9.0"}, "schema_version"),
    ("control_signal", {**_SIGNAL, "schema_version": "v9.0"}, "schema_version"),
    ("control_signal", {**_SIGNAL, "runtime_sequence": "soon"}, "runtime_sequence"),
    ("control_signal", {**_SIGNAL, "turn_id": 5}, "turn_id"),
    ("control_signal", {**_SIGNAL, "authority_epoch": None}, "authority_epoch"),
    ("turn_transition", {**_TRANSITION, "runtime_timestamp_ms": -1}, "runtime_timestamp_ms")])
def test_streamed_index_names_bad_lifecycle_lines_and_versions_like_the_general_reader(
        tmp_path: Path, kind: str, record: dict[str, object], field: str) -> None:
    """Control signals and turn transitions take the typed fast path too, and every fast
    path refuses a record of another schema major as the general reader does (the event
    record fast path used to accept ``v9.0``)."""
    path = _write(tmp_path / "t.jsonl", {"kind": kind, "record": record},
                  {"kind": "event_record", "record": _REC, "payload": _AUDIO})
    with pytest.raises(ReplayInputError) as whole:
        load_recording(path)
    with pytest.raises(ReplayInputError) as streamed:
        load_recording(path, stream=True)
    assert str(streamed.value) == str(whole.value)
    assert f"t.jsonl:1: record.{field}" in str(whole.value)


def test_fast_lifecycle_lines_keep_what_the_comparator_reads() -> None:
    """A recorder-written signal, transition or decision decodes to the comparator view the
    general reader gives; the index pass leaves the lines it reads whole to that reader."""
    from rspp.observability import compare_view
    from rspp.observability._timeline_io import decode_line
    from rspp.replay._fastline import compared_line

    decision = {"outcome_kind": "admit", "phase": "pre_turn", "scope": "turn",
                "session_id": "s", "event_id": "s:outcome:1", "runtime_timestamp_ms": 20,
                "wall_clock_timestamp_ms": 1_700_000_000_020, "emitted_by": "RK-25",
                "reason": "within_quota", "turn_id": "t1", "timestamp_ms": 20}
    flush = {**_SIGNAL, "signal": "drop_notice", "target_lane": "DataLane", "seq_range": [1, 4]}
    for kind, record in (("control_signal", _SIGNAL), ("turn_transition", _TRANSITION),
                         ("decision_outcome", decision), ("control_signal", flush)):
        raw = msgspec.json.encode({"kind": kind, "record": record})
        fast = compared_line(9, raw, checked=True)
        slow = decode_line("t.jsonl", 9, raw, msgpack=False, payloads="text")
        assert fast is not None and not isinstance(slow, Exception)
        assert compare_view(fast) == compare_view(slow) and fast.payload is None
        assert "schema_version" not in fast.record
        index = compared_line(9, raw, checked=False)
        assert (index is None) == (kind == "decision_outcome" or record is flush)
    assert compared_line(1, b'{"kind":"resolved_turn_plan","record":{}}', checked=True) is None
    assert compared_line(1, b'{"kind":"control_signal","record":{"turn_id":3}}',
                         checked=True) is None
