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
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, overload

import msgspec

from rspp.contracts import DecisionOutcome, OutcomeKind, RecordingLevel
from rspp.kernel import Event
from rspp.observability._compare import compare_view
from rspp.observability._errors import TimelineFormatError
from rspp.observability._evidence import EVIDENCE_KIND
from rspp.observability._timeline_io import TimelineLine, as_lines
from rspp.replay._capabilities import TurnCapabilities, collect_capabilities
from rspp.replay._codec import decode_event
from rspp.replay._cursor import recording_digest
from rspp.replay._errors import ReplayInputError
from rspp.replay._flushes import FLUSH_FIELDS
from rspp.replay._line_fetcher import LineFetcher
from rspp.replay._nodes import PlaybackStore, RecordedOutput
from rspp.replay._spans import (
    SessionFinder,
    SessionSpan,
    index_lines,
    span_lines,
    timeline_sessions,
)
from rspp.replay._transport import AUTHORITY_SIGNALS as _AUTHORITY_SIGNALS
from rspp.replay._transport import TRANSPORT_EMITTERS as _TRANSPORT_EMITTERS
from rspp.turns._late_events import is_late_event_record

__all__ = ["IngressIndex", "IngressItem", "LineFetcher", "Recording", "SessionSpan",
           "load_recording", "span_lines", "timeline_sessions"]

_PARENT = re.compile(r"^(?P<node>.+)#in(?P<k>\d+)$")
_REF = re.compile(r"^(?P<id>.+)@v(?P<ver>\d+)$")
_TURN_DECISIONS = {OutcomeKind.ADMIT, OutcomeKind.REJECT, OutcomeKind.DEFER}
_NO_RECORD: dict[str, Any] = {}  # a streamed ingress item's line: its number only


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
        return _ingress_event(self.fetch(self.line.line) if self.fetch is not None
                              else self.line, where)


def _ingress_event(line: TimelineLine, where: str) -> Event:
    """The event of a recorded ingress line (``where``: the file)."""
    if line.payload is None:
        raise ReplayInputError(f"{where}:{line.line}: ingress event has no payload")
    try:
        return decode_event(line.record, line.payload, f"{where}:{line.line}")
    except (ValueError, KeyError, msgspec.DecodeError) as exc:
        raise ReplayInputError(str(exc)) from exc


