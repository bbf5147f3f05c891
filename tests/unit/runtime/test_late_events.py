"""Which late arrivals of a closed turn reach the late-event policy (F-140, T11).

``LateEvents`` sits between the egress fence and the turn arbiter: live, a fence's
refusal of an output of a closed turn is an arrival (once a turn); in a replay only the
recorded arrivals count, each decided at once or right after its turn's close. The
arbiter here is the real one, driven to a closed turn; ``recorded_arrivals`` reads the
arrivals back from records the driver's record stamp makes.
"""

from __future__ import annotations

import msgspec

from rspp.contracts import Emitter, MediaTime, OutcomeKind, SignalName
from rspp.kernel import Event
from rspp.kernel._clock import VirtualClock
from rspp.kernel._identity import Correlation, RecordStamp
from rspp.kernel._timebase import Timebase
from rspp.turns._arbiter import AuthorityVerdict, TurnArbiter
from rspp.turns._late_events import LateArrival, LateEvents, recorded_arrivals


def _arbiter() -> tuple[TurnArbiter, str]:
    """An arbiter whose first turn is Active."""
    stamp = RecordStamp(Correlation("t", "s", "pv"), Timebase(VirtualClock()))
    arb = TurnArbiter(stamp, authority_epoch=1)
    arb.propose(reason="vad_end_of_utterance")
    tid = arb.turn_id
    assert tid is not None
    arb.admission(OutcomeKind.ADMIT, "admitted")
    arb.snapshots(None, "snapshots_valid")
    arb.authority(AuthorityVerdict.VALID)
    arb.plan_materialised("h" * 64)
    return arb, tid


def _output(tid: str, seq: int) -> Event:
    ev = Event("audio_chunk", b"\0\0", turn_id=tid, sample_index=320)
    ev.node_id, ev.seq = "tts", seq
    return ev


def test_a_fed_arrival_waits_for_its_turns_close_and_counts_once() -> None:
    arb, tid = _arbiter()
    decided: list[LateArrival] = []
    live = LateEvents("s", decided.append, arb.is_closed)
    # a fenced output of a turn that is not closed yet (a lease loss before its T8)
    live.refused("audio", _output(tid, 7))
    assert decided == []
    arb.generation_complete()  # commit, close
    assert arb.is_closed(tid)
    live.refused("audio", _output(tid, 9))
    live.refused("audio", _output(tid, 11))  # once a turn
    assert decided == [LateArrival(tid, "output.audio", "tts", "s:9", 320)]

    arb2, tid2 = _arbiter()
    fed: list[LateArrival] = []
    replay = LateEvents("s", fed.append, arb2.is_closed)
    replay.replayed = True
    arrival = LateArrival(tid2, "output.audio", "tts", "s:40")
    replay.fed(arrival)  # recorded after the close; this replay has not closed it yet
    assert fed == []
    arb2.generation_complete()
    replay.refused("audio", _output(tid2, 41))  # the replay's own late output: not an input
    assert fed == []
    replay.closed(tid2)
    replay.closed(tid2)
    replay.fed(arrival)
    assert fed == [arrival]


def test_recorded_arrivals_read_back_what_the_driver_recorded() -> None:
    stamp = RecordStamp(Correlation("t", "s", "pv"), Timebase(VirtualClock()))

    def rec(reason: str, tid: str, **kw: object) -> dict[str, object]:
        sig = stamp.signal(SignalName.REJECT, Emitter.RK_25, authority_epoch=1, turn_id=tid,
                           reason=reason, session_scoped=True, **kw)  # type: ignore[arg-type]
        return msgspec.to_builtins(msgspec.structs.replace(
            sig, media_time=MediaTime(sample_index=640)))  # type: ignore[no-any-return]

    first = rec("late_event_dropped", "s:turn:2", node_id="tts", edge_id="output.audio",
                causal_parent_id="s:99")
    records = [
        rec("overlap_rejected", "s:turn:1"),  # another reject: no arrival
        rec("late_event_ignored", "s:turn:1"),  # no edge: not a recorded arrival
        first,
    ]
    ((ms, seq, arrival),) = recorded_arrivals(records)
    assert (ms, seq) == (first["runtime_timestamp_ms"], first["runtime_sequence"])
    assert arrival == LateArrival("s:turn:2", "output.audio", "tts", "s:99", 640)
