"""The seven MVP quality gates of DESIGN section 1, computed from timelines.

Pairing rules (all times are ``runtime_timestamp_ms``; order within a session
is ``runtime_sequence``, ties by file position):

1. turn-open decision: for every ``turn_open`` (session S, turn T) the anchor
   is the ``turn_open_proposed`` of S carrying ``turn_id`` T, else the latest
   not yet paired proposal of S before it. Sample = open - proposal.
2. first output (happy path = turns that ``commit``): first DataLane
   ``event_record`` of (S, T) after ``turn_open``. Sample = output - open.
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
   (or its ``turn_open`` when no proposal). p50 <= 1500 and p95 <= 2000. The anchors
   are those of :func:`rspp.observability.turn_latencies` (the ``rspp run`` table).

A missing or invalid anchor (absent, or a negative delta) is a diagnostic and
fails its gate. A gate with no samples reports status ``no_samples`` and
``pass`` null: it never passes silently. Percentiles use the nearest-rank method.

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
from typing import Any, Literal, NamedTuple

import msgspec

from rspp.observability._evidence import EVIDENCE_KIND, missing_evidence_fields
from rspp.observability._timeline_io import TimelineLine
from rspp.observability._turn_latency import frame_time_of_sample, speech_end_sample

__all__ = ["GateAccumulator", "GateReport", "GateResult", "evaluate_gates", "percentile"]

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


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


_OUTPUT_SIGNALS = ("output_accepted", "playback_started")
_Pos = tuple[int, int]  # (runtime_sequence, position in the input): the order within a session


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
    """

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._evidence: dict[_Key, _Evidence] = {}
        self._position = 0

    def add(self, line: TimelineLine) -> None:
        position = self._position
        self._position += 1
        record = line.record
        kind = line.kind
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
            if isinstance(turn, str):
                session.outputs.setdefault(turn, array("q")).extend((seq, position, ts))

    def report(self) -> GateReport:
        """The seven gates over everything added so far."""
        acc = _Samples()
        for session_id, session in self._sessions.items():
            _evaluate_session(session_id, session, self._evidence, acc)
        return acc.report()


@dataclass(slots=True)
class _Samples:
    g1: list[float] = field(default_factory=list)
    g2: list[float] = field(default_factory=list)
    g3: list[float] = field(default_factory=list)
    g7: list[float] = field(default_factory=list)
    d: dict[int, list[str]] = field(default_factory=lambda: {n: [] for n in range(1, 8)})
    accepted: int = 0
    complete: int = 0
    lifecycle_ok: int = 0
    outputs_checked: int = 0
    stale_outputs: int = 0

    def report(self) -> GateReport:
        d = self.d
        gates = [
            _latency_gate(1, "turn-open decision", "p95 <= 120 ms", self.g1, d[1], [(95, 120)]),
            _latency_gate(2, "first output", "p95 <= 1500 ms", self.g2, d[2], [(95, 1500)]),
            _latency_gate(3, "cancel fence", "p95 <= 150 ms", self.g3, d[3], [(95, 150)]),
            _authority_gate(self.outputs_checked, self.stale_outputs, d[4]),
            _ratio_gate(5, "replay completeness", "100% of accepted turns complete",
                        self.complete, self.accepted, d[5]),
            _ratio_gate(6, "lifecycle", "100% one terminal then close",
                        self.lifecycle_ok, self.accepted, d[6]),
            _latency_gate(7, "end to end", "p50 <= 1500 ms, p95 <= 2000 ms", self.g7, d[7],
                          [(50, 1500), (95, 2000)]),
        ]
        return GateReport(gates=gates, accepted_turns=self.accepted)


def _authority(session_id: str, session: _Session, signals: list[_Signal], acc: _Samples) -> None:
    """Gate 4: outputs whose epoch is below the highest epoch seen before them."""
    merged: list[tuple[int, int, int, _Signal | None]] = [
        (s.seq, s.pos, s.epoch if s.epoch is not None else -1, s) for s in signals]
    merged.extend((seq, pos, epoch, None) for seq, pos, epoch in _triples(session.epochs))
    merged.sort(key=lambda item: (item[0], item[1]))
    max_epoch = -1
    for _seq, _pos, epoch, sig in merged:
        if sig is not None and sig.signal in _OUTPUT_SIGNALS and sig.epoch is not None:
            acc.outputs_checked += 1
            if sig.epoch < max_epoch:
                acc.stale_outputs += 1
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
            acc.d[1].append(f"{session_id}/{turn}: missing turn_open_proposed anchor")
        else:
            used.add(match)
            proposal = proposals[match]
            proposal_of[turn] = (proposal.seq, proposal.pos)
            delta = op.ts - proposal.ts
            if delta < 0:
                acc.d[1].append(f"{session_id}/{turn}: invalid anchors (turn_open before proposal)")
            else:
                acc.g1.append(delta)
        _turn_gates(session_id, turn, op, of_turn.get(turn, []), session, evidence, acc)
        # gate 7: first playback_started minus the end of the user's speech (the arrival of
        # the frame holding the VAD's last voiced sample), else the last ingress frame before
        # the proposal (rspp.observability.turn_latencies: the same anchors)
        playback = next((s for s in of_turn.get(turn, []) if s.signal == "playback_started"),
                        None)
        start = proposal_of.get(turn, here)
        vad = [sample for seq, pos, sample in speech_ends if previous < (seq, pos) <= start]
        previous = start
        if playback is not None:
            anchor = frame_time_of_sample(samples, ingress_ts, vad[-1]) if vad else None
            if anchor is None:
                last = bisect.bisect_left(ingress, start) - 1
                anchor = ingress_ts[last] if last >= 0 else None
            if anchor is None:
                acc.d[7].append(f"{session_id}/{turn}: playback_started without an audio "
                                "ingress anchor")
            elif playback.ts < anchor:
                acc.d[7].append(f"{session_id}/{turn}: invalid anchors (playback before ingress)")
            else:
                acc.g7.append(playback.ts - anchor)


