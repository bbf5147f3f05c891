"""Divergence comparator: expected vs actual timeline -> DivergenceReport (F-077).

Both timelines are grouped by ``turn_id`` (session-scoped records form the
group ``None``) and ordered by ``runtime_sequence`` then file position. Session
ids are not compared (a replay may run under a new session id). Recorder
artefacts (``recording_level_downgraded`` markers, ``or02-*`` telemetry markers)
and TelemetryLane records (best effort, may be shed) are ignored. Within a group:

* records are matched by a signature (kind, signal / outcome kind / trigger,
  lane, node, edge, payload class) and occurrence number;
* PLAN: a turn's ``resolved_turn_plan`` is missing on one side or its
  ``plan_hash`` differs (the message lists the differing plan fields);
* PROVIDER_CHOICE: the plan's ``provider_bindings`` differ, an evidence record
  names other providers, or ``provider_switch``/``fallback``/``circuit_event``/
  ``provider_error`` signals differ;
* AUTHORITY: ``stale_epoch_reject``/``deauthorized_drain``/lease signals or
  outcomes differ, or a matched record carries another ``authority_epoch``;
* OUTCOME: another terminal (``commit`` vs ``abort(reason)``), other decision
  outcomes, other output text per (turn, node), any other missing/extra record;
* ORDERING: the matched records appear in a different order;
* TIMING: a matched record's offset from its timeline's first record moved by
  more than ``tolerances.timing_ms``; budget reports and ``shed`` decisions present on
  one side only (load, not logic, decides them).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from rspp.contracts import (
    Divergence,
    DivergenceClass,
    DivergencePolicy,
    DivergenceReport,
    ReplayMode,
    ReplayTolerances,
)
from rspp.observability._evidence import EVIDENCE_KIND
from rspp.observability._timeline_io import TimelineLine, as_lines

__all__ = ["compare_timelines", "compare_view"]

_AUTHORITY_SIGNALS = {"stale_epoch_reject", "deauthorized_drain", "lease_issued", "lease_rotated",
                      "migration_start", "migration_finish", "session_handoff"}
_PROVIDER_SIGNALS = {"provider_switch", "fallback", "circuit_event", "provider_error"}
_TERMINAL = {"commit", "abort"}
_BUDGET_SIGNALS = {"budget_warning", "budget_exhausted"}
_Sig = tuple[Any, ...]


#: the record fields the comparator reads (plans and evidence keep their whole record)
_COMPARED = ("kind", "signal", "outcome_kind", "trigger", "lane", "node_id", "edge_id",
             "payload_class", "scope", "session_id", "runtime_sequence", "turn_id",
             "runtime_timestamp_ms", "reason", "authority_epoch", "event_id", "emitted_by",
             "graph_definition_ref")
_KEEP_WHOLE = {"resolved_turn_plan", EVIDENCE_KIND}


def compare_view(line: TimelineLine) -> TimelineLine:
    """``line`` reduced to what :func:`compare_timelines` reads (same verdicts, less memory).

    Record fields other than the compared ones and payloads other than ``text`` and
    ``is_final`` are dropped (a streamed replay keeps only these views of both sides).
    """
    rec = line.record
    if line.kind not in _KEEP_WHOLE:
        rec = {k: rec[k] for k in _COMPARED if rec.get(k) is not None}
    payload = line.payload
    if payload is not None:
        payload = {k: payload[k] for k in ("text", "is_final") if k in payload} or None
    return TimelineLine(line=line.line, kind=line.kind, record=rec, payload=payload)


def _is_artifact(line: TimelineLine) -> bool:
    if line.record.get("signal") == "recording_level_downgraded":
        return True
    if line.record.get("lane") == "TelemetryLane":
        return True  # best-effort lane: may be sampled or shed, never a divergence
    return str(line.record.get("event_id", "")).startswith("or02-")


def _signature(line: TimelineLine) -> _Sig:
    r = line.record
    label = r.get("signal") or r.get("outcome_kind") or r.get("trigger")
    return (line.kind, label, r.get("lane"), r.get("node_id"), r.get("edge_id"),
            r.get("payload_class"), r.get("scope") if line.kind == "control_signal" else None)


class _Side:
    """One timeline grouped by turn, with the derived views the comparator needs."""

    def __init__(self, lines: list[TimelineLine]) -> None:
        ordered = sorted(enumerate(lines), key=lambda t: (
            str(t[1].record.get("session_id", "")),
            int(t[1].record.get("runtime_sequence", 0)), t[0]))
        self.groups: dict[str | None, list[TimelineLine]] = defaultdict(list)
        self.plans: dict[str, dict[str, Any]] = {}
        self.evidence: dict[str, dict[str, Any]] = {}
        self.base_ts: int | None = None
        for _, line in ordered:
            if _is_artifact(line):
                continue
            turn = line.record.get("turn_id")
            if line.kind == "resolved_turn_plan":
                self.plans[str(turn)] = line.record
                continue
            if line.kind == EVIDENCE_KIND:
                self.evidence[str(turn)] = line.record
                continue
            if line.kind == "turn_transition":
                continue  # transitions carry no identity; signals cover the lifecycle
            ts = line.record.get("runtime_timestamp_ms")
            if isinstance(ts, int) and (self.base_ts is None or ts < self.base_ts):
                self.base_ts = ts
            self.groups[turn if isinstance(turn, str) else None].append(line)

    def keyed(self, turn: str | None) -> list[tuple[_Sig, int, TimelineLine]]:
        seen: Counter[_Sig] = Counter()
        out = []
        for line in self.groups.get(turn, []):
            if line.kind == "control_signal" and line.record.get("signal") in _TERMINAL:
                continue
            sig = _signature(line)
            out.append((sig, seen[sig], line))
            seen[sig] += 1
        return out

    def terminal(self, turn: str | None) -> str | None:
        for line in self.groups.get(turn, []):
            if line.record.get("signal") in _TERMINAL:
                reason = line.record.get("reason")
                return f"{line.record['signal']}({reason})" if reason else line.record["signal"]
        return None

    def texts(self, turn: str | None) -> dict[str | None, str]:
        out: dict[str | None, list[str]] = defaultdict(list)
        for line in self.groups.get(turn, []):
            text = (line.payload or {}).get("text")
            final = (line.payload or {}).get("is_final", True)
            if isinstance(text, str) and final:
                out[line.record.get("node_id")].append(text)
        return {node: " ".join(parts) for node, parts in out.items()}

    def offset(self, line: TimelineLine) -> int | None:
        ts = line.record.get("runtime_timestamp_ms")
        return ts - self.base_ts if isinstance(ts, int) and self.base_ts is not None else None


def _class_of_missing(sig: _Sig) -> DivergenceClass:
    kind, label = sig[0], sig[1]
    if label in _AUTHORITY_SIGNALS:
        return DivergenceClass.AUTHORITY
    if label in _PROVIDER_SIGNALS:
        return DivergenceClass.PROVIDER_CHOICE
    if kind == "decision_outcome" and label in ("stale_epoch_reject", "deauthorized_drain"):
        return DivergenceClass.AUTHORITY
    if label == "shed":
        # a shed (signal or outcome) is a load decision: an edge was over a bound at that
        # instant; a replay on another machine or load sheds elsewhere (TIMING, F-148)
        return DivergenceClass.TIMING
    if label in _BUDGET_SIGNALS:
        # a budget report is a time measurement; when it ends a turn the terminal differs
        # too (OUTCOME), so one present on one side only is a TIMING finding
        return DivergenceClass.TIMING
    return DivergenceClass.OUTCOME


def _describe(sig: _Sig) -> str:
    kind, label = sig[0], sig[1]
    node = f" node={sig[3]}" if sig[3] else ""
    return f"{kind}:{label or sig[2]}{node}"


def _compare_turn(turn: str | None, exp: _Side, act: _Side, tol: ReplayTolerances,
                  out: list[Divergence]) -> None:
    def add(cls: DivergenceClass, message: str, expected: object = None, actual: object = None,
            ids: tuple[str, ...] = ()) -> None:
        out.append(Divergence(divergence_class=cls, message=message, turn_id=turn, event_ids=ids,
                              expected=None if expected is None else str(expected),
                              actual=None if actual is None else str(actual)))

    if turn is not None:
        ep, ap = exp.plans.get(turn), act.plans.get(turn)
        if (ep is None) != (ap is None):
            add(DivergenceClass.PLAN, "resolved_turn_plan present on one side only",
                ep and ep.get("plan_hash"), ap and ap.get("plan_hash"))
        elif ep is not None and ap is not None:
            if ep.get("plan_hash") != ap.get("plan_hash"):
                fields = sorted(k for k in set(ep) | set(ap)
                                if k != "plan_hash" and ep.get(k) != ap.get(k))
                add(DivergenceClass.PLAN, f"plan_hash differs (fields: {', '.join(fields)})",
                    ep.get("plan_hash"), ap.get("plan_hash"))
            if ep.get("provider_bindings") != ap.get("provider_bindings"):
                add(DivergenceClass.PROVIDER_CHOICE, "provider bindings differ",
                    ep.get("provider_bindings"), ap.get("provider_bindings"))
            if ep.get("authority_epoch") != ap.get("authority_epoch"):
                add(DivergenceClass.AUTHORITY, "plan authority_epoch differs",
                    ep.get("authority_epoch"), ap.get("authority_epoch"))
        ee, ae = exp.evidence.get(turn), act.evidence.get(turn)
        if ee is not None and ae is not None:
            ex = [p.get("provider_id") for p in ee.get("provider_invocations") or []]
            ac = [p.get("provider_id") for p in ae.get("provider_invocations") or []]
            if ex != ac:
                add(DivergenceClass.PROVIDER_CHOICE, "provider invocations used other providers",
                    ex, ac)
    et, at = exp.terminal(turn), act.terminal(turn)
    if et != at:
        add(DivergenceClass.OUTCOME, "terminal outcome differs", et, at)
    etx, atx = exp.texts(turn), act.texts(turn)
    for node in sorted(set(etx) | set(atx), key=str):
        if etx.get(node) != atx.get(node):
            add(DivergenceClass.OUTCOME, f"output text of node {node} differs",
                etx.get(node), atx.get(node))
    ek, ak = exp.keyed(turn), act.keyed(turn)
    e_ids = {(s, n): ln for s, n, ln in ek}
    a_ids = {(s, n): ln for s, n, ln in ak}
    for key in e_ids.keys() - a_ids.keys():
        add(_class_of_missing(key[0]), f"missing in actual: {_describe(key[0])}",
            ids=(str(e_ids[key].record.get("event_id")),))
    for key in a_ids.keys() - e_ids.keys():
        add(_class_of_missing(key[0]), f"unexpected in actual: {_describe(key[0])}",
            ids=(str(a_ids[key].record.get("event_id")),))
    common = e_ids.keys() & a_ids.keys()
    e_order = [(s, n) for s, n, _ in ek if (s, n) in common]
    a_order = [(s, n) for s, n, _ in ak if (s, n) in common]
    if e_order != a_order:
        i = next(i for i, (x, y) in enumerate(zip(e_order, a_order, strict=True)) if x != y)
        add(DivergenceClass.ORDERING, f"records in a different order from position {i}",
            _describe(e_order[i][0]), _describe(a_order[i][0]))
    for key in e_order:
        el, al = e_ids[key], a_ids[key]
        ids = (str(el.record.get("event_id")),)
        eo, ao = exp.offset(el), act.offset(al)
        if eo is not None and ao is not None and abs(eo - ao) > tol.timing_ms:
            add(DivergenceClass.TIMING,
                f"{_describe(key[0])} moved by {ao - eo} ms (tolerance {tol.timing_ms} ms)",
                eo, ao, ids)
        if el.record.get("authority_epoch") != al.record.get("authority_epoch"):
            add(DivergenceClass.AUTHORITY, f"{_describe(key[0])} authority_epoch differs",
                el.record.get("authority_epoch"), al.record.get("authority_epoch"), ids)
        if key[0][1] in _PROVIDER_SIGNALS | {"admit", "reject", "defer"} and \
                el.record.get("reason") != al.record.get("reason"):
            cls = _class_of_missing(key[0])
            add(cls, f"{_describe(key[0])} reason differs",
                el.record.get("reason"), al.record.get("reason"), ids)


def compare_timelines(
    expected: Iterable[object],
    actual: Iterable[object],
    *,
    tolerances: ReplayTolerances | None = None,
    policy: DivergencePolicy | None = None,
    mode: ReplayMode = ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS,
) -> DivergenceReport:
    """Compare two timelines (TimelineEntry, TimelineLine or line mappings)."""
    tol = tolerances or ReplayTolerances()
    exp, act = _Side(as_lines(expected)), _Side(as_lines(actual))
    findings: list[Divergence] = []
    turns = set(exp.groups) | set(act.groups) | set(exp.plans) | set(act.plans)
    for turn in sorted(turns, key=lambda t: (t is not None, str(t))):
        _compare_turn(turn, exp, act, tol, findings)
    return DivergenceReport.build(mode, findings, tol, policy)