class IngressIndex(Sequence[IngressItem]):
    """A recording's ingress events in replay order (``runtime_sequence``, then line).

    Kept in arrays (a long recording has one per 20 ms audio frame): an
    :class:`IngressItem` is made when one is asked for. A streamed recording keeps no
    line (the item's line is a stub naming its number; the fetcher reads it again), a
    decoded one keeps each whole line.
    """

    __slots__ = ("_lines", "_numbers", "_port", "_ports", "event_ids", "fetch", "sequences",
                 "times")

    def __init__(self, *, keep_lines: bool) -> None:
        self.sequences = array("q")
        self.times = array("q")
        self._numbers = array("q")
        self._port = array("H")
        self._ports: list[str] = []
        self._lines: list[TimelineLine] | None = [] if keep_lines else None
        #: recorded event ids while loading (the digest); None once it is taken
        self.event_ids: list[object] | None = []
        self.fetch: LineFetcher | None = None

    def append(self, sequence: int, ms: int, port: str, line: TimelineLine) -> None:
        if port not in self._ports:
            self._ports.append(port)
        self.sequences.append(sequence)
        self.times.append(ms)
        self._numbers.append(line.line)
        self._port.append(self._ports.index(port))
        if self.event_ids is not None:
            self.event_ids.append(line.record.get("event_id"))
        if self._lines is not None:
            self._lines.append(line)

    @property
    def line_numbers(self) -> array[int]:
        return self._numbers

    def sort(self) -> None:
        """Into replay order (a recording is usually in it already)."""
        seqs, numbers = self.sequences, self._numbers
        n = len(seqs)
        if all((seqs[i], numbers[i]) <= (seqs[i + 1], numbers[i + 1]) for i in range(n - 1)):
            return
        order = sorted(range(n), key=lambda i: (seqs[i], numbers[i]))
        for name in ("sequences", "times", "_numbers", "_port"):
            old = getattr(self, name)
            setattr(self, name, array(old.typecode, (old[i] for i in order)))
        if self.event_ids is not None:
            self.event_ids = [self.event_ids[i] for i in order]
        if self._lines is not None:
            self._lines = [self._lines[i] for i in order]

    def __len__(self) -> int:
        return len(self.sequences)

    def fields(self, index: int) -> tuple[int, int, str]:
        """``(runtime_sequence, runtime_ms, port)`` of ``self[index]`` without making it."""
        return self.sequences[index], self.times[index], self._ports[self._port[index]]

    def event_at(self, index: int, where: str) -> Event:
        """``self[index].event(where)`` without making the item (the replay's feed loop)."""
        if self._lines is not None or self.fetch is None:
            return self[index].event(where)
        return _ingress_event(self.fetch(self._numbers[index]), where)

    def input_sequences(self) -> list[tuple[int, str]]:
        """``(runtime_sequence, port)`` of every ingress event that is not audio."""
        ports = self._ports
        return [(self.sequences[i], ports[p]) for i, p in enumerate(self._port)
                if ports[p] != "audio"]

    def __iter__(self) -> Iterator[IngressItem]:
        return (self[i] for i in range(len(self)))

    @overload
    def __getitem__(self, index: int) -> IngressItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[IngressItem]: ...

    def __getitem__(self, index: int | slice) -> IngressItem | list[IngressItem]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        line = self._lines[index] if self._lines is not None else TimelineLine(
            line=self._numbers[index], kind="event_record", record=_NO_RECORD)
        return IngressItem(index, self.sequences[index], self.times[index],
                           self._ports[self._port[index]], line, self.fetch)


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
    ingress: Sequence[IngressItem]
    provider_lines: dict[str, list[TimelineLine]] = field(default_factory=dict)
    decisions: dict[str, DecisionOutcome] = field(default_factory=dict)
    #: recorded turn-start wall clock per turn (plan determinism input ``turn_start_wall_ms``)
    turn_walls: dict[str, int] = field(default_factory=dict)
    #: recorded capability snapshots per turn (plan inputs ``capability:*``, F-161)
    turn_capabilities: dict[str, TurnCapabilities] = field(default_factory=dict)
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
    #: the sessions of the file (a streamed recording read whole, without ``span``: found
    #: in the same pass, see :func:`timeline_sessions`); more than one: replay by span
    sessions: tuple[SessionSpan, ...] = ()

    def expected_lines(self) -> Iterator[TimelineLine]:
        """The recorded timeline for the comparison, line by line (a streamed recording
        reads its file again and yields the comparator's views)."""
        if self.fetcher is None:
            yield from self.lines
            return
        # the comparator reads a record's fields by name: the decoded record serves as it
        # is; of a payload only its text is decoded (see compare_view)
        for item in span_lines(self.source, self.span, payloads="text"):
            if not isinstance(item, TimelineFormatError):
                yield item

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
        ingress_seqs: Sequence[int] = (
            self.ingress.sequences if isinstance(self.ingress, IngressIndex)
            else [it.runtime_sequence for it in self.ingress])
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
                    if ln.record.get("event_scope") == "session":
                        turn = None  # a correlation id (F-013), not a turn the node learnt
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
    offsets = [0]
    finder: SessionFinder | None = None
    if isinstance(path_or_lines, str | Path):
        source = str(path_or_lines)
        if not Path(source).is_file():
            raise ReplayInputError(f"{source}: no such timeline file; pass the path of a "
                                   "recorded timeline (.jsonl or .msgpack)")
        if stream and span is None:  # the file's sessions are found in the same pass
            finder = SessionFinder()
        # streamed: payloads are read again when fed; here only whether a line has one
        items = index_lines(source, span, offsets if finder is not None else None) \
            if stream else span_lines(source, None)
    else:
        source = "<lines>"
        stream = False
        items = as_lines(path_or_lines)
    lines: list[TimelineLine] = []
    first: TimelineLine | None = None
    t0: TimelineLine | None = None
    plans: list[TimelineLine] = []
    ingress = IngressIndex(keep_lines=not stream)
    provider: dict[str, list[TimelineLine]] = {}
    decisions: dict[str, DecisionOutcome] = {}
    no_payload: set[int] = set()
    ran_out: list[str] = []
    walls: dict[str, int] = {}
    caps: dict[str, TurnCapabilities] = {}
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
        if finder is not None:
            finder.see(ln, offsets[0])
        if isinstance(rec.get("session_id"), str) and isinstance(rec.get("pipeline_version"), str) \
                and (first is None or (rec.get("runtime_sequence", 0), ln.line)
                     < (first.record.get("runtime_sequence", 0), first.line)):
            first = ln
        if isinstance(rec.get("wall_clock_timestamp_ms"), int) \
                and isinstance(rec.get("runtime_timestamp_ms"), int) \
                and (t0 is None or rec["runtime_timestamp_ms"] < t0.record["runtime_timestamp_ms"]):
            t0 = ln
        if ln.kind == "resolved_turn_plan":
            _wall(ln, walls)
            collect_capabilities(ln.record, caps)
            if not stream or not plans:
                plans.append(compare_view(ln) if stream else ln)
        elif ln.kind == "event_record":
            edge = str(rec.get("edge_id") or "")
            node = rec.get("node_id")
            # ingress: edge ``input.<port>`` (a routing decision on a conditional edge out
            # of an entry, ``input.<port>-><node>.<port>``, is telemetry, not input)
            # (an in-band metric of an entry's queue, TelemetryLane, is not input either)
            if node is None and edge.startswith("input.") and "->" not in edge \
                    and rec.get("lane") != "TelemetryLane":
                if ln.payload is None:
                    bare[ln.line] = _needed_level(rec)
                try:
                    ingress.append(_int(ln, "runtime_sequence", source),
                                   _int(ln, "runtime_timestamp_ms", source),
                                   edge.removeprefix("input."), ln)
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
        elif plans and plans[0].line == ln.line:
            lines.append(plans[0])  # the first plan
        elif ln.kind == "control_signal" and is_late_event_record(rec):
            lines.append(ln)  # a late arrival, fed again whole (rspp.turns._late_events)
        elif ln.kind == "control_signal" and _replayed_signal(rec):
            lines.append(compare_view(ln))
        elif ln.kind == "control_signal" and rec.get("signal") == "drop_notice":
            # a cancellation flush is replayed as recorded (rspp.replay._flushes)
            lines.append(TimelineLine(line=ln.line, kind=ln.kind, record={
                k: rec[k] for k in FLUSH_FIELDS if k in rec}))
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
    ingress.sort()
    event_ids = ingress.event_ids or []
    ingress.event_ids = None
    for number, event_id in zip(ingress.line_numbers, event_ids, strict=True):
        if number in bare:
            raise ReplayInputError(
                f"{source}:{number}: ingress event {event_id!r} has "
                "no payload (recorded below the needed level): re-run it with `rspp run "
                f"--record-level {bare[number]}`")
    fetcher = None
    if stream:
        fetcher = ingress.fetch = LineFetcher(source, ingress.line_numbers, span)
    digest = recording_digest(session_id, [str(e) for e in event_ids])
    del event_ids
    enforced = None if not ran_out else not all(r.endswith(";outcome=continue") for r in ran_out)
    return Recording(source=source, lines=lines, session_id=session_id, turn_walls=walls,
                     turn_capabilities=caps,
                     allowed_modes=allowed, budgets_enforced=enforced,
                     pipeline_version=version, authority_epoch=epoch, start_wall_ms=start_wall,
                     recording_level=level, snapshot_refs=refs, ingress=ingress,
                     provider_lines=provider, decisions=decisions, fetcher=fetcher,
                     ingress_digest=digest, span=span if stream else None,
                     no_payload=frozenset(no_payload),
                     sessions=tuple(finder.spans()) if finder is not None else ())


def _replayed_signal(rec: dict[str, Any]) -> bool:
    """A control signal the replay engine reads from the recording: transport signals,
    lease rotations, turn proposals (a non-audio input's turn opens there) and a hang-up's
    abort."""
    return rec.get("emitted_by") in _TRANSPORT_EMITTERS or \
        rec.get("signal") in _AUTHORITY_SIGNALS or \
        rec.get("signal") == "turn_open_proposed" or \
        (rec.get("signal") == "abort" and rec.get("reason") == "session_end")


def _wall(plan: TimelineLine, walls: dict[str, int]) -> None:
    """The plan's captured turn-start wall clock (``turn_start_wall_ms``), if any."""
    for inp in (plan.record.get("determinism") or {}).get("nondeterministic_inputs") or ():
        ref = str(inp.get("evidence_ref", ""))
        if inp.get("input_key") == "turn_start_wall_ms" and ref.startswith("wall_ms:") \
                and ref[8:].isdigit():
            walls[str(plan.record.get("turn_id"))] = int(ref[8:])


_PLAYBACK_FIELDS = ("causal_parent_id", "edge_id", "turn_id", "event_scope",
                    "runtime_timestamp_ms", "runtime_sequence")


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
