"""The seven MVP quality gates of DESIGN section 1, computed from timelines.

Pairing rules (all times are ``runtime_timestamp_ms``; order within a session
is ``runtime_sequence``, ties by file position):

1. turn-open decision: for every ``turn_open`` (session S, turn T) the anchor
   is the ``turn_open_proposed`` of S carrying ``turn_id`` T, else the latest
   not yet paired proposal of S before it. Sample = open - proposal.
2. first output (happy path = turns that ``commit``): first DataLane
   ``event_record`` of (S, T) after ``turn_open`` that is not the user's own input
   (``edge_id`` ``input.*``, e.g. typed text). Sample = output - open.
3. cancel fence: for every ``cancel`` of (S, T): the first later
   ``playback_cancelled`` of (S, T), else the ``abort`` of (S, T) with reason
   ``cancelled``. Sample = fence - cancel. Without such signals the turn's OR-02
   ``cancel`` markers give the sample (``cancel_fence_applied_ms -
   cancel_accepted_ms``), also for turns whose cancel was not signalled.
4. authority: ``output_accepted``/``playback_started`` signals carrying an
   ``authority_epoch`` lower than the highest epoch already seen in S are
   accepted stale outputs. Value = their count, must be 0.
5. replay completeness: accepted turns (``turn_open``) with a complete
   ``or02_evidence`` line (:func:`missing_evidence_fields`). Value = percent.
6. lifecycle: accepted turns with exactly one ``commit``/``abort``, exactly one
   ``close``, close after the terminal. Value = percent.
7. end to end: first ``playback_started`` of (S, T) minus the end of the user's
   speech: the arrival of the ingress audio frame holding the VAD's last voiced sample
   (its ``SPEECH_END_AUDIT`` record), else the last ingress audio frame of S
   (DataLane, ``audio_raw``, ``transport_sequence`` set) before the turn's proposal
   (or its ``turn_open`` when no proposal). A typed turn (its ``input.text`` DataLane
   record) is anchored at that record instead. p50 <= 1500 and p95 <= 2000. The anchors
   are those of :func:`rspp.observability.turn_latencies` (the ``rspp run`` table).

A missing or invalid anchor (absent, or a negative delta) is a diagnostic and
fails its gate. A gate with no samples reports status ``no_samples`` and
``pass`` null: it never passes silently. Percentiles use the nearest-rank method.

Per turn: every accepted turn yields one :class:`TurnGateSample` (its values for
the seven gates and the gates whose anchors were missing or invalid);
:func:`gate_report` turns any set of them into the seven verdicts with the
thresholds of :data:`GATES`. ``rspp slo report`` (a timeline) and the control
plane's gated rollouts (samples of live sessions over a sliding window) both
evaluate through it: one definition of the gates and their thresholds.

Evaluation streams: :class:`GateAccumulator` takes one line at a time and keeps
only the signals, evidence verdicts and (sequence, position, value) integers the
gates need, so memory does not grow with payloads and time is linear in the input.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
from msgspec import Meta

from rspp.observability._evidence import EVIDENCE_KIND, missing_evidence_fields
from rspp.observability._recorder import TIMELINE_KINDS
from rspp.observability._timeline_io import TimelineLine
from rspp.observability._turn_latency import frame_time_of_sample, speech_end_sample

__all__ = ["GATES", "THRESHOLD_FIELDS", "GateAccumulator", "GateDef", "GateReport", "GateResult",
           "TurnGateSample", "evaluate_gates", "gate_report", "gates_with", "percentile"]

GateStatus = Literal["pass", "fail", "no_samples"]
_Key = tuple[str, str]


class GateResult(msgspec.Struct, kw_only=True):
    gate: int
    name: str
    threshold: str
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    value: float | None
    passed: bool | None = msgspec.field(name="pass")
    status: GateStatus
    diagnostics: list[str] = msgspec.field(default_factory=list)


class GateReport(msgspec.Struct, kw_only=True):
    gates: list[GateResult]
    #: turns with a ``turn_open`` (the evidence every gate is computed from)
    accepted_turns: int = 0

    @property
    def failed(self) -> bool:
        return any(g.status == "fail" for g in self.gates)


class GateDef(NamedTuple):
    """One gate: its number, name, threshold text and how its verdict is computed."""

    gate: int
    name: str
    threshold: str
    kind: Literal["latency", "authority", "ratio"]
    #: latency gates: (percentile, bound ms) pairs that must all hold
    checks: tuple[tuple[float, float], ...] = ()


#: The seven gates and their thresholds: the one definition every evaluator uses.
GATES: tuple[GateDef, ...] = (
    GateDef(1, "turn-open decision", "p95 <= 120 ms", "latency", ((95, 120),)),
    GateDef(2, "first output", "p95 <= 1500 ms", "latency", ((95, 1500),)),
    GateDef(3, "cancel fence", "p95 <= 150 ms", "latency", ((95, 150),)),
    GateDef(4, "authority", "stale-epoch outputs == 0", "authority"),
    GateDef(5, "replay completeness", "100% of accepted turns complete", "ratio"),
    GateDef(6, "lifecycle", "100% one terminal then close", "ratio"),
    GateDef(7, "end to end", "p50 <= 1500 ms, p95 <= 2000 ms", "latency",
            ((50, 1500), (95, 2000))),
)

#: ``SloSpec`` field -> (gate, percentile) it bounds
THRESHOLD_FIELDS: dict[str, tuple[int, float]] = {
    "turn_open_p95_ms": (1, 95), "first_output_p95_ms": (2, 95),
    "cancel_fence_p95_ms": (3, 95), "cancel_fence_p99_ms": (3, 99),
    "end_to_end_p50_ms": (7, 50), "end_to_end_p95_ms": (7, 95),
}


def gates_with(thresholds: Mapping[str, float | None]) -> tuple[GateDef, ...]:
    """:data:`GATES` with the latency bounds ``thresholds`` sets (``SloSpec`` field names:
    ``end_to_end_p95_ms`` ...); a percentile a gate does not check yet is added to it."""
    bounds: dict[int, dict[float, float]] = {g.gate: dict(g.checks) for g in GATES}
    for name, value in thresholds.items():
        if value is None:
            continue
        if name not in THRESHOLD_FIELDS:
            raise ValueError(f"slo.{name}: unknown threshold; use one of "
                             f"{sorted(THRESHOLD_FIELDS)}")
        gate, q = THRESHOLD_FIELDS[name]
        bounds[gate][q] = float(value)
    out = []
    for g in GATES:
        if g.kind != "latency":
            out.append(g)
            continue
        checks = tuple(sorted(bounds[g.gate].items()))
        text = ", ".join(f"p{q:g} <= {b:g} ms" for q, b in checks)
        out.append(g._replace(checks=checks, threshold=text))
    return tuple(out)


_Ms = Annotated[float, Meta(ge=0, le=1e9)]
_Ident = Annotated[str, Meta(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]+$")]
_Count = Annotated[int, Meta(ge=0, le=1_000_000)]
_GateNo = Annotated[int, Meta(ge=1, le=7)]


class TurnGateSample(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One turn's values for the seven gates (what a runtime reports per live turn).

    Latencies are milliseconds; ``invalid`` names the gates whose anchors were
    missing or invalid for this turn (a diagnostic: such a gate fails wherever the
    sample is evaluated). Gates 5 and 6 count accepted turns (``turn_open``) only.
    """

    session_id: _Ident
    turn_id: _Ident
    accepted: bool = True
    turn_open_ms: _Ms | None = None
    first_output_ms: _Ms | None = None
    cancel_fence_ms: Annotated[tuple[_Ms, ...], Meta(max_length=64)] = ()
    outputs_checked: _Count = 0
    stale_outputs: _Count = 0
    evidence_complete: bool = False
    lifecycle_ok: bool = False
    end_to_end_ms: _Ms | None = None
    invalid: Annotated[tuple[_GateNo, ...], Meta(max_length=7)] = ()
    #: how an accepted turn ended: ``commit`` or its abort reason (``None``: not yet, or a
    #: runtime older than this field); the availability SLO counts fault aborts (NF-005)
    terminal: Annotated[str, Meta(max_length=64)] | None = None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def gate_report(samples: Iterable[TurnGateSample],
                diagnostics: Mapping[int, list[str]] | None = None,
                gates: Sequence[GateDef] = GATES) -> GateReport:
    """The seven verdicts (thresholds of :data:`GATES`) over any set of per-turn samples.

    ``diagnostics`` (gate -> messages) replaces the generic messages derived from the
    samples (``rspp slo report`` passes the precise ones it found in the timeline).
    """
    values: dict[int, list[float]] = {1: [], 2: [], 3: [], 7: []}
    invalid: dict[int, list[str]] = {gate: [] for gate in range(1, 8)}
    accepted = complete = lifecycle = checked = stale = 0
    for s in samples:
        for gate, value in ((1, s.turn_open_ms), (2, s.first_output_ms), (7, s.end_to_end_ms)):
            if value is not None:
                values[gate].append(value)
        values[3].extend(s.cancel_fence_ms)
        for gate in s.invalid:
            invalid[gate].append(f"{s.session_id}/{s.turn_id}: missing or invalid anchor")
        checked += s.outputs_checked
        stale += s.stale_outputs
        if s.accepted:
            accepted += 1
            complete += s.evidence_complete
            lifecycle += s.lifecycle_ok
    found = dict(diagnostics) if diagnostics is not None else {}
    if diagnostics is None:
        if stale:
            found[4] = [f"{stale} output(s) accepted with a stale authority epoch"]
        if complete < accepted:
            found[5] = [f"{accepted - complete} of {accepted} accepted turn(s) lack OR-02 fields"]
        if lifecycle < accepted:
            found[6] = [f"{accepted - lifecycle} of {accepted} accepted turn(s) without exactly "
                        "one terminal then close"]
    results: list[GateResult] = []
    for g in gates:
        notes = found.get(g.gate, invalid[g.gate] if diagnostics is None else [])
        if g.kind == "latency":
            results.append(_latency_gate(g, values[g.gate], bool(invalid[g.gate]),
                                         list(notes)))
        elif g.kind == "authority":
            results.append(_authority_gate(g, checked, stale, list(notes)))
        else:
            good = complete if g.gate == 5 else lifecycle
            results.append(_ratio_gate(g, good, accepted, list(notes)))
    return GateReport(gates=results, accepted_turns=accepted)


