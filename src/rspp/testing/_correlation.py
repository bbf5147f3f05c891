"""The turn-correlation rule of a recorded timeline, checked line by line (F-013).

:func:`turn_correlation` reads a timeline's lines (``{"kind", "record"}`` dicts, as
``rspp run --timeline`` and ``rspp serve --timeline-dir`` write them) and lists every
place where the rule of ``docs/correlation.md`` does not hold:

* every record carries the session's id (turn transitions excepted: the contract
  gives them no ids);
* every sequenced record from a turn's ``turn_open`` to its ``close`` carries that
  turn's id, whatever made it (ingress frame, node output, telemetry, signal);
* a turn's ingress frames - the speech that opened it, then the user's audio while it
  was open - are one unbroken run of input frames, and the run starts before its
  ``turn_open``;
* outside every turn a record carries no id, or the id of a proposal of this session
  (the utterance that led to it, or an outcome of that proposal): never a made-up one;
* decision outcomes, plans and OR-02 evidence of a turn name it.

The result also says which nodes left records naming each turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TurnCorrelation", "turn_correlation"]

_NAMED = ("decision_outcome", "resolved_turn_plan", "or02_evidence")
_PROPOSAL_SIGNALS = ("admit", "reject", "defer", "stale_epoch_reject", "deauthorized_drain")


@dataclass
class TurnCorrelation:
    """What :func:`turn_correlation` found: ``problems`` is empty when the rule holds."""

    session_id: str
    #: turn id -> runtime_sequence of its ``turn_open`` / ``close``
    opened: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    #: turn id -> node ids of the records naming it
    nodes: dict[str, set[str]] = field(default_factory=dict)
    #: turn id -> runtime sequences of the ingress frames naming it
    frames: dict[str, list[int]] = field(default_factory=dict)
    #: ingress frames naming no turn (silence outside every turn and utterance)
    unnamed_frames: int = 0
    problems: list[str] = field(default_factory=list)


def _seq(rec: Mapping[str, Any]) -> int | None:
    seq = rec.get("runtime_sequence")
    return seq if type(seq) is int else None


def turn_correlation(lines: Iterable[Mapping[str, Any]], session_id: str) -> TurnCorrelation:
    """Check the lines of one session's timeline (see the module docstring)."""
    items = [(str(ln.get("kind")), ln.get("record") or {}) for ln in lines]
    out = TurnCorrelation(session_id)
    proposals: set[str] = set()
    for kind, rec in items:
        tid, seq, sig = rec.get("turn_id"), _seq(rec), rec.get("signal")
        if sig == "turn_open" and seq is not None:
            out.opened[str(tid)] = seq
        elif sig == "close" and seq is not None:
            out.closed[str(tid)] = seq
        if isinstance(tid, str) and (kind == "decision_outcome" or sig in _PROPOSAL_SIGNALS):
            proposals.add(tid)
    spans = [(o, out.closed.get(t, 1 << 62), t) for t, o in out.opened.items()]
    known = proposals | set(out.opened)
    ingress: list[tuple[int, str | None]] = []
    for n, (kind, rec) in enumerate(items, start=1):
        where = f"line {n} ({kind} {rec.get('signal') or rec.get('edge_id') or ''})"
        tid, seq = rec.get("turn_id"), _seq(rec)
        if kind == "turn_transition":
            continue  # the contract gives transitions no session or turn id
        if rec.get("session_id") not in (None, session_id) or (
                kind != "resolved_turn_plan" and rec.get("session_id") is None):
            out.problems.append(f"{where}: session_id {rec.get('session_id')!r}")
        if kind in _NAMED:
            if tid not in known:
                out.problems.append(f"{where}: names no turn of the session ({tid!r})")
            continue
        if seq is None:
            out.problems.append(f"{where}: no runtime_sequence")
            continue
        inside = next((t for o, c, t in spans if o <= seq <= c), None)
        if inside is not None and tid != inside:
            out.problems.append(f"{where}: seq {seq} inside {inside} carries {tid!r}")
        elif inside is None and tid is not None and tid not in known:
            out.problems.append(f"{where}: seq {seq} outside every turn names {tid!r}")
        if isinstance(tid, str):
            node = rec.get("node_id")
            if isinstance(node, str):
                out.nodes.setdefault(tid, set()).add(node)
        edge = rec.get("edge_id")
        if isinstance(edge, str) and edge.startswith("input.") and rec.get("node_id") is None:
            ingress.append((seq, tid if isinstance(tid, str) else None))
            if isinstance(tid, str):
                out.frames.setdefault(tid, []).append(seq)
            else:
                out.unnamed_frames += 1
    order = [t for _, t in sorted(ingress, key=lambda x: x[0])]
    for tid, open_seq in out.opened.items():
        seqs = out.frames.get(tid, [])
        if not seqs or min(seqs) >= open_seq:
            out.problems.append(f"{tid}: no ingress frame before its turn_open (the speech "
                                "that opened it)")
            continue
        first = order.index(tid)
        if order[first:first + len(seqs)] != [tid] * len(seqs):
            out.problems.append(f"{tid}: its ingress frames are not one unbroken run")
    return out
