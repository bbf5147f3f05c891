"""The seven MVP quality gates of DESIGN section 1, computed from timelines.

Pairing rules (all times are ``runtime_timestamp_ms``; order within a session
is ``runtime_sequence``, ties by file position):

Gates 1, 2 and 7 use the per-turn anchors of :func:`turn_latencies` (the same
numbers as the per-turn table of ``rspp run``):

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
   speech: the arrival of the ingress audio frame holding the VAD's last voiced
   sample, else the last ingress audio frame of S (DataLane, ``audio_raw``,
   ``transport_sequence`` set) before the turn's proposal (or its ``turn_open``
   when no proposal). p50 <= 1500 and p95 <= 2000.

A missing or invalid anchor (absent, or a negative delta) is a diagnostic and
fails its gate. A gate with no samples reports status ``no_samples`` and
``pass`` null: it never passes silently. Percentiles use the nearest-rank method.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec

from rspp.observability._evidence import EVIDENCE_KIND, missing_evidence_fields
from rspp.observability._timeline_io import TimelineLine
from rspp.observability._turn_latency import by_session as _by_session
from rspp.observability._turn_latency import signal_of as _sig
from rspp.observability._turn_latency import timestamp_of as _ts
from rspp.observability._turn_latency import turn_latencies

__all__ = ["GateReport", "GateResult", "evaluate_gates", "percentile"]

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
    """Compute all seven gates over the lines of one or more timelines."""
    all_lines = list(lines)
    sessions = _by_session(all_lines)
    evidence: dict[_Key, dict[str, Any]] = {}
    for line in all_lines:
        if line.kind == EVIDENCE_KIND:
            key = (str(line.record.get("session_id")), str(line.record.get("turn_id")))
            evidence[key] = line.record
    g1: list[float] = []
    g2: list[float] = []
    g3: list[float] = []
    g7: list[float] = []
    d1: list[str] = []
    d2: list[str] = []
    d3: list[str] = []
    d4: list[str] = []
    d5: list[str] = []
    d6: list[str] = []
    d7: list[str] = []
    accepted = complete = lifecycle_ok = outputs_checked = stale_outputs = 0
    for session, seq in sessions.items():
        opens = [ln for ln in seq if _sig(ln) == "turn_open"]
        max_epoch = -1
        for ln in seq:
            epoch = ln.record.get("authority_epoch")
            if _sig(ln) in ("output_accepted", "playback_started") and isinstance(epoch, int):
                outputs_checked += 1
                if epoch < max_epoch:
                    stale_outputs += 1
                    d4.append(f"{session}/{ln.record.get('turn_id')}: {_sig(ln)} "
                              f"{ln.record.get('event_id')} accepted with stale epoch {epoch} "
                              f"< {max_epoch}")
            if isinstance(epoch, int):
                max_epoch = max(max_epoch, epoch)
        for op in opens:
            turn = str(op.record.get("turn_id"))
            accepted += 1
            problems = (missing_evidence_fields(evidence[(session, turn)])
                        if (session, turn) in evidence else ["no or02_evidence line"])
            if problems:
                d5.append(f"{session}/{turn}: " + "; ".join(problems))
            else:
                complete += 1
            of_turn = [(i, ln) for i, ln in enumerate(seq) if ln.record.get("turn_id") == turn]
            terminals = [i for i, ln in of_turn if _sig(ln) in ("commit", "abort")]
            closes = [i for i, ln in of_turn if _sig(ln) == "close"]
            if len(terminals) == 1 and len(closes) == 1 and closes[0] > terminals[0]:
                lifecycle_ok += 1
            else:
                d6.append(f"{session}/{turn}: {len(terminals)} terminal(s), {len(closes)} "
                          "close(s)" + ("" if len(terminals) != 1 or len(closes) != 1
                                        else ", close before terminal"))
            markers = (evidence.get((session, turn)) or {}).get("cancel")
            cancels = [(ci, c) for ci, c in of_turn if _sig(c) == "cancel"]
            for ci, cancel in cancels:
                fence = next((ln for i, ln in of_turn if i > ci and _sig(ln) ==
                              "playback_cancelled"), None) or next(
                    (ln for i, ln in of_turn if i > ci and _sig(ln) == "abort"
                     and ln.record.get("reason") == "cancelled"), None)
                if fence is not None:
                    g3.append(_ts(fence) - _ts(cancel))
                elif isinstance(markers, dict) and ci == cancels[-1][0]:
                    g3.append(int(markers["cancel_fence_applied_ms"])
                              - int(markers["cancel_accepted_ms"]))
                else:
                    d3.append(f"{session}/{turn}: cancel {cancel.record.get('event_id')} "
                              "without a fence anchor (playback_cancelled, abort(cancelled) "
                              "or OR-02 cancel markers)")
            if not cancels and isinstance(markers, dict):
                g3.append(int(markers["cancel_fence_applied_ms"])
                          - int(markers["cancel_accepted_ms"]))
    for lat in turn_latencies(all_lines):
        where = f"{lat.session_id}/{lat.turn_id}"
        if lat.proposal_ms is None:
            d1.append(f"{where}: missing turn_open_proposed anchor")
        elif lat.decision_ms is None:
            d1.append(f"{where}: invalid anchors (turn_open before proposal)")
        else:
            g1.append(lat.decision_ms)
        if lat.committed:
            if lat.open_to_first_output_ms is None:
                d2.append(f"{where}: committed turn without a DataLane output")
            else:
                g2.append(lat.open_to_first_output_ms)
        if lat.first_audio_ms is not None:
            if lat.speech_end_ms is None:
                d7.append(f"{where}: playback_started without an audio ingress anchor")
            elif lat.speech_end_to_first_audio_ms is None:
                d7.append(f"{where}: invalid anchors (playback before ingress)")
            else:
                g7.append(lat.speech_end_to_first_audio_ms)
    gates = [
        _latency_gate(1, "turn-open decision", "p95 <= 120 ms", g1, d1, [(95, 120)]),
        _latency_gate(2, "first output", "p95 <= 1500 ms", g2, d2, [(95, 1500)]),
        _latency_gate(3, "cancel fence", "p95 <= 150 ms", g3, d3, [(95, 150)]),
        _authority_gate(outputs_checked, stale_outputs, d4),
        _ratio_gate(5, "replay completeness", "100% of accepted turns complete",
                    complete, accepted, d5),
        _ratio_gate(6, "lifecycle", "100% one terminal then close",
                    lifecycle_ok, accepted, d6),
        _latency_gate(7, "end to end", "p50 <= 1500 ms, p95 <= 2000 ms", g7, d7,
                      [(50, 1500), (95, 2000)]),
    ]
    return GateReport(gates=gates)


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