def _turn_gates(session_id: str, turn: str, op: _Signal, mine: list[_Signal],
                session: _Session, evidence: dict[_Key, _Evidence], acc: _Samples) -> None:
    """Gates 2, 3, 5 and 6 of one accepted turn (``mine``: its signals, in order)."""
    acc.accepted += 1
    found = evidence.get((session_id, turn))
    problems = found.problems if found is not None else ["no or02_evidence line"]
    if problems:
        acc.d[5].append(f"{session_id}/{turn}: " + "; ".join(problems))
    else:
        acc.complete += 1
    order = {id(s): i for i, s in enumerate(mine)}
    terminals = [order[id(s)] for s in mine if s.signal in ("commit", "abort")]
    closes = [order[id(s)] for s in mine if s.signal == "close"]
    if len(terminals) == 1 and len(closes) == 1 and closes[0] > terminals[0]:
        acc.lifecycle_ok += 1
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
            acc.d[2].append(f"{session_id}/{turn}: committed turn without a DataLane output")
        else:
            acc.g2.append(first[2] - op.ts)
    marked = found.cancel_delta if found is not None else None
    cancels = [i for i, s in enumerate(mine) if s.signal == "cancel"]
    for ci in cancels:
        later = mine[ci + 1:]
        fence = next((s for s in later if s.signal == "playback_cancelled"), None) or next(
            (s for s in later if s.signal == "abort" and s.reason == "cancelled"), None)
        if fence is not None:
            acc.g3.append(fence.ts - mine[ci].ts)
        elif marked is not None and ci == cancels[-1]:
            acc.g3.append(marked)
        else:
            acc.d[3].append(f"{session_id}/{turn}: cancel {mine[ci].event_id} without a fence "
                            "anchor (playback_cancelled, abort(cancelled) or OR-02 cancel "
                            "markers)")
    if not cancels and marked is not None:
        acc.g3.append(marked)


def _marker_delta(markers: object) -> int | None:
    """``cancel_fence_applied_ms - cancel_accepted_ms`` of OR-02 cancel markers, if well-typed."""
    if not isinstance(markers, dict):
        return None
    fence, accepted = markers.get("cancel_fence_applied_ms"), markers.get("cancel_accepted_ms")
    if type(fence) is not int or type(accepted) is not int:
        return None
    return fence - accepted


def _latency_gate(
    gate: int, name: str, threshold: str, samples: list[float], diagnostics: list[str],
    checks: Sequence[tuple[float, float]],
) -> GateResult:
    """``checks`` are (percentile, bound ms) pairs that must all hold."""
    p50, p95, p99 = (percentile(samples, q) for q in (50, 95, 99))
    if not samples and not diagnostics:
        return GateResult(gate=gate, name=name, threshold=threshold, count=0, p50=None,
                          p95=None, p99=None, value=None, passed=None, status="no_samples",
                          diagnostics=["no samples: no turns matched this gate's anchors"])
    ok = not diagnostics and bool(samples)
    for q, bound in checks:
        value = percentile(samples, q)
        ok = ok and value is not None and value <= bound
    value = percentile(samples, checks[-1][0])
    return GateResult(gate=gate, name=name, threshold=threshold, count=len(samples), p50=p50,
                      p95=p95, p99=p99, value=value, passed=ok, status="pass" if ok else "fail",
                      diagnostics=diagnostics)


def _ratio_gate(gate: int, name: str, threshold: str, good: int, total: int,
                diagnostics: list[str]) -> GateResult:
    if total == 0:
        return GateResult(gate=gate, name=name, threshold=threshold, count=0, p50=None, p95=None,
                          p99=None, value=None, passed=None, status="no_samples",
                          diagnostics=["no samples: no accepted turns (turn_open) found"])
    value = round(100.0 * good / total, 3)
    ok = good == total
    return GateResult(gate=gate, name=name, threshold=threshold, count=total, p50=None, p95=None,
                      p99=None, value=value, passed=ok, status="pass" if ok else "fail",
                      diagnostics=diagnostics)


def evaluate_gates(lines: Iterable[TimelineLine]) -> GateReport:
    """Compute all seven gates over the lines of one or more timelines (one pass)."""
    acc = GateAccumulator()
    for line in lines:
        acc.add(line)
    return acc.report()


def _authority_gate(checked: int, stale: int, diagnostics: list[str]) -> GateResult:
    name, threshold = "authority", "stale-epoch outputs == 0"
    if checked == 0:
        return GateResult(gate=4, name=name, threshold=threshold, count=0, p50=None, p95=None,
                          p99=None, value=None, passed=None, status="no_samples",
                          diagnostics=["no samples: no output_accepted/playback_started "
                                       "signal carries an authority_epoch"])
    ok = stale == 0
    return GateResult(gate=4, name=name, threshold=threshold, count=checked, p50=None, p95=None,
                      p99=None, value=float(stale), passed=ok, status="pass" if ok else "fail",
                      diagnostics=diagnostics)
