"""Divergence comparator: expected vs actual timeline -> DivergenceReport (F-077).

Both timelines are grouped by ``turn_id`` (session-scoped records form the
group ``None``; a session-scoped event record's ``turn_id`` only correlates it,
F-013) and ordered by ``runtime_sequence`` then file position. Session
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
  more than ``tolerances.timing_ms``; budget reports, ``shed`` decisions and capacity-
  control signals (``capacity_control:`` reasons) present on one side only (load, not
  logic, decides them).
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

__all__ = ["TurnwiseComparison", "compare_timelines", "compare_view", "view_of"]

_AUTHORITY_SIGNALS = {"stale_epoch_reject", "deauthorized_drain", "lease_issued", "lease_rotated",
                      "migration_start", "migration_finish", "session_handoff"}
_PROVIDER_SIGNALS = {"provider_switch", "fallback", "circuit_event", "provider_error"}
_TERMINAL = {"commit", "abort"}
_BUDGET_SIGNALS = {"budget_warning", "budget_exhausted"}
_REASONED = _PROVIDER_SIGNALS | {"admit", "reject", "defer"}  # their reason is compared
_Sig = tuple[Any, ...]
_Key = tuple[str, int, int]
#: a group's entry: sort key, line and the line's signature (see :func:`_signature`)
_Entry = tuple[_Key, TimelineLine, _Sig]
#: what :meth:`_Side.add` returns for a line of the session-scoped group
_SESSION = object()


def _first(item: _Entry) -> _Key:
    return item[0]


#: the record fields the comparator reads (plans and evidence keep their whole record)
_COMPARED = ("kind", "event_scope", "signal", "outcome_kind", "trigger", "lane", "node_id",
             "edge_id", "payload_class", "scope", "session_id", "runtime_sequence", "turn_id",
             "runtime_timestamp_ms", "reason", "authority_epoch", "event_id", "emitted_by",
             "graph_definition_ref")
_KEEP_WHOLE = {"resolved_turn_plan", EVIDENCE_KIND}


def compare_view(line: TimelineLine) -> TimelineLine:
    """``line`` reduced to what :func:`compare_timelines` reads (same verdicts, less memory).

    Record fields other than the compared ones and payloads other than ``text`` and
    ``is_final`` are dropped (a streamed replay keeps only these views of both sides).
    """
    return view_of(line.line, line.kind, line.record, line.payload)


_COMPARED_SET = frozenset(_COMPARED)


def view_of(number: int, kind: str, record: dict[str, Any],
            payload: dict[str, Any] | None) -> TimelineLine:
    """:func:`compare_view` of a line given by its parts (no intermediate line)."""
    if kind not in _KEEP_WHOLE:
        record = {k: v for k, v in record.items() if v is not None and k in _COMPARED_SET}
    if payload is not None:
        if "text" in payload or "is_final" in payload:
            payload = {k: payload[k] for k in ("text", "is_final") if k in payload}
        else:
            payload = None
    return TimelineLine(line=number, kind=kind, record=record, payload=payload)


def _group_of(line: TimelineLine) -> Any:
    """The turn group of ``line``: its ``turn_id``, but None for a session-scoped event
    record (there the id only correlates it with a turn, F-013; recordings made before
    it carried none, and their replays must still compare alike)."""
    rec = line.record
    if line.kind == "event_record" and rec.get("event_scope") == "session":
        return None
    return rec.get("turn_id")


def _is_artifact(line: TimelineLine) -> bool:
    rec = line.record
    if rec.get("lane") == "TelemetryLane":
        return True  # best-effort lane: may be sampled or shed, never a divergence
    if rec.get("signal") == "recording_level_downgraded":
        return True
    if rec.get("scope") == "provider_invocation" and rec.get("signal") == "cancel":
        return True  # provider timing: whether a call was still in flight at the cancel
    event_id = rec.get("event_id")  # (a decoded non-string never reads "or02-...")
    return isinstance(event_id, str) and event_id.startswith("or02-")


#: the reason prefix of a runtime capacity-control signal (rspp.server._capacity_control)
_CAPACITY_CONTROL = "capacity_control:"


_ADMISSION_SIGNALS = frozenset({"admit", "defer"})


def _admission_label(signal: Any, reason: Any) -> Any:
    """An admission signal's label: a capacity-control one is never paired with a turn's."""
    if isinstance(reason, str) and reason.startswith(_CAPACITY_CONTROL):
        return f"{signal}:{_CAPACITY_CONTROL[:-1]}"
    return signal


def _signature(line: TimelineLine) -> _Sig:
    r = line.record
    label = r.get("signal") or r.get("outcome_kind") or r.get("trigger")
    if line.kind == "control_signal" and label in _ADMISSION_SIGNALS:
        label = _admission_label(label, r.get("reason"))
    return (line.kind, label, r.get("lane"), r.get("node_id"), r.get("edge_id"),
            r.get("payload_class"), r.get("scope") if line.kind == "control_signal" else None)


class _Side:
    """One timeline grouped by turn, with the derived views the comparator needs.

    Lines are added one at a time (:meth:`add`); a group is ordered by (session id,
    ``runtime_sequence``, arrival) when it is read, and a compared turn is dropped.
    """

    def __init__(self, lines: Iterable[TimelineLine] = ()) -> None:
        self.groups: dict[str | None, list[_Entry]] = defaultdict(list)
        self.plans: dict[str, dict[str, Any]] = {}
        self.evidence: dict[str, dict[str, Any]] = {}
        self._kept: dict[tuple[str, str], _Key] = {}
        #: what a group's already compared (dropped) prefix leaves for the rest of it
        self.seen_base: dict[str | None, Counter[_Sig]] = defaultdict(Counter)
        self.text_base: dict[str | None, dict[str | None, list[str]]] = defaultdict(dict)
        self.terminal_base: dict[str | None, str] = {}
        self.dropped_key: dict[str | None, _Key] = {}
        self.base_ts: int | None = None
        self.late = 0
        self._n = 0
        for line in lines:
            self.add(line)

    def add(self, line: TimelineLine) -> str | object | None:
        """Take one line; returns its turn id when it is that turn's terminal signal,
        :data:`_SESSION` when it joined the session-scoped group."""
        self._n += 1
        rec = line.record
        get = rec.get
        # recorder artefacts (as _is_artifact, inlined: every line of both sides comes here)
        lane, signal = get("lane"), get("signal")
        if lane == "TelemetryLane" or signal == "recording_level_downgraded":
            return None
        if signal == "cancel" and get("scope") == "provider_invocation":
            # an invocation's cancel (F-160) tells whether the provider call was still in
            # flight when its node scope was cancelled: provider timing, which a replay on
            # recorded outputs does not reproduce (the node scope's cancel is compared)
            return None
        event_id = get("event_id")
        if type(event_id) is str and event_id.startswith("or02-"):
            return None
        # a null field counts as absent (as in a compare_view)
        sid = get("session_id") or ""
        seq = get("runtime_sequence") or 0
        key = (sid if type(sid) is str else str(sid), seq if type(seq) is int else int(seq),
               self._n)
        turn = _group_of(line)  # a session-scoped record's turn id only correlates (F-013)
        if line.kind in _KEEP_WHOLE:  # the last one in timeline order counts
            slot = (line.kind, str(turn))
            if slot not in self._kept or key >= self._kept[slot]:
                self._kept[slot] = key
                (self.plans if line.kind == "resolved_turn_plan" else self.evidence)[
                    str(turn)] = rec
            return None
        kind = line.kind
        if kind == "turn_transition":
            return None  # transitions carry no identity; signals cover the lifecycle
        ts = get("runtime_timestamp_ms")
        if isinstance(ts, int) and (self.base_ts is None or ts < self.base_ts):
            self.base_ts = ts
        group = turn if isinstance(turn, str) else None
        if group in self.dropped_key and key < self.dropped_key[group]:
            self.late += 1  # older than a record already compared: the verdict may differ
        # the signature (_signature, inlined), taken once: a group is keyed more than once
        label = signal or get("outcome_kind") or get("trigger")
        if signal in _ADMISSION_SIGNALS and kind == "control_signal":
            label = _admission_label(signal, get("reason"))
        self.groups[group].append((key, line, (
            kind, label, lane, get("node_id"),
            get("edge_id"), get("payload_class"),
            get("scope") if kind == "control_signal" else None)))
        if group is None:
            return _SESSION
        if kind == "control_signal" and signal in _TERMINAL:
            return group
        return None

    def turns(self) -> set[str | None]:
        return set(self.groups) | set(self.plans)

    def drop(self, turn: str | None) -> None:
        self.groups.pop(turn, None)
        if turn is not None:
            self.plans.pop(turn, None)
            self.evidence.pop(turn, None)
            self._kept.pop(("resolved_turn_plan", turn), None)
            self._kept.pop((EVIDENCE_KIND, turn), None)

    def ordered(self, turn: str | None) -> list[TimelineLine]:
        return [line for _, line, _ in self.sorted_group(turn)]

    def sorted_group(self, turn: str | None) -> list[_Entry]:
        return sorted(self.groups.get(turn, ()), key=_first)

    def keyed(self, turn: str | None, entries: list[_Entry] | None = None
              ) -> list[tuple[_Sig, int, TimelineLine]]:
        """``(signature, occurrence, line)`` of a group's entries (default: the whole
        group in order), terminals left out."""
        seen: dict[_Sig, int] = dict(self.seen_base.get(turn, ()))
        out: list[tuple[_Sig, int, TimelineLine]] = []
        append = out.append
        for _, line, sig in self.sorted_group(turn) if entries is None else entries:
            if sig[0] == "control_signal" and line.record.get("signal") in _TERMINAL:
                continue  # (_is_terminal, inlined)
            n = seen.get(sig, 0)
            append((sig, n, line))
            seen[sig] = n + 1
        return out

    def terminal(self, turn: str | None, lines: list[TimelineLine] | None = None) -> str | None:
        if turn in self.terminal_base:
            return self.terminal_base[turn]
        for line in self.ordered(turn) if lines is None else lines:
            if line.record.get("signal") in _TERMINAL:
                return _terminal_text(line)
        return None

    def texts(self, turn: str | None, lines: list[TimelineLine] | None = None
              ) -> dict[str | None, str]:
        out: dict[str | None, list[str]] = defaultdict(list)
        for node, parts in self.text_base.get(turn, {}).items():
            out[node].extend(parts)
        for line in self.ordered(turn) if lines is None else lines:
            _add_text(out, line)
        return {node: " ".join(parts) for node, parts in out.items()}

    def drop_prefix(self, turn: str | None, group: list[_Entry], count: int,
                    signatures: list[_Sig]) -> None:
        """Forget the first ``count`` lines of a group (compared), keeping what the rest
        of its comparison needs: occurrence numbers, output texts, the terminal.

        ``group`` is :meth:`sorted_group`; ``signatures`` those of its first ``count``
        lines that are not terminals, in order (as :meth:`keyed` gave them)."""
        if not count:
            return
        texts = self.text_base[turn]
        seen = self.seen_base[turn]
        sigs = iter(signatures)
        for i in range(count):
            line = group[i][1]
            if line.record.get("signal") in _TERMINAL:
                self.terminal_base.setdefault(turn, _terminal_text(line))
                if line.kind != "control_signal":
                    seen[next(sigs)] += 1
            else:
                seen[next(sigs)] += 1
            if line.payload:
                _add_text(texts, line)
        self.dropped_key[turn] = group[count - 1][0]
        self.groups[turn] = group[count:]

    def offset(self, line: TimelineLine) -> int | None:
        ts = line.record.get("runtime_timestamp_ms")
        return ts - self.base_ts if isinstance(ts, int) and self.base_ts is not None else None


def _is_terminal(line: TimelineLine) -> bool:
    return line.kind == "control_signal" and line.record.get("signal") in _TERMINAL


def _terminal_text(line: TimelineLine) -> str:
    reason = line.record.get("reason")
    return f"{line.record['signal']}({reason})" if reason else str(line.record["signal"])


def _add_text(out: dict[str | None, list[str]], line: TimelineLine) -> None:
    payload = line.payload
    if not payload:
        return
    text = payload.get("text")
    if isinstance(text, str) and payload.get("is_final", True):
        out.setdefault(line.record.get("node_id"), []).append(text)


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
    if isinstance(label, str) and label.endswith(":" + _CAPACITY_CONTROL[:-1]):
        # a runtime threshold tripped or cleared: the runtime's load at that instant, not
        # the session's logic (a replay runs under no such load: TIMING, F-172)
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


class _Settled:
    """The compared prefix of a long group (the session scope of a streamed replay)."""

    def __init__(self) -> None:
        self.offset = 0  # matched records compared so far (ORDERING positions continue)
        self.ordering: Divergence | None = None
        self.pairs: list[Divergence] = []


def _check_pair(turn: str | None, sig: _Sig, el: TimelineLine, al: TimelineLine, exp: _Side,
                act: _Side, tol: ReplayTolerances, out: list[Divergence]) -> None:
    """TIMING, AUTHORITY and reason findings of one matched pair of records."""
    def add(cls: DivergenceClass, message: str, expected: object, actual: object) -> None:
        out.append(Divergence(divergence_class=cls, message=message, turn_id=turn,
                              event_ids=(str(el.record.get("event_id")),),
                              expected=None if expected is None else str(expected),
                              actual=None if actual is None else str(actual)))

    eo, ao = exp.offset(el), act.offset(al)
    if eo is not None and ao is not None and abs(eo - ao) > tol.timing_ms:
        add(DivergenceClass.TIMING,
            f"{_describe(sig)} moved by {ao - eo} ms (tolerance {tol.timing_ms} ms)", eo, ao)
    if el.record.get("authority_epoch") != al.record.get("authority_epoch"):
        add(DivergenceClass.AUTHORITY, f"{_describe(sig)} authority_epoch differs",
            el.record.get("authority_epoch"), al.record.get("authority_epoch"))
    if sig[1] in _REASONED and \
            el.record.get("reason") != al.record.get("reason"):
        add(_class_of_missing(sig), f"{_describe(sig)} reason differs",
            el.record.get("reason"), al.record.get("reason"))


def _ordering(turn: str | None, e_order: list[tuple[_Sig, int]], a_order: list[tuple[_Sig, int]],
              offset: int) -> Divergence | None:
    if e_order == a_order:
        return None
    i = next(i for i, (x, y) in enumerate(zip(e_order, a_order, strict=True)) if x != y)
    return Divergence(divergence_class=DivergenceClass.ORDERING,
                      message=f"records in a different order from position {offset + i}",
                      turn_id=turn, event_ids=(), expected=_describe(e_order[i][0]),
                      actual=_describe(a_order[i][0]))


def _settle(turn: str | None, exp: _Side, act: _Side, tol: ReplayTolerances, st: _Settled,
            margin: int) -> None:
    """Compare and drop the longest prefix of a group that both sides agree is complete.

    The prefix ends where the records matched so far are the same set on both sides
    (nothing in it can match a later record); the newest ``margin`` records of each side
    stay (records may still arrive slightly out of order).
    """
    e_group, a_group = exp.sorted_group(turn), act.sorted_group(turn)
    e_lines, a_lines = [ln for _, ln, _ in e_group], [ln for _, ln, _ in a_group]
    ek = exp.keyed(turn, e_group[:max(0, len(e_group) - margin)])
    ak = act.keyed(turn, a_group[:max(0, len(a_group) - margin)])
    pend_e: set[tuple[_Sig, int]] = set()
    pend_a: set[tuple[_Sig, int]] = set()
    m = 0
    for i, (e, a) in enumerate(zip(ek, ak, strict=False)):
        ke, ka = (e[0], e[1]), (a[0], a[1])
        if ke in pend_a:
            pend_a.remove(ke)
        else:
            pend_e.add(ke)
        if ka in pend_e:
            pend_e.remove(ka)
        else:
            pend_a.add(ka)
        if not pend_e and not pend_a:
            m = i + 1
    if m == 0:
        return
    e_order = [(sg, n) for sg, n, _ in ek[:m]]
    a_order = [(sg, n) for sg, n, _ in ak[:m]]
    if st.ordering is None:
        st.ordering = _ordering(turn, e_order, a_order, st.offset)
    partner = {(sg, n): ln for sg, n, ln in ak[:m]}
    for sg, n, el in ek[:m]:
        _check_pair(turn, sg, el, partner[sg, n], exp, act, tol, st.pairs)
    st.offset += m
    # drop through the last compared record (terminal lines before it go too)
    exp.drop_prefix(turn, e_group, _position(e_lines, ek[m - 1][2]) + 1, [k[0] for k in ek[:m]])
    act.drop_prefix(turn, a_group, _position(a_lines, ak[m - 1][2]) + 1, [k[0] for k in ak[:m]])


def _position(lines: list[TimelineLine], line: TimelineLine) -> int:
    return next(i for i, ln in enumerate(lines) if ln is line)


def _compare_turn(turn: str | None, exp: _Side, act: _Side, tol: ReplayTolerances,
                  out: list[Divergence], settled: _Settled | None = None) -> None:
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
    e_group, a_group = exp.sorted_group(turn), act.sorted_group(turn)  # sorted once a side
    e_lines, a_lines = [ln for _, ln, _ in e_group], [ln for _, ln, _ in a_group]
    et, at = exp.terminal(turn, e_lines), act.terminal(turn, a_lines)
    if et != at:
        add(DivergenceClass.OUTCOME, "terminal outcome differs", et, at)
    etx, atx = exp.texts(turn, e_lines), act.texts(turn, a_lines)
    for node in sorted(set(etx) | set(atx), key=str):
        if etx.get(node) != atx.get(node):
            add(DivergenceClass.OUTCOME, f"output text of node {node} differs",
                etx.get(node), atx.get(node))
    ek, ak = exp.keyed(turn, e_group), act.keyed(turn, a_group)
    e_ids = {(s, n): ln for s, n, ln in ek}
    a_ids = {(s, n): ln for s, n, ln in ak}
    # in timeline order (a set difference would list them in hash order, run to run)
    for key in [(s, n) for s, n, _ in ek if (s, n) not in a_ids]:
        add(_class_of_missing(key[0]), f"missing in actual: {_describe(key[0])}",
            ids=(str(e_ids[key].record.get("event_id")),))
    for key in [(s, n) for s, n, _ in ak if (s, n) not in e_ids]:
        add(_class_of_missing(key[0]), f"unexpected in actual: {_describe(key[0])}",
            ids=(str(a_ids[key].record.get("event_id")),))
    common = e_ids.keys() & a_ids.keys()
    e_order = [(s, n) for s, n, _ in ek if (s, n) in common]
    a_order = [(s, n) for s, n, _ in ak if (s, n) in common]
    st = settled or _Settled()
    ordering = st.ordering or _ordering(turn, e_order, a_order, st.offset)
    if ordering is not None:
        out.append(ordering)
    out.extend(st.pairs)
    for key in e_order:
        _check_pair(turn, key[0], e_ids[key], a_ids[key], exp, act, tol, out)


def compare_timelines(
    expected: Iterable[object],
    actual: Iterable[object],
    *,
    tolerances: ReplayTolerances | None = None,
    policy: DivergencePolicy | None = None,
    mode: ReplayMode = ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS,
) -> DivergenceReport:
    """Compare two timelines (TimelineEntry, TimelineLine or line mappings)."""
    comparison = TurnwiseComparison(tolerances=tolerances, policy=policy, mode=mode,
                                    close_turns=False)
    for line in as_lines(expected):
        comparison.add_expected(line)
    for line in as_lines(actual):
        comparison.add_actual(line)
    return comparison.finish()


class TurnwiseComparison:
    """:func:`compare_timelines` fed line by line, comparing each turn once it is over.

    A turn is over on a side when that side has shown the terminals (commit/abort) of
    :data:`CLOSE_AFTER` later turns; a turn over on both sides is compared and its lines
    dropped, so a streamed replay keeps only the open turns. Everything else (the
    session-scoped group, turns without a terminal on a side) is compared by
    :meth:`finish`. The findings and their order are those of :func:`compare_timelines`
    as long as no record of a turn arrives after it is over (:attr:`late_lines` counts
    any that do) and the first record of a side carries its earliest timestamp.
    """

    CLOSE_AFTER = 2
    #: the session-scoped group is compared in prefixes once it holds this many records
    #: per side (the newest MARGIN stay for records that arrive slightly out of order)
    SETTLE_EVERY = 1024
    MARGIN = 256

    def __init__(self, *, tolerances: ReplayTolerances | None = None,
                 policy: DivergencePolicy | None = None,
                 mode: ReplayMode = ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS,
                 close_turns: bool = True) -> None:
        self.tol = tolerances or ReplayTolerances()
        self.policy = policy
        self.mode = mode
        self.close_turns = close_turns
        self.exp, self.act = _Side(), _Side()
        self.findings: dict[str | None, list[Divergence]] = {}
        self._late = 0
        self._settled = _Settled()
        self._settle_at = self.SETTLE_EVERY
        self._terminals: tuple[list[str], list[str]] = ([], [])
        self._over: tuple[set[str], set[str]] = (set(), set())
        #: turns over in the actual timeline and not (yet) in the expected one
        self._waiting: set[str] = set()

    def add_expected(self, line: TimelineLine) -> None:
        self._add(0, self.exp, line)

    def add_actual(self, line: TimelineLine) -> None:
        self._add(1, self.act, line)

    @property
    def waiting_for_expected(self) -> bool:
        """Turns over in the actual timeline that the expected one has not closed yet."""
        return bool(self._waiting)

    @property
    def late_lines(self) -> int:
        """Records that arrived after their turn (or an older part of the session scope)
        was compared; 0 means the report is exactly :func:`compare_timelines`'s."""
        return self._late + self.exp.late + self.act.late

    def _add(self, i: int, side: _Side, line: TimelineLine) -> None:
        turn = _group_of(line)
        if turn in self.findings and not _is_artifact(line):
            self._late += 1
        ended = side.add(line)
        if not self.close_turns or ended is None:
            return
        if ended is _SESSION:  # only a line of the session scope can make it settle
            sizes = (len(self.exp.groups.get(None, ())), len(self.act.groups.get(None, ())))
            if min(sizes) >= self._settle_at:
                _settle(None, self.exp, self.act, self.tol, self._settled, self.MARGIN)
                # a prefix that does not settle yet (a divergence): try again after more
                self._settle_at = min(len(self.exp.groups.get(None, ())),
                                      len(self.act.groups.get(None, ()))) + self.SETTLE_EVERY
            return
        if not isinstance(ended, str):
            return
        order = self._terminals[i]
        if ended in order:
            return
        order.append(ended)
        if len(order) > self.CLOSE_AFTER:
            over = order.pop(0)
            self._over[i].add(over)
            if i == 1 and over not in self._over[0]:
                self._waiting.add(over)
            elif i == 0:
                self._waiting.discard(over)
            if over in self._over[1 - i]:
                self._compare(over)

    def _compare(self, turn: str | None) -> None:
        out: list[Divergence] = []
        _compare_turn(turn, self.exp, self.act, self.tol, out,
                      self._settled if turn is None else None)
        self.findings[turn] = out
        self.exp.drop(turn)
        self.act.drop(turn)
        if turn is not None:
            self._over[0].discard(turn)
            self._over[1].discard(turn)
            self._waiting.discard(turn)

    def finish(self) -> DivergenceReport:
        """Compare what is left and build the report (turns in :func:`compare_timelines`
        order: session scope first, then by turn id)."""
        for turn in (self.exp.turns() | self.act.turns()) - set(self.findings):
            self._compare(turn)
        ordered = sorted(self.findings, key=lambda t: (t is not None, str(t)))
        return DivergenceReport.build(self.mode, [f for t in ordered for f in self.findings[t]],
                                      self.tol, self.policy)