_OUTPUT_SIGNALS = ("output_accepted", "playback_started")
_Pos = tuple[int, int]  # (runtime_sequence, position in the input): the order within a session
#: a live session keeps at most this many ingress frames (10 minutes of 20 ms frames)
_MAX_LIVE_FRAMES = 30_000


class _Signal(NamedTuple):
    """The part of a ``control_signal`` line the gates use."""

    seq: int
    pos: int
    ts: int
    signal: str
    turn: str | None
    epoch: int | None
    reason: object
    event_id: object


@dataclass(slots=True)
class _Session:
    """Compact per-session evidence: signals, plus (seq, pos, value) triples in arrays."""

    signals: list[_Signal] = field(default_factory=list)
    ingress: array[int] = field(default_factory=lambda: array("q"))  # seq, pos, ts
    ingress_samples: array[int] = field(default_factory=lambda: array("q"))  # seq, pos, sample
    #: the VAD's speech-end audits: seq, pos, input sample after the last voiced one
    speech_ends: array[int] = field(default_factory=lambda: array("q"))
    epochs: array[int] = field(default_factory=lambda: array("q"))  # seq, pos, epoch
    outputs: dict[str, array[int]] = field(default_factory=dict)  # turn -> seq, pos, ts
    #: typed input of a turn (its ``input.text`` DataLane record): turn -> arrival ms
    text_inputs: dict[str, int] = field(default_factory=dict)
    #: live evaluation: the highest epoch of evidence already forgotten, and turns reported
    epoch_floor: int = -1
    reported: set[str] = field(default_factory=set)

    def forget(self, turns: set[str], cut: _Pos) -> None:
        """Drop the evidence of reported ``turns`` and everything at or before ``cut``
        that no later turn reads (live sessions: memory stays bounded by one turn)."""
        self.reported |= turns
        kept: list[_Signal] = []
        for s in self.signals:
            if s.turn in self.reported or (s.turn is None and (s.seq, s.pos) <= cut):
                if s.epoch is not None:
                    self.epoch_floor = max(self.epoch_floor, s.epoch)
            else:
                kept.append(s)
        self.signals = kept
        for seq, pos, epoch in _triples(self.epochs):
            if (seq, pos) <= cut:
                self.epoch_floor = max(self.epoch_floor, epoch)
        self.epochs = _after(self.epochs, cut)
        self.speech_ends = _after(self.speech_ends, cut)
        self.ingress = _after(self.ingress, cut, _MAX_LIVE_FRAMES)
        self.ingress_samples = _after(self.ingress_samples, cut, _MAX_LIVE_FRAMES)
        for turn in turns:
            self.outputs.pop(turn, None)
            self.text_inputs.pop(turn, None)


