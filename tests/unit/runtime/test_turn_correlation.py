"""F-013 correlation pieces: the record a turn-less event becomes, the next turn id, the
telemetry of a session, and the comparator reading a session-scoped id as correlation."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from rspp.contracts import EventScope
from rspp.kernel import AudioFormat, Event, audio_frame, to_record
from rspp.kernel._clock import VirtualClock
from rspp.kernel._identity import IdFactory
from rspp.kernel._signals import SignalLog
from rspp.observability import compare_timelines

pytestmark = pytest.mark.unit

FMT = AudioFormat(16000, 1)


def _record(ev: Event, seq: int, edge: str) -> dict[str, Any]:
    ev.seq = seq
    rec = to_record(ev, session_id="s1", pipeline_version="pv@1", runtime_ms=20 * seq,
                    wall_ms=1_000 + 20 * seq, edge_id=edge, authority_epoch=1)
    return {"kind": "event_record", "record": msgspec.to_builtins(rec)}


def test_a_turnless_event_names_its_record_turn_at_session_scope() -> None:
    frame = audio_frame(bytes(640), FMT, 0, 0)
    assert frame.record_turn is None
    frame.record_turn = "s1:turn:1"
    rec = _record(frame, 3, "input.audio")["record"]
    assert (rec["turn_id"], rec["event_scope"]) == ("s1:turn:1", "session")
    # an event of a turn is the turn's: its own id, turn scoped (a record_turn is ignored)
    reply = Event("audio_chunk", bytes(640), turn_id="s1:turn:1", audio_format=FMT,
                  sample_index=0)
    reply.record_turn = "s1:turn:9"
    rec = _record(reply, 4, "output.audio")["record"]
    assert (rec["turn_id"], rec["event_scope"]) == ("s1:turn:1", "turn")
    silence = audio_frame(bytes(640), FMT, 320, 1)
    rec = _record(silence, 5, "input.audio")["record"]
    assert rec.get("turn_id") is None and rec["event_scope"] == "session"
    clone = frame.clone()  # fan-out copies keep the correlation
    assert clone.record_turn == "s1:turn:1" and clone.turn_id is None


def test_next_turn_id_is_the_id_the_next_proposal_takes() -> None:
    for epoch in (None, 3):
        ids = IdFactory("s1", epoch=epoch)
        for _ in range(3):
            coming = ids.next_turn_id()
            assert ids.next_turn_id() == coming  # taking nothing
            assert ids.turn_id() == coming
    assert IdFactory("s1", epoch=3).next_turn_id() == "s1:turn:1@3"


def test_session_telemetry_names_the_record_turn_without_taking_its_scope() -> None:
    clock, n = VirtualClock(), iter(range(100))
    log = SignalLog("s1", "pv@1", clock, lambda: next(n))
    assert log.telemetry(kind="audit", reason="a").turn_id is None
    log.record_turn = "s1:turn:2"
    rec = log.telemetry(kind="audit", reason="vad:speech_end:sample=1")
    assert (rec.turn_id, rec.event_scope) == ("s1:turn:2", EventScope.SESSION)
    own = log.telemetry(kind="error", turn_id="s1:turn:1")
    assert (own.turn_id, own.event_scope) == ("s1:turn:1", EventScope.TURN)


def test_a_recording_without_the_ids_compares_equal_to_one_with_them() -> None:
    def session(named: bool) -> list[dict[str, Any]]:
        lines = []
        for k in range(6):
            frame = audio_frame(bytes(640), FMT, 320 * k, k)
            if named and k >= 2:
                frame.record_turn = "s1:turn:1"
            lines.append(_record(frame, k, "input.audio"))
        reply = Event("text", "hi", turn_id="s1:turn:1")
        reply.node_id = "llm"
        lines.append(_record(reply, 6, "output.text"))
        return lines

    assert compare_timelines(session(False), session(True)).findings == ()
    assert compare_timelines(session(True), session(False)).findings == ()
    # a turn-scoped record of another turn still diverges: only correlation ids are loose
    moved = session(True)
    moved[-1]["record"]["turn_id"] = "s1:turn:2"
    assert compare_timelines(session(True), moved).findings != ()
