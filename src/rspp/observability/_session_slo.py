"""Per-session isolation under pooling (F-105): each session against its own bounds.

The seven gates (:mod:`rspp.observability._slo`) pool every turn of every session into
one percentile, so one starved session among many passes them. This view takes the
same per-turn samples, groups them by session and checks each session on its own:

- queue: ``pool_wait_max_ms`` bounds the longest total wait of any one of its turns for
  shared execution-pool slots (the OR-02 evidence's ``pool_wait_ms``, written by pooled
  runtimes: ``rspp serve --pool-limit``); a maximum, not a percentile: one starved turn
  is one the user felt;
- latency: ``first_output_p95_ms`` and ``end_to_end_p95_ms`` bound the session's own
  nearest-rank p95 of gates 2 and 7 (with fewer than 20 turns that is its slowest turn).

A bound left unset is not checked. A session breaks a bound -> a one-line breach naming
the session (and, for the queue, the turn); ``rspp slo report --per-session`` exits 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from rspp.observability._evidence import EVIDENCE_KIND
from rspp.observability._slo import (
    GATES,
    GateAccumulator,
    GateDef,
    GateReport,
    TurnGateSample,
    percentile,
)
from rspp.observability._timeline_io import TimelineLine

__all__ = ["SessionBounds", "SessionVerdict", "evaluate_sessions"]


class SessionBounds(msgspec.Struct, frozen=True, kw_only=True):
    """What each session must meet on its own, ms (None: not checked)."""

    pool_wait_max_ms: float | None = None
    first_output_p95_ms: float | None = None
    end_to_end_p95_ms: float | None = None

    def merged(self, overrides: Mapping[str, float | None]) -> SessionBounds:
        """These bounds with the ``overrides`` that are set (command-line options)."""
        return msgspec.structs.replace(self, **{k: v for k, v in overrides.items()
                                                if v is not None})


class SessionVerdict(msgspec.Struct, kw_only=True):
    """One session's turn latency and pool queueing against :class:`SessionBounds`."""

    session_id: str
    #: accepted turns (``turn_open``)
    turns: int
    #: turns whose evidence carries a pool wait (0: the session ran without a pool)
    pooled_turns: int
    pool_wait_max_ms: float | None
    pool_wait_total_ms: float | None
    #: the turn that waited longest
    pool_wait_turn: str | None
    first_output_p95_ms: float | None
    end_to_end_p95_ms: float | None
    breaches: list[str] = msgspec.field(default_factory=list)
    passed: bool = msgspec.field(name="pass", default=True)


def _verdict(session_id: str, samples: list[TurnGateSample], waits: dict[str, int],
             bounds: SessionBounds) -> SessionVerdict:
    accepted = [s for s in samples if s.accepted]
    first = percentile([s.first_output_ms for s in accepted if s.first_output_ms is not None],
                       95)
    e2e = percentile([s.end_to_end_ms for s in accepted if s.end_to_end_ms is not None], 95)
    worst = max(waits.items(), key=lambda item: (item[1], item[0]), default=None)
    v = SessionVerdict(
        session_id=session_id, turns=len(accepted), pooled_turns=len(waits),
        pool_wait_max_ms=float(worst[1]) if worst else None,
        pool_wait_total_ms=float(sum(waits.values())) if waits else None,
        pool_wait_turn=worst[0] if worst else None, first_output_p95_ms=first,
        end_to_end_p95_ms=e2e)
    bound = bounds.pool_wait_max_ms
    if bound is not None and worst is not None and worst[1] > bound:
        v.breaches.append(f"session {session_id}: turn {worst[0]} waited {worst[1]} ms for "
                          f"pool slots > pool_wait_max_ms {bound:g}")
    for name, value in (("first_output_p95_ms", first), ("end_to_end_p95_ms", e2e)):
        limit = getattr(bounds, name)
        if limit is not None and value is not None and value > limit:
            v.breaches.append(f"session {session_id}: {name.removesuffix('_ms')} {value:g} ms "
                              f"> {name} {limit:g}")
    v.passed = not v.breaches
    return v


def evaluate_sessions(lines: Iterable[TimelineLine], bounds: SessionBounds,
                      gates: tuple[GateDef, ...] = GATES
                      ) -> tuple[GateReport, list[SessionVerdict]]:
    """The seven gates over ``lines`` (one pass) and every session with an accepted turn
    checked against ``bounds``, in session id order."""
    acc = GateAccumulator()
    waits: dict[str, dict[str, int]] = {}
    for line in lines:
        acc.add(line)
        if line.kind == EVIDENCE_KIND:
            _note_wait(line.record, waits)
    report, samples = acc.evaluate(gates)
    by_session: dict[str, list[TurnGateSample]] = {}
    for s in samples:
        by_session.setdefault(s.session_id, []).append(s)
    return report, [_verdict(sid, turns, waits.get(sid, {}), bounds)
                    for sid, turns in sorted(by_session.items())
                    if any(t.accepted for t in turns)]


def _note_wait(record: Mapping[str, Any], waits: dict[str, dict[str, int]]) -> None:
    wait, sid, tid = record.get("pool_wait_ms"), record.get("session_id"), record.get("turn_id")
    if type(wait) is int and wait >= 0 and isinstance(sid, str) and isinstance(tid, str):
        waits.setdefault(sid, {})[tid] = wait