def _after(values: array[int], cut: _Pos, keep: int | None = None) -> array[int]:
    kept = array("q")
    for seq, pos, value in _triples(values):
        if (seq, pos) > cut:
            kept.extend((seq, pos, value))
    if keep is not None and len(kept) > 3 * keep:
        kept = kept[-3 * keep:]
    return kept


@dataclass(slots=True)
class _Evidence:
    problems: list[str]
    cancel_delta: int | None


def _int(record: Mapping[str, Any], name: str) -> int:
    value = record.get(name)
    return value if type(value) is int else 0


def _triples(values: array[int]) -> list[tuple[int, int, int]]:
    return sorted(zip(values[0::3], values[1::3], values[2::3], strict=True))


class GateAccumulator:
    """Feed timeline lines one at a time (:meth:`add`), then :meth:`report` the gates.

    Memory holds only what the gates need: the control signals, OR-02 evidence
    verdicts and three integers per DataLane record or epoch-carrying line - never
    payloads or whole records - so a timeline of any size is evaluated in one pass.
    A live session instead asks for :meth:`closed_turns` after each turn's ``close``:
    the samples of the turns closed since, whose evidence is then forgotten.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._evidence: dict[_Key, _Evidence] = {}
        self._position = 0

    def add(self, line: TimelineLine) -> None:
        self.add_record(line.kind, line.record)

    def add_struct(self, record: msgspec.Struct) -> None:
        """A record as a live session appends it (a contract struct or OR-02 evidence)."""
        kind = TIMELINE_KINDS.get(type(record))
        if kind is not None:
            self.add_record(kind, msgspec.to_builtins(record))

    def add_record(self, kind: str, record: Mapping[str, Any]) -> None:
        """One line given as its ``kind`` and ``record`` mapping (no payload needed)."""
        position = self._position
        self._position += 1
        session_id = record.get("session_id")
        if kind == EVIDENCE_KIND:
            key = (str(session_id), str(record.get("turn_id")))
            self._evidence[key] = _Evidence(missing_evidence_fields(record),
                                            _marker_delta(record.get("cancel")))
        if not isinstance(session_id, str):
            return
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _Session()
        seq = _int(record, "runtime_sequence")
        epoch = record.get("authority_epoch")
        turn = record.get("turn_id")
        if kind == "control_signal":
            signal = record.get("signal")
            # a turn cancel's node-scope cancels (F-034) share the turn's fence: one sample
            if isinstance(signal, str) and not (signal == "cancel"
                                                and record.get("scope") == "node"):
                session.signals.append(_Signal(
                    seq, position, _int(record, "runtime_timestamp_ms"), signal,
                    turn if isinstance(turn, str) else None,
                    epoch if type(epoch) is int else None, record.get("reason"),
                    record.get("event_id")))
                return
        if type(epoch) is int:
            session.epochs.extend((seq, position, epoch))
        if kind == "event_record":
            end = speech_end_sample(record)
            if end is not None:
                session.speech_ends.extend((seq, position, end))
        if kind == "event_record" and record.get("lane") == "DataLane":
            ts = _int(record, "runtime_timestamp_ms")
            if record.get("payload_class") == "audio_raw" and \
                    record.get("transport_sequence") is not None:
                session.ingress.extend((seq, position, ts))
                media = record.get("media_time")
                sample = media.get("sample_index") if isinstance(media, dict) else None
                session.ingress_samples.extend(
                    (seq, position, sample if type(sample) is int else -1))
            edge = record.get("edge_id")
            # (a session-scoped record's turn id only correlates it, F-013: not the turn's)
            if isinstance(turn, str) and record.get("event_scope") != "session":
                if isinstance(edge, str) and edge.startswith("input."):  # the user's own input
                    if edge == "input.text":
                        session.text_inputs.setdefault(turn, ts)
                else:
                    session.outputs.setdefault(turn, array("q")).extend((seq, position, ts))

    def report(self, gates: Sequence[GateDef] = GATES) -> GateReport:
        """The seven gates (``gates``: their thresholds) over everything added so far."""
        return self.evaluate(gates)[0]

    def evaluate(self, gates: Sequence[GateDef] = GATES
                 ) -> tuple[GateReport, list[TurnGateSample]]:
        """:meth:`report` and the per-turn samples it was computed from (per-session views)."""
        acc = _Samples()
        for session_id, session in self._sessions.items():
            _evaluate_session(session_id, session, self._evidence, acc)
        samples = [t.sample(key) for key, t in acc.turns.items()]
        return gate_report(samples, acc.d, gates), samples

    def closed_turns(self) -> list[TurnGateSample]:
        """Samples of the accepted turns that closed since the last call (live sessions).

        Their evidence is forgotten afterwards (and everything before them that no
        later turn reads), so a long session costs one turn's evidence per call.
        """
        out: list[TurnGateSample] = []
        for session_id, session in self._sessions.items():
            acc = _Samples()
            _evaluate_session(session_id, session, self._evidence, acc)
            done = {key: t for key, t in acc.turns.items()
                    if t.accepted and t.closed and key[1] not in session.reported}
            if not done:
                continue
            out.extend(t.sample(key) for key, t in done.items())
            pending = [t.anchor for key, t in acc.turns.items() if t.accepted and key not in done]
            cut = max(t.anchor for t in done.values())
            if pending and min(pending) <= cut:
                cut = (min(pending)[0], min(pending)[1] - 1)
            turns = {key[1] for key in done}
            session.forget(turns, cut)
            for key in done:
                self._evidence.pop(key, None)
        return out


@dataclass(slots=True)
class _Turn:
    """What one turn contributes to the gates while a session is evaluated."""

    accepted: bool = False
    closed: bool = False
    #: where the turn's evidence starts: its proposal, else its ``turn_open``
    anchor: _Pos = (-1, -1)
    g1: float | None = None
    g2: float | None = None
    g3: list[float] = field(default_factory=list)
    g7: float | None = None
    checked: int = 0
    stale: int = 0
    complete: bool = False
    lifecycle_ok: bool = False
    invalid: set[int] = field(default_factory=set)
    terminal: str | None = None

    def sample(self, key: _Key) -> TurnGateSample:
        return TurnGateSample(
            session_id=key[0], turn_id=key[1], accepted=self.accepted, turn_open_ms=self.g1,
            first_output_ms=self.g2, cancel_fence_ms=tuple(self.g3),
            outputs_checked=self.checked, stale_outputs=self.stale,
            evidence_complete=self.complete, lifecycle_ok=self.lifecycle_ok,
            end_to_end_ms=self.g7, invalid=tuple(sorted(self.invalid)), terminal=self.terminal)


@dataclass(slots=True)
class _Samples:
    turns: dict[_Key, _Turn] = field(default_factory=dict)
    d: dict[int, list[str]] = field(default_factory=lambda: {n: [] for n in range(1, 8)})

    def turn(self, session_id: str, turn_id: str) -> _Turn:
        found = self.turns.get((session_id, turn_id))
        if found is None:
            found = self.turns[(session_id, turn_id)] = _Turn()
        return found

    def fail(self, gate: int, t: _Turn, message: str) -> None:
        """A missing or invalid anchor: a diagnostic that fails ``gate``."""
        t.invalid.add(gate)
        self.d[gate].append(message)


def _authority(session_id: str, session: _Session, signals: list[_Signal], acc: _Samples) -> None:
    """Gate 4: outputs whose epoch is below the highest epoch seen before them."""
    merged: list[tuple[int, int, int, _Signal | None]] = [
        (s.seq, s.pos, s.epoch if s.epoch is not None else -1, s) for s in signals]
    merged.extend((seq, pos, epoch, None) for seq, pos, epoch in _triples(session.epochs))
    merged.sort(key=lambda item: (item[0], item[1]))
    max_epoch = session.epoch_floor
    for _seq, _pos, epoch, sig in merged:
        if sig is not None and sig.signal in _OUTPUT_SIGNALS and sig.epoch is not None:
            t = acc.turn(session_id, sig.turn or "(no turn)")
            t.checked += 1
            if sig.epoch < max_epoch:
                t.stale += 1
                acc.d[4].append(f"{session_id}/{sig.turn}: {sig.signal} {sig.event_id} accepted "
                                f"with stale epoch {sig.epoch} < {max_epoch}")
        if epoch >= 0:
            max_epoch = max(max_epoch, epoch)


def _evaluate_session(session_id: str, session: _Session, evidence: dict[_Key, _Evidence],
                      acc: _Samples) -> None:
    signals = sorted(session.signals, key=lambda s: (s.seq, s.pos))
    _authority(session_id, session, signals, acc)
    of_turn: dict[str, list[_Signal]] = defaultdict(list)
    for sig in signals:
        if sig.turn is not None:
            of_turn[sig.turn].append(sig)
    proposals = [s for s in signals if s.signal == "turn_open_proposed"]
    first_for_turn: dict[str | None, int] = {}
    for i, p in enumerate(proposals):
        first_for_turn.setdefault(p.turn, i)
    used: set[int] = set()
    before: list[int] = []  # proposals before the current open, latest last
    upcoming = 0
    proposal_of: dict[str, _Pos] = {}
    triples = _triples(session.ingress)
    ingress = [(seq, pos) for seq, pos, _ in triples]
    ingress_ts = [ts for _, _, ts in triples]
    samples = [sample for _, _, sample in _triples(session.ingress_samples)]
    speech_ends = _triples(session.speech_ends)
    previous: _Pos = (-1, -1)  # the previous turn's proposal: older speech ends are its own
    for op in (s for s in signals if s.signal == "turn_open"):
        turn = str(op.turn)
        t = acc.turn(session_id, turn)
        here = (op.seq, op.pos)
        while upcoming < len(proposals) and \
                (proposals[upcoming].seq, proposals[upcoming].pos) < here:
            before.append(upcoming)
            upcoming += 1
        # gate 1: the proposal carrying this turn id, else the latest unpaired one before it
        match = first_for_turn.get(op.turn)
        if match is None:
            while before and before[-1] in used:
                before.pop()
            match = before[-1] if before else None
        if match is None:
            acc.fail(1, t, f"{session_id}/{turn}: missing turn_open_proposed anchor")
        else:
            used.add(match)
            proposal = proposals[match]
            proposal_of[turn] = (proposal.seq, proposal.pos)
            delta = op.ts - proposal.ts
            if delta < 0:
                acc.fail(1, t, f"{session_id}/{turn}: invalid anchors (turn_open before proposal)")
            else:
                t.g1 = delta
        _turn_gates(session_id, turn, t, op, of_turn.get(turn, []), session, evidence, acc)
        # gate 7: first playback_started minus the end of the user's input: the typed text's
        # arrival, else the arrival of the frame holding the VAD's last voiced sample, else
        # the last ingress frame before the proposal (rspp.observability.turn_latencies)
        playback = next((s for s in of_turn.get(turn, []) if s.signal == "playback_started"),
                        None)
        start = proposal_of.get(turn, here)
        t.anchor = start
        vad = [sample for seq, pos, sample in speech_ends if previous < (seq, pos) <= start]
        previous = start
        if playback is not None:
            anchor = session.text_inputs.get(turn)
            if anchor is None and vad:
                anchor = frame_time_of_sample(samples, ingress_ts, vad[-1])
            if anchor is None:
                last = bisect.bisect_left(ingress, start) - 1
                anchor = ingress_ts[last] if last >= 0 else None
            if anchor is None:
                acc.fail(7, t, f"{session_id}/{turn}: playback_started without an audio "
                         "ingress anchor")
            elif playback.ts < anchor:
                acc.fail(7, t, f"{session_id}/{turn}: invalid anchors (playback before ingress)")
            else:
                t.g7 = playback.ts - anchor


def _turn_gates(session_id: str, turn: str, t: _Turn, op: _Signal, mine: list[_Signal],
                session: _Session, evidence: dict[_Key, _Evidence], acc: _Samples) -> None:
    """Gates 2, 3, 5 and 6 of one accepted turn (``mine``: its signals, in order)."""
    t.accepted = True
    found = evidence.get((session_id, turn))
    problems = found.problems if found is not None else ["no or02_evidence line"]
    if problems:
        acc.d[5].append(f"{session_id}/{turn}: " + "; ".join(problems))
    else:
        t.complete = True
    order = {id(s): i for i, s in enumerate(mine)}
    terminals = [order[id(s)] for s in mine if s.signal in ("commit", "abort")]
    if terminals:
        end = mine[terminals[0]]
        t.terminal = "commit" if end.signal == "commit" else str(end.reason or "abort")[:64]
    closes = [order[id(s)] for s in mine if s.signal == "close"]
    t.closed = bool(closes)
    if len(terminals) == 1 and len(closes) == 1 and closes[0] > terminals[0]:
        t.lifecycle_ok = True
    else:
        acc.d[6].append(f"{session_id}/{turn}: {len(terminals)} terminal(s), {len(closes)} "
                        "close(s)" + ("" if len(terminals) != 1 or len(closes) != 1
                                      else ", close before terminal"))
    here = (op.seq, op.pos)
    if any(s.signal == "commit" for s in mine):
        outputs = session.outputs.get(turn)
        first = min(((seq, pos, ts) for seq, pos, ts in _triples(outputs) if (seq, pos) > here),
                    default=None) if outputs is not None else None
        if first is None:
            acc.fail(2, t, f"{session_id}/{turn}: committed turn without a DataLane output")
        elif first[2] < op.ts:
            acc.fail(2, t, f"{session_id}/{turn}: invalid anchors (output before turn_open)")
        else:
            t.g2 = first[2] - op.ts
    marked = found.cancel_delta if found is not None else None
    cancels = [i for i, s in enumerate(mine) if s.signal == "cancel"]
    for ci in cancels:
        later = mine[ci + 1:]
        fence = next((s for s in later if s.signal == "playback_cancelled"), None) or next(
            (s for s in later if s.signal == "abort" and s.reason == "cancelled"), None)
        if fence is not None:
            _fence(acc, t, fence.ts - mine[ci].ts, f"{session_id}/{turn}")
        elif marked is not None and ci == cancels[-1]:
            _fence(acc, t, marked, f"{session_id}/{turn}")
        else:
            acc.fail(3, t, f"{session_id}/{turn}: cancel {mine[ci].event_id} without a fence "
                     "anchor (playback_cancelled, abort(cancelled) or OR-02 cancel markers)")
    if not cancels and marked is not None:
        _fence(acc, t, marked, f"{session_id}/{turn}")


def _fence(acc: _Samples, t: _Turn, delta: int, where: str) -> None:
    if delta < 0:
        acc.fail(3, t, f"{where}: invalid anchors (fence before cancel)")
    else:
        t.g3.append(delta)


def _marker_delta(markers: object) -> int | None:
    """``cancel_fence_applied_ms - cancel_accepted_ms`` of OR-02 cancel markers, if well-typed."""
    if not isinstance(markers, dict):
        return None
    fence, accepted = markers.get("cancel_fence_applied_ms"), markers.get("cancel_accepted_ms")
    if type(fence) is not int or type(accepted) is not int:
        return None
    return fence - accepted


def _latency_gate(g: GateDef, samples: list[float], failed: bool,
                  diagnostics: list[str]) -> GateResult:
    """``g.checks`` are (percentile, bound ms) pairs that must all hold; ``failed``: an
    anchor was missing or invalid somewhere."""
    p50, p95, p99 = (percentile(samples, q) for q in (50, 95, 99))
    if not samples and not failed:
        return GateResult(gate=g.gate, name=g.name, threshold=g.threshold, count=0, p50=None,
                          p95=None, p99=None, value=None, passed=None, status="no_samples",
                          diagnostics=["no samples: no turns matched this gate's anchors"])
    ok = not failed and bool(samples)
    for q, bound in g.checks:
        value = percentile(samples, q)
        ok = ok and value is not None and value <= bound
    value = percentile(samples, g.checks[-1][0])
    return GateResult(gate=g.gate, name=g.name, threshold=g.threshold, count=len(samples),
                      p50=p50, p95=p95, p99=p99, value=value, passed=ok,
                      status="pass" if ok else "fail", diagnostics=diagnostics)


def _ratio_gate(g: GateDef, good: int, total: int, diagnostics: list[str]) -> GateResult:
    if total == 0:
        return GateResult(gate=g.gate, name=g.name, threshold=g.threshold, count=0, p50=None,
                          p95=None, p99=None, value=None, passed=None, status="no_samples",
                          diagnostics=["no samples: no accepted turns (turn_open) found"])
    value = round(100.0 * good / total, 3)
    ok = good == total
    return GateResult(gate=g.gate, name=g.name, threshold=g.threshold, count=total, p50=None,
                      p95=None, p99=None, value=value, passed=ok,
                      status="pass" if ok else "fail", diagnostics=diagnostics)


def evaluate_gates(lines: Iterable[TimelineLine],
                   gates: Sequence[GateDef] = GATES) -> GateReport:
    """Compute all seven gates over the lines of one or more timelines (one pass);
    ``gates``: the thresholds (:func:`gates_with` a spec's ``slo``)."""
    acc = GateAccumulator()
    for line in lines:
        acc.add(line)
    return acc.report(gates)


def _authority_gate(g: GateDef, checked: int, stale: int, diagnostics: list[str]) -> GateResult:
    if checked == 0:
        return GateResult(gate=g.gate, name=g.name, threshold=g.threshold, count=0, p50=None,
                          p95=None, p99=None, value=None, passed=None, status="no_samples",
                          diagnostics=["no samples: no output_accepted/playback_started "
                                       "signal carries an authority_epoch"])
    ok = stale == 0
    return GateResult(gate=g.gate, name=g.name, threshold=g.threshold, count=checked, p50=None,
                      p95=None, p99=None, value=float(stale), passed=ok,
                      status="pass" if ok else "fail", diagnostics=diagnostics)
