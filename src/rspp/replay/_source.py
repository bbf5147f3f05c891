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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from rspp.contracts import DecisionOutcome, OutcomeKind, RecordingLevel
from rspp.kernel import Event
from rspp.observability._timeline_io import TimelineLine, as_lines, read_timeline
from rspp.replay._codec import decode_event
from rspp.replay._errors import ReplayInputError
from rspp.replay._nodes import PlaybackStore, RecordedOutput

__all__ = ["IngressItem", "Recording", "load_recording"]

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

    def event(self, where: str) -> Event:
        if self.line.payload is None:
            raise ReplayInputError(f"{where}:{self.line.line}: ingress event has no payload")
        try:
            return decode_event(self.line.record, self.line.payload, f"{where}:{self.line.line}")
        except (ValueError, KeyError, msgspec.DecodeError) as exc:
            raise ReplayInputError(str(exc)) from exc


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
                if ln.payload is None:
                    raise ReplayInputError(
                        f"{where}: output of provider node {node!r} was recorded without its "
                        "payload (recording level too low); playback needs the payloads - "
                        "record at L2 or replay with --mode resimulate")
                m = _PARENT.match(str(ln.record.get("causal_parent_id")))
                port = str(ln.record.get("edge_id", "")).removeprefix(f"{node}.")
                try:
                    ev = decode_event(ln.record, ln.payload, where)
                except (ValueError, KeyError, msgspec.DecodeError) as exc:
                    raise ReplayInputError(str(exc)) from exc
                if m is not None:
                    turn = ln.record.get("turn_id")
                    store.add(node, RecordedOutput(port=port, event=ev,
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


def _int(line: TimelineLine, name: str, source: str) -> int:
    value = line.record.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReplayInputError(
            f"{source}:{line.line}: record.{name} must be an integer, got {value!r}")
    return value


def load_recording(path_or_lines: str | Path | Iterable[object]) -> Recording:
    """Decode a recording; raises :class:`ReplayInputError` on anything unusable."""
    if isinstance(path_or_lines, str | Path):
        source = str(path_or_lines)
        if not Path(source).is_file():
            raise ReplayInputError(f"{source}: no such timeline file; pass the path of a "
                                   "recorded timeline (.jsonl or .msgpack)")
        lines, errors = read_timeline(source)
        if errors:
            shown = "; ".join(str(e) for e in errors[:3])
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise ReplayInputError(f"{shown}{more}; every line must be "
                                   '{"kind": ..., "record": {...}, "payload": {...}?}')
    else:
        source = "<lines>"
        lines = as_lines(path_or_lines)
    if not lines:
        raise ReplayInputError(f"{source}: the timeline is empty; record a session first")
    identified = [ln for ln in lines if isinstance(ln.record.get("session_id"), str)
                  and isinstance(ln.record.get("pipeline_version"), str)]
    if not identified:
        raise ReplayInputError(f"{source}: no record carries record.session_id and "
                               "record.pipeline_version; they are required to replay a session")
    first = min(identified, key=lambda ln: (ln.record.get("runtime_sequence", 0), ln.line))
    session_id = str(first.record["session_id"])
    version = str(first.record["pipeline_version"])
    t0 = min((ln for ln in lines if isinstance(ln.record.get("wall_clock_timestamp_ms"), int)
              and isinstance(ln.record.get("runtime_timestamp_ms"), int)),
             key=lambda ln: ln.record["runtime_timestamp_ms"], default=None)
    if t0 is None:
        raise ReplayInputError(f"{source}: no record carries runtime_timestamp_ms and "
                               "wall_clock_timestamp_ms; the replay clock needs them")
    start_wall = int(t0.record["wall_clock_timestamp_ms"]) - int(t0.record["runtime_timestamp_ms"])
    plans = [ln for ln in lines if ln.kind == "resolved_turn_plan"]
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
    ingress: list[IngressItem] = []
    provider: dict[str, list[TimelineLine]] = {}
    decisions: dict[str, DecisionOutcome] = {}
    for ln in lines:
        rec = ln.record
        if ln.kind == "event_record":
            edge = str(rec.get("edge_id") or "")
            node = rec.get("node_id")
            # ingress: edge ``input.<port>`` (a routing decision on a conditional edge out
            # of an entry, ``input.<port>-><node>.<port>``, is telemetry, not input)
            if node is None and edge.startswith("input.") and "->" not in edge:
                ingress.append(IngressItem(0, _int(ln, "runtime_sequence", source),
                                           _int(ln, "runtime_timestamp_ms", source),
                                           edge.removeprefix("input."), ln))
            elif isinstance(node, str) and edge.startswith(f"{node}.") and \
                    _PARENT.match(str(rec.get("causal_parent_id"))):
                provider.setdefault(node, []).append(ln)
        elif ln.kind == "decision_outcome" and isinstance(rec.get("turn_id"), str):
            try:
                outcome = msgspec.convert(rec, DecisionOutcome)
            except msgspec.ValidationError as exc:
                raise ReplayInputError(f"{source}:{ln.line}: bad decision_outcome: {exc}") from exc
            if outcome.outcome_kind in _TURN_DECISIONS and outcome.turn_id is not None:
                decisions.setdefault(outcome.turn_id, outcome)
    if not ingress:
        raise ReplayInputError(
            f"{source}: no ingress events (event_record lines with edge_id 'input.<port>' and no "
            "node_id); a replay needs the recorded input: re-run it with `rspp run --record-level "
            "L2` (audio; `--record-level L1` keeps text input only)")
    ingress.sort(key=lambda it: (it.runtime_sequence, it.line.line))
    ingress = [IngressItem(i, it.runtime_sequence, it.runtime_ms, it.port, it.line)
               for i, it in enumerate(ingress)]
    for it in ingress:
        if it.line.payload is None:
            raise ReplayInputError(
                f"{source}:{it.line.line}: ingress event {it.line.record.get('event_id')!r} has "
                "no payload (recorded below the needed level): re-run it with `rspp run "
                f"--record-level {_needed_level(it.line.record)}`")
    walls: dict[str, int] = {}
    for ln in plans:
        for inp in (ln.record.get("determinism") or {}).get("nondeterministic_inputs") or ():
            ref = str(inp.get("evidence_ref", ""))
            if inp.get("input_key") == "turn_start_wall_ms" and ref.startswith("wall_ms:") \
                    and ref[8:].isdigit():
                walls[str(ln.record.get("turn_id"))] = int(ref[8:])
    ran_out = [str(ln.record.get("reason", "")) for ln in lines if ln.kind == "control_signal"
               and ln.record.get("signal") == "budget_exhausted"
               and str(ln.record.get("reason", "")).startswith("turn:")]
    enforced = None if not ran_out else not all(r.endswith(";outcome=continue") for r in ran_out)
    return Recording(source=source, lines=lines, session_id=session_id, turn_walls=walls,
                     allowed_modes=allowed, budgets_enforced=enforced,
                     pipeline_version=version, authority_epoch=epoch, start_wall_ms=start_wall,
                     recording_level=level, snapshot_refs=refs, ingress=ingress,
                     provider_lines=provider, decisions=decisions)


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
