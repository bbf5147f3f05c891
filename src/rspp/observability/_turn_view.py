"""One row per turn for the timeline viewer: markers on a time axis, latencies, plan, fences.

:func:`turn_rows` turns timeline lines (a recorded file, or the bounded window a
live session keeps) into :class:`TurnRow` values, the data the browser page and
``rspp timeline view`` draw: the turn's markers (speech end, turn open, first
reply audio, commit or abort, close) in session time, the latencies of
:func:`~rspp.observability.turn_latencies` (the definitions of ``rspp run`` and
the quality gates, computed there, not here), the frozen plan's pipeline version
and hash, and the cancel/fence events of the turn (``barge_in``, ``cancel``,
``stop``, ``playback_cancelled``). ``diverged`` lists what a replay divergence
report says about the turn.

:class:`LiveTurnView` keeps that window for a live session: it takes the records
as the session appends them (only the kinds a row needs; ingress frames bounded)
and says which turn's row changed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from rspp.observability._timeline_io import TimelineLine
from rspp.observability._turn_latency import by_session, signal_of, timestamp_of, turn_latencies

__all__ = ["LiveTurnView", "TurnMark", "TurnRow", "turn_rows"]

#: the control signals that place a marker on a turn's row (marker name = signal name)
_MARKERS = ("turn_open_proposed", "turn_open", "playback_started", "commit", "abort", "close")
#: the cancel/fence events listed under a turn
_FENCE_SIGNALS = ("barge_in", "cancel", "stop", "playback_cancelled", "stale_epoch_reject",
                  "deauthorized_drain")


class TurnMark(msgspec.Struct, frozen=True, kw_only=True):
    """A cancel/fence event of a turn: signal, time (session ms) and reason."""

    name: str
    t_ms: int
    reason: str | None = None


class TurnRow(msgspec.Struct, frozen=True, kw_only=True):
    """One turn as the viewer draws it (times in session ms: ``runtime_timestamp_ms``)."""

    session_id: str
    turn_id: str
    #: ``open`` until the arbiter decides, then ``commit`` or ``abort``
    outcome: str = "open"
    reason: str | None = None
    closed: bool = False
    #: marker -> time: speech_end, turn_open_proposed, turn_open, first_audio, commit,
    #: abort, close (those that happened)
    marks: dict[str, int] = msgspec.field(default_factory=dict)
    #: latency -> ms: speech_end_to_first_audio, speech_end_to_open, open_to_first_audio,
    #: decision (turn-open decision); None when an anchor is missing
    latencies: dict[str, int | None] = msgspec.field(default_factory=dict)
    pipeline_version: str | None = None
    plan_hash: str | None = None
    fences: list[TurnMark] = msgspec.field(default_factory=list)
    transcript: str | None = None
    #: findings of a replay divergence report about this turn (``rspp replay --report``)
    diverged: list[str] = msgspec.field(default_factory=list)


def turn_rows(lines: Iterable[TimelineLine], *, turn_id: str | None = None,
              diverged: Mapping[str, Sequence[str]] | None = None) -> list[TurnRow]:
    """The rows of every accepted turn (or only ``turn_id``), in timeline order;
    ``diverged``: turn id -> divergence findings to show on its row."""
    seq = list(lines)
    latency = {(t.session_id, t.turn_id): t for t in turn_latencies(seq)}
    marked = diverged or {}
    # plans carry no session id: by turn id (turn ids embed the session's)
    plans = {str(ln.record.get("turn_id")): ln for ln in seq if ln.kind == "resolved_turn_plan"}
    rows: list[TurnRow] = []
    for session, ordered in by_session(seq).items():
        per_turn: dict[str, list[TimelineLine]] = {}
        for ln in ordered:
            tid = ln.record.get("turn_id")
            if isinstance(tid, str) and (turn_id is None or tid == turn_id):
                per_turn.setdefault(tid, []).append(ln)
        for tid, of_turn in per_turn.items():
            lat = latency.get((session, tid))
            if lat is None:
                continue  # no turn_open (a proposal that was never accepted)
            plan = plans.get(tid)
            rows.append(_row(session, tid, [*of_turn, plan] if plan else of_turn, lat,
                             list(marked.get(tid, ()))))
    return rows


def _row(session: str, tid: str, of_turn: list[TimelineLine], lat: Any,
         diverged: list[str]) -> TurnRow:
    marks: dict[str, int] = {}
    fences: list[TurnMark] = []
    outcome, reason, closed = "open", None, False
    version = plan_hash = transcript = None
    for ln in of_turn:
        sig = signal_of(ln)
        if sig in _MARKERS:
            marks.setdefault(str(sig), timestamp_of(ln))
        if sig == "turn_open":
            version = ln.record.get("pipeline_version") or version
        if sig in ("commit", "abort"):
            outcome = str(sig)
            reason = ln.record.get("reason") if sig == "abort" else None
        elif sig == "close":
            closed = True
        elif sig in _FENCE_SIGNALS:
            fences.append(TurnMark(name=str(sig), t_ms=timestamp_of(ln),
                                   reason=ln.record.get("reason")))
        elif ln.kind == "resolved_turn_plan":
            version = version or ln.record.get("pipeline_version")
            plan_hash = ln.record.get("plan_hash")
        elif (ln.kind == "event_record" and ln.record.get("node_id") == "stt"
              and ln.record.get("lane") == "DataLane" and ln.payload
              and ln.payload.get("is_final")):
            text = ln.payload.get("text")
            transcript = text if isinstance(text, str) else transcript
    marks.pop("playback_started", None)
    if lat.speech_end_ms is not None:
        marks["speech_end"] = lat.speech_end_ms
    if lat.first_audio_ms is not None:
        marks["first_audio"] = lat.first_audio_ms
    latencies = {"speech_end_to_first_audio": lat.speech_end_to_first_audio_ms,
                 "speech_end_to_open": lat.speech_end_to_open_ms,
                 "open_to_first_audio": lat.open_to_first_audio_ms,
                 "decision": lat.decision_ms}
    return TurnRow(session_id=session, turn_id=tid, outcome=outcome, reason=reason,
                   closed=closed, marks=marks, latencies=latencies, pipeline_version=version,
                   plan_hash=plan_hash, fences=fences, transcript=transcript,
                   diverged=diverged)


#: record fields a row needs (everything else of a live record is left out of the window)
_FIELDS = ("session_id", "turn_id", "event_scope", "runtime_sequence", "runtime_timestamp_ms",
           "lane", "payload_class", "transport_sequence", "media_time", "signal", "reason",
           "node_id", "pipeline_version", "plan_hash")


class LiveTurnView:
    """The bounded window of one live session's records that its turn rows need.

    ``add(kind, record)`` keeps control signals, plans, VAD audits and ingress audio
    frames (at most ``max_ingress`` of the latter: the speech-end anchor looks back one
    utterance, not the whole session) and returns the turn whose row changed, if any;
    ``row(turn_id)`` computes it.
    """

    def __init__(self, max_ingress: int = 3000, max_other: int = 4000) -> None:
        self._ingress: deque[TimelineLine] = deque(maxlen=max_ingress)
        self._other: deque[TimelineLine] = deque(maxlen=max_other)
        self._n = 0

    def add(self, kind: str, record: Any) -> str | None:
        lane = str(getattr(record, "lane", "") or "")
        if kind == "event_record":
            ingress = (lane == "DataLane" and getattr(record, "transport_sequence", None)
                       is not None)
            audit = lane == "TelemetryLane" and getattr(record, "reason", None)
            if not (ingress or audit):
                return None
        elif kind not in ("control_signal", "resolved_turn_plan"):
            return None
        rec: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                rec[name] = value if isinstance(value, str | int) else msgspec.to_builtins(value)
        self._n += 1
        line = TimelineLine(line=self._n, kind=kind, record=rec)
        if kind == "event_record" and lane == "DataLane":
            self._ingress.append(line)
            return None
        self._other.append(line)
        tid = rec.get("turn_id")
        if not isinstance(tid, str):
            return None
        sig = rec.get("signal")
        if kind == "resolved_turn_plan" or sig in _MARKERS or sig in _FENCE_SIGNALS:
            return tid
        return None

    def row(self, turn_id: str) -> TurnRow | None:
        merged = sorted([*self._ingress, *self._other], key=lambda ln: ln.line)
        rows = turn_rows(merged, turn_id=turn_id)
        return rows[0] if rows else None
