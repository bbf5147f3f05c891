"""What a replay reads from a recorded timeline (:class:`Recording`).

:func:`load_recording` decodes a timeline file (JSON Lines or MessagePack, via
:func:`~rspp.observability.read_timeline`) or already-read lines into:

* the session identity (session id, pipeline version, authority epoch, wall
  clock origin, snapshot references and recording level of the first plan) -
  the replay reuses them so seeds (derived from session and turn ids), plan
  hashes and timestamps are reproduced;
* the ingress events (``event_record`` on edge ``input.<port>``) in
  ``runtime_sequence`` order, with their payloads and recorded times;
* the provider-node outputs (edge ``<node>.<port>``, causal parent ``<node>#in<k>``);
* the recorded admission decisions per turn (for replay-decisions).

Anything missing or malformed raises :class:`ReplayInputError` naming the file,
line and field and saying how to fix the recording.
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from rspp.contracts import DecisionOutcome, OutcomeKind, RecordingLevel
from rspp.kernel import Event
from rspp.observability._compare import compare_view
from rspp.observability._errors import TimelineFormatError
from rspp.observability._evidence import EVIDENCE_KIND
from rspp.observability._timeline_io import TimelineLine, as_lines, iter_timeline
from rspp.replay._codec import decode_event
from rspp.replay._cursor import recording_digest
from rspp.replay._errors import ReplayInputError
from rspp.replay._nodes import PlaybackStore, RecordedOutput
from rspp.replay._transport import AUTHORITY_SIGNALS as _AUTHORITY_SIGNALS
from rspp.replay._transport import TRANSPORT_EMITTERS as _TRANSPORT_EMITTERS

__all__ = ["IngressItem", "LineFetcher", "Recording", "SessionSpan", "load_recording",
           "span_lines", "timeline_sessions"]

_PARENT = re.compile(r"^(?P<node>.+)#in(?P<k>\d+)$")
_REF = re.compile(r"^(?P<id>.+)@v(?P<ver>\d+)$")
_TURN_DECISIONS = {OutcomeKind.ADMIT, OutcomeKind.REJECT, OutcomeKind.DEFER}


@dataclass(frozen=True, slots=True)
class IngressItem:
    """One recorded ingress event: where and when it entered, and its payload."""

    index: int
    runtime_sequence: int
    runtime_ms: int
    port: str
    line: TimelineLine
    #: a streamed recording keeps a reduced line; its payload is read again when fed
    fetch: Callable[[int], TimelineLine] | None = None

    def event(self, where: str) -> Event:
        line = self.fetch(self.line.line) if self.fetch is not None else self.line
        if line.payload is None:
            raise ReplayInputError(f"{where}:{line.line}: ingress event has no payload")
        try:
            return decode_event(line.record, line.payload, f"{where}:{line.line}")
        except (ValueError, KeyError, msgspec.DecodeError) as exc:
            raise ReplayInputError(str(exc)) from exc


class LineFetcher:
    """A second streaming pass over a timeline file: hands out whole lines by number.

    The lines a streamed replay needs again (ingress events and provider outputs, with
    their payloads) are read forward in file order; a needed line passed before it is
    asked for (ingress slightly out of ``runtime_sequence`` order, the inputs between a
    node's input and its recorded output) waits in a buffer, so memory is bounded by
    that look-ahead, not by the file.
    """

    def __init__(self, path: str, needed: set[int], span: SessionSpan | None = None) -> None:
        self.path = path
        self.needed = needed
        self.span = span
        self.buffer: dict[int, TimelineLine] = {}
        self.peak = 0
        self._lines: Iterator[TimelineLine | TimelineFormatError] | None = None

    def __call__(self, number: int) -> TimelineLine:
        self.needed.discard(number)
        found = self.buffer.pop(number, None)
        if found is not None:
            return found
        if self._lines is None:
            self._lines = span_lines(self.path, self.span)
        for item in self._lines:
            if isinstance(item, TimelineFormatError):
                continue
            if item.line == number:
                return item
            if item.line in self.needed:
                self.buffer[item.line] = item
                self.peak = max(self.peak, len(self.buffer))
        raise ReplayInputError(f"{self.path}:{number}: the line is gone; the timeline file "
                               "changed while it was replayed")

    def close(self) -> None:
        lines, self._lines = self._lines, None
        if isinstance(lines, Generator):
            lines.close()
        self.buffer.clear()


@dataclass(frozen=True, slots=True)
class SessionSpan:
    """Where one session's lines are in a many-session timeline file."""

    session_id: str
    start: tuple[int, int]  # byte offset of its first line, line number before it
    last_line: int


def timeline_sessions(path: str | Path) -> list[SessionSpan]:
    """The sessions of a timeline file in order of first appearance (one pass over the
    records, payloads skipped; memory per session, not per line)."""
    offsets = [0]
    spans: dict[str, tuple[tuple[int, int], int]] = {}
    current: str | None = None
    for item in iter_timeline(path, payloads=False, offsets=offsets):
        if isinstance(item, TimelineFormatError):
            continue
        sid = item.record.get("session_id")
        if isinstance(sid, str):
            current = sid
        if current is not None:  # a record without session_id (a plan) joins the one before
            first = spans[current][0] if current in spans else (offsets[0], item.line - 1)
            spans[current] = (first, item.line)
    return [SessionSpan(sid, start, last) for sid, (start, last) in spans.items()]


def span_lines(path: str, span: SessionSpan | None) -> Iterator[TimelineLine | TimelineFormatError]:
    """The lines of one session of a file (all lines without ``span``)."""
    if span is None:
        yield from iter_timeline(path)
        return
    current: object = None
    for item in iter_timeline(path, start=span.start):
        if isinstance(item, TimelineFormatError):
            yield item
            continue
        if item.line > span.last_line:
            return
        sid = item.record.get("session_id")
        if isinstance(sid, str):
            current = sid
        if current == span.session_id:  # records without session_id: as in timeline_sessions
            yield item


@dataclass(slots=True)
class Recording:
    """A decoded recording (see the module docstring)."""

    source: str
    lines: list[TimelineLine]
    session_id: str
    pipeline_version: str
    authority_epoch: int
    start_wall_ms: int
    recording_level: RecordingLevel | None
    snapshot_refs: tuple[tuple[str, str, int], ...]
    ingress: list[IngressItem]
    provider_lines: dict[str, list[TimelineLine]] = field(default_factory=dict)
    decisions: dict[str, DecisionOutcome] = field(default_factory=dict)
    #: recorded turn-start wall clock per turn (plan determinism input ``turn_start_wall_ms``)
    turn_walls: dict[str, int] = field(default_factory=dict)
    #: ``recording_policy.allowed_replay_modes`` of the first plan (empty: not stated)
    allowed_modes: tuple[str, ...] = ()
    #: how the recording's turn budgets ended when one ran out: False (reported only,
    #: ``outcome=continue``: a file run that is not real time), True (enforced), None
    #: (no budget ran out); a replay does the same
    budgets_enforced: bool | None = None
    #: streamed (``load_recording(path, stream=True)``): :attr:`lines` holds only the
    #: first plan, the control signals the engine replays (transport signals, turn
    #: proposals, a hang-up) and the evidence's provider invocations, the
    #: comparison reads the file again (:meth:`expected_lines`) and payloads are read
    #: again when fed
    fetcher: LineFetcher | None = None
    #: the session of a many-session file this recording is (streamed recordings)
    span: SessionSpan | None = None
    #: identity of the ingress stream (:class:`~rspp.replay.ReplayCursor` matching)
    ingress_digest: str = ""
    #: lines (numbers) of provider outputs recorded without their payload
    no_payload: frozenset[int] = frozenset()

    def expected_lines(self) -> Iterator[TimelineLine]:
        """The recorded timeline for the comparison, line by line (a streamed recording
        reads its file again and yields the comparator's views)."""
        if self.fetcher is None:
            yield from self.lines
            return
        for item in span_lines(self.source, self.span):
            if not isinstance(item, TimelineFormatError):
                yield compare_view(item)

    def close(self) -> None:
        """Close the file of a streamed recording."""
        if self.fetcher is not None:
            self.fetcher.close()

    @property
    def turn_ids(self) -> list[str]:
        return [str(ln.record["turn_id"]) for ln in self.lines
                if ln.kind == "resolved_turn_plan" and ln.record.get("turn_id")]

    def playback_store(self, provider_nodes: Iterable[str]) -> PlaybackStore:
        """Recorded outputs of ``provider_nodes``; raises when one has none with payloads."""
        store = PlaybackStore()
        ingress_seqs = [it.runtime_sequence for it in self.ingress]
        nodes = sorted(set(provider_nodes))
        if nodes and self.turn_ids and not any(self.provider_lines.get(n) for n in nodes):
            raise ReplayInputError(
                f"{self.source}: no recorded outputs of the provider nodes {nodes} (records on "
                "edge '<node>.<port>' with causal_parent_id '<node>#in<k>'); playback needs a "
                "recording made with provider outputs: re-run it with `rspp run --record-level L2` "
                "(L1 keeps text only), or replay with --mode resimulate")
        for node in nodes:
            lines = self.provider_lines.get(node, [])
            for ln in lines:
                where = f"{self.source}:{ln.line}"
                if (ln.line in self.no_payload) if self.fetcher is not None \
                        else ln.payload is None:
                    raise ReplayInputError(
                        f"{where}: output of provider node {node!r} was recorded without its "
                        "payload (recording level too low); playback needs the payloads - "
                        "record at L2 or replay with --mode resimulate")
                m = _PARENT.match(str(ln.record.get("causal_parent_id")))
                port = str(ln.record.get("edge_id", "")).removeprefix(f"{node}.")
                ev: Event | None = None
                load: Callable[[], Event] | None = None
                if self.fetcher is None:
                    ev = _decode(ln, where)
                else:  # read again when served (only what playback serves is needed)
                    self.fetcher.needed.add(ln.line)
                    load = partial(_fetch_event, self.fetcher, ln.line, where)
                if m is not None:
                    turn = ln.record.get("turn_id")
                    store.add(node, RecordedOutput(port=port, event=ev, load=load,
                                                   input_ordinal=int(m["k"]),
                                                   turn_id=turn if isinstance(turn, str) else None,
                                                   runtime_ms=int(ln.record.get(
                                                       "runtime_timestamp_ms", 0)),
                                                   runtime_sequence=int(ln.record.get(
                                                       "runtime_sequence", 0)),
                                                   after_ingress=bisect.bisect_left(
                                                       ingress_seqs,
                                                       int(ln.record.get("runtime_sequence", 0)))))
        return store


def _decode(line: TimelineLine, where: str) -> Event:
    try:
        return decode_event(line.record, line.payload or {}, where)
    except (ValueError, KeyError, msgspec.DecodeError) as exc:
        raise ReplayInputError(str(exc)) from exc


def _fetch_event(fetch: LineFetcher, number: int, where: str) -> Event:
    return _decode(fetch(number), where)


def _int(line: TimelineLine, name: str, source: str) -> int:
    value = line.record.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReplayInputError(
            f"{source}:{line.line}: record.{name} must be an integer, got {value!r}")
    return value


def load_recording(path_or_lines: str | Path | Iterable[object], *,
                   stream: bool = False, span: SessionSpan | None = None) -> Recording:
    """Decode a recording; raises :class:`ReplayInputError` on anything unusable.

    With ``stream`` (a file only) the file is read once line by line and only what the
    replay compares is kept (:func:`~rspp.observability.compare_view` of each line);
    ingress and provider payloads are read again, in file order, when they are fed.
    ``span`` (streamed only; see :func:`timeline_sessions`) reads one session of a
    many-session file.
    """
    errors: list[TimelineFormatError] = []
    n_errors = 0
    items: Iterable[TimelineLine | TimelineFormatError]
    if isinstance(path_or_lines, str | Path):
        source = str(path_or_lines)
        if not Path(source).is_file():
            raise ReplayInputError(f"{source}: no such timeline file; pass the path of a "
                                   "recorded timeline (.jsonl or .msgpack)")
        items = span_lines(source, span if stream else None)
    else:
        source = "<lines>"
        stream = False
        items = as_lines(path_or_lines)
    lines: list[TimelineLine] = []
    first: TimelineLine | None = None
    t0: TimelineLine | None = None
    plans: list[TimelineLine] = []
    ingress: list[IngressItem] = []
    provider: dict[str, list[TimelineLine]] = {}
    decisions: dict[str, DecisionOutcome] = {}
    no_payload: set[int] = set()
    ran_out: list[str] = []
    walls: dict[str, int] = {}
    count = 0
    bare: dict[int, str] = {}  # ingress lines without payload -> the level that keeps it
    pending: ReplayInputError | None = None  # the first bad record, raised after the checks
    for item in items:
        if isinstance(item, TimelineFormatError):
            n_errors += 1
            if len(errors) < 3:
                errors.append(item)
            continue
        ln = item
        rec = ln.record
        if isinstance(rec.get("session_id"), str) and isinstance(rec.get("pipeline_version"), str) \
                and (first is None or (rec.get("runtime_sequence", 0), ln.line)
                     < (first.record.get("runtime_sequence", 0), first.line)):
            first = ln
        if isinstance(rec.get("wall_clock_timestamp_ms"), int) \
                and isinstance(rec.get("runtime_timestamp_ms"), int) \
                and (t0 is None or rec["runtime_timestamp_ms"] < t0.record["runtime_timestamp_ms"]):
            t0 = ln
        kept = compare_view(ln) if stream else ln
        if ln.kind == "resolved_turn_plan":
            _wall(ln, walls)
            if not stream or not plans:
                plans.append(kept)
        elif ln.kind == "event_record":
            edge = str(rec.get("edge_id") or "")
            node = rec.get("node_id")
            # ingress: edge ``input.<port>`` (a routing decision on a conditional edge out
            # of an entry, ``input.<port>-><node>.<port>``, is telemetry, not input)
            if node is None and edge.startswith("input.") and "->" not in edge:
                if ln.payload is None:
                    bare[ln.line] = _needed_level(rec)
                try:
                    ingress.append(IngressItem(0, _int(ln, "runtime_sequence", source),
                                               _int(ln, "runtime_timestamp_ms", source),
                                               sys.intern(edge.removeprefix("input.")),
                                               _stub(ln) if stream else ln))
                except ReplayInputError as exc:
                    pending = pending or exc
            elif isinstance(node, str) and edge.startswith(f"{node}.") and \
                    _PARENT.match(str(rec.get("causal_parent_id"))):
                if ln.payload is None:
                    no_payload.add(ln.line)
                provider.setdefault(node, []).append(
                    compare_view_with_parent(ln) if stream else ln)
        elif ln.kind == "decision_outcome" and isinstance(rec.get("turn_id"), str):
            try:
                outcome = msgspec.convert(rec, DecisionOutcome)
            except msgspec.ValidationError as exc:
                pending = pending or ReplayInputError(
                    f"{source}:{ln.line}: bad decision_outcome: {exc}")
                count += 1
                continue
            if outcome.outcome_kind in _TURN_DECISIONS and outcome.turn_id is not None:
                decisions.setdefault(outcome.turn_id, outcome)
        elif ln.kind == "control_signal" and rec.get("signal") == "budget_exhausted" \
                and str(rec.get("reason", "")).startswith("turn:"):
            ran_out.append(str(rec.get("reason", "")))
        count += 1
        if not stream:
            lines.append(ln)
        elif kept is first_plan_of(plans) or (ln.kind == "control_signal"
                                            and _replayed_signal(rec)):
            lines.append(kept)
        elif ln.kind == EVIDENCE_KIND:  # the recorded transport serves its invocations
            lines.append(TimelineLine(line=ln.line, kind=ln.kind, record={
                "turn_id": rec.get("turn_id"),
                "provider_invocations": rec.get("provider_invocations")}))
    if errors:
        shown = "; ".join(str(e) for e in errors)
        more = f" (and {n_errors - 3} more)" if n_errors > 3 else ""
        raise ReplayInputError(f"{shown}{more}; every line must be "
                               '{"kind": ..., "record": {...}, "payload": {...}?}')
    if not count:
        raise ReplayInputError(f"{source}: the timeline is empty; record a session first")
    if first is None:
        raise ReplayInputError(f"{source}: no record carries record.session_id and "
                               "record.pipeline_version; they are required to replay a session")
    session_id = str(first.record["session_id"])
    version = str(first.record["pipeline_version"])
    if t0 is None:
        raise ReplayInputError(f"{source}: no record carries runtime_timestamp_ms and "
                               "wall_clock_timestamp_ms; the replay clock needs them")
    start_wall = int(t0.record["wall_clock_timestamp_ms"]) - int(t0.record["runtime_timestamp_ms"])
    epoch = 1
    allowed: tuple[str, ...] = ()
    level: RecordingLevel | None = None
    refs: tuple[tuple[str, str, int], ...] = ()
    if plans:
        plan = plans[0].record
        epoch = int(plan.get("authority_epoch", 1))
        raw_level = (plan.get("recording_policy") or {}).get("recording_level")
        if isinstance(raw_level, str) and raw_level in {lv.value for lv in RecordingLevel}:
            level = RecordingLevel(raw_level)
        refs = tuple(_refs(plan.get("snapshot_provenance") or {}))
        allowed = tuple(str(m) for m in
                        (plan.get("recording_policy") or {}).get("allowed_replay_modes") or ())
    if pending is not None:
        raise pending
    if not ingress:
        raise ReplayInputError(
            f"{source}: no ingress events (event_record lines with edge_id 'input.<port>' and no "
            "node_id); a replay needs the recorded input: re-run it with `rspp run --record-level "
            "L2` (audio; `--record-level L1` keeps text input only)")
    ingress.sort(key=lambda it: (it.runtime_sequence, it.line.line))
    for it in ingress:
        if it.line.line in bare:
            raise ReplayInputError(
                f"{source}:{it.line.line}: ingress event {it.line.record.get('event_id')!r} has "
                "no payload (recorded below the needed level): re-run it with `rspp run "
                f"--record-level {bare[it.line.line]}`")
    fetcher = None
    if stream:
        fetcher = LineFetcher(source, {it.line.line for it in ingress}, span)
    digest = recording_digest(session_id, [str(it.line.record.get("event_id"))
                                           for it in ingress])
    ingress = [IngressItem(i, it.runtime_sequence, it.runtime_ms, it.port,
                           TimelineLine(line=it.line.line, kind=it.line.kind, record=_NO_RECORD)
                           if stream else it.line, fetcher)
               for i, it in enumerate(ingress)]
    enforced = None if not ran_out else not all(r.endswith(";outcome=continue") for r in ran_out)
    return Recording(source=source, lines=lines, session_id=session_id, turn_walls=walls,
                     allowed_modes=allowed, budgets_enforced=enforced,
                     pipeline_version=version, authority_epoch=epoch, start_wall_ms=start_wall,
                     recording_level=level, snapshot_refs=refs, ingress=ingress,
                     provider_lines=provider, decisions=decisions, fetcher=fetcher,
                     ingress_digest=digest, span=span if stream else None,
                     no_payload=frozenset(no_payload))


def _replayed_signal(rec: dict[str, Any]) -> bool:
    """A control signal the replay engine reads from the recording: transport signals,
    lease rotations, turn proposals (a non-audio input's turn opens there) and a hang-up's
    abort."""
    return rec.get("emitted_by") in _TRANSPORT_EMITTERS or \
        rec.get("signal") in _AUTHORITY_SIGNALS or \
        rec.get("signal") == "turn_open_proposed" or \
        (rec.get("signal") == "abort" and rec.get("reason") == "session_end")


def first_plan_of(plans: list[TimelineLine]) -> TimelineLine | None:
    return plans[0] if plans else None


def _wall(plan: TimelineLine, walls: dict[str, int]) -> None:
    """The plan's captured turn-start wall clock (``turn_start_wall_ms``), if any."""
    for inp in (plan.record.get("determinism") or {}).get("nondeterministic_inputs") or ():
        ref = str(inp.get("evidence_ref", ""))
        if inp.get("input_key") == "turn_start_wall_ms" and ref.startswith("wall_ms:") \
                and ref[8:].isdigit():
            walls[str(plan.record.get("turn_id"))] = int(ref[8:])


_NO_RECORD: dict[str, Any] = {}


def _stub(line: TimelineLine) -> TimelineLine:
    """What a streamed recording keeps of an ingress line: its number and event id."""
    return TimelineLine(line=line.line, kind=line.kind,
                        record={"event_id": line.record.get("event_id")})


_PLAYBACK_FIELDS = ("causal_parent_id", "edge_id", "turn_id", "runtime_timestamp_ms",
                   "runtime_sequence")


def compare_view_with_parent(line: TimelineLine) -> TimelineLine:
    """What a streamed recording keeps of a provider output: the fields playback needs
    (strings interned: a long recording repeats the same few)."""
    rec = {k: sys.intern(v) if isinstance(v, str) else v
           for k in _PLAYBACK_FIELDS if (v := line.record.get(k)) is not None}
    return TimelineLine(line=line.line, kind=line.kind, record=rec)


def _needed_level(record: dict[str, Any]) -> str:
    """The recording level that keeps this ingress event's payload (audio: L2, text: L1)."""
    return "L2" if record.get("payload_class") == "audio_raw" else "L1"


def _refs(provenance: dict[str, Any]) -> list[tuple[str, str, int]]:
    out = []
    for key, ref in provenance.items():
        m = _REF.match(str(ref))
        if m is not None and key.endswith("_snapshot"):
            out.append((key.removesuffix("_snapshot"), m["id"], int(m["ver"])))
    return out
