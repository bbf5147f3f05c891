"""Late events of a closed turn (T11) as recorded inputs (F-140).

A cancel (barge-in, user cancel, a failure) fences its turn and closes it at once; a
lease loss fences at once and closes the turn at its T8 on the control lane. A node can
still produce outputs of that turn afterwards (work in flight, a provider or stream that
ignores cancels): the egress fence refuses every one of them, so nothing of a fenced turn
reaches the transport. An output of a turn that is already *closed* is a late event of
the turn, and the spec's ``turns.late_events`` policy decides it (``diagnostics``:
``reject late_event_ignored``; ``drop``: ``reject late_event_dropped``), recorded once per
turn, at the first late arrival.

Whether and when such an output arrives is not a consequence of the recorded inputs: in
a live session it depends on how far a provider thread or a network stream got before
the cancel, i.e. on the machine's speed and load. So the arrival is treated as an input
from outside the arbitration, like the transport's playback signals:

* live (``rspp run``, ``rspp serve``): :meth:`LateEvents.refused` takes the fence's
  refusal of an output of a closed turn and records the decision, naming what arrived
  (``node_id``, ``edge_id = output.<port>``, ``causal_parent_id`` = the late event's id,
  its media time) and when (the record's runtime sequence and timestamp);
* replay: the driver derives nothing from its own fence refusals (:attr:`replayed`); the
  replay engine feeds the recorded arrivals (:func:`recorded_arrivals`) at their recorded
  place, and the driver applies the configured policy to each (:meth:`LateEvents.fed`):
  the same arrivals give the same decisions, whatever the replay's nodes emit after the
  fence. A fed arrival whose turn has not closed yet in the replay is decided right after
  that turn's close (:meth:`LateEvents.closed`), so the outcome follows the turn's close
  as in the recording.

Replaying a recording against a spec with another ``late_events`` policy gives the other
decision (an OUTCOME divergence of the ``reject`` reason), as it should.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rspp.kernel._events import Event

__all__ = ["LATE_EVENT_REASONS", "LateArrival", "LateEvents", "is_late_event_record",
           "recorded_arrivals"]

#: the ``reject`` reasons that record a late event's decision (RK-25, naming the turn)
LATE_EVENT_REASONS = frozenset({"late_event_ignored", "late_event_dropped"})


@dataclass(frozen=True, slots=True)
class LateArrival:
    """What arrived after its turn closed: the turn, the output edge, the producing node,
    the late event's id and media position (sample index, when it carries one)."""

    turn_id: str
    edge_id: str
    node_id: str | None = None
    event_id: str | None = None
    sample_index: int | None = None

    @classmethod
    def of(cls, turn_id: str, port: str, event: Event, session_id: str) -> LateArrival:
        """The arrival of ``event``; its id as a record of it carries it (the session's
        ``<session>:<runtime_sequence>`` when the event has no id of its own)."""
        event_id = event.event_id or (f"{session_id}:{event.seq}" if event.seq > 0 else None)
        return cls(turn_id, f"output.{port}", event.node_id, event_id, event.sample_index)


def is_late_event_record(rec: Mapping[str, Any]) -> bool:
    """A recorded late-event decision (the arrival a replay feeds again)."""
    return rec.get("signal") == "reject" and rec.get("reason") in LATE_EVENT_REASONS \
        and isinstance(rec.get("turn_id"), str) and isinstance(rec.get("edge_id"), str)


def recorded_arrivals(records: Iterable[Mapping[str, Any]]
                      ) -> list[tuple[int, int, LateArrival]]:
    """The recording's late arrivals as ``(runtime_ms, runtime_sequence, arrival)``, in
    recorded order."""
    out = []
    for rec in records:
        if not is_late_event_record(rec):
            continue
        media = rec.get("media_time")
        sample = media.get("sample_index") if isinstance(media, Mapping) else None
        node, parent = rec.get("node_id"), rec.get("causal_parent_id")
        out.append((int(rec.get("runtime_timestamp_ms") or 0),
                    int(rec.get("runtime_sequence") or 0),
                    LateArrival(str(rec["turn_id"]), str(rec["edge_id"]),
                                node if isinstance(node, str) else None,
                                parent if isinstance(parent, str) else None,
                                sample if isinstance(sample, int) else None)))
    out.sort(key=lambda x: (x[1], x[0]))
    return out


class LateEvents:
    """Which late arrivals reach the policy: once per turn, live or fed (see the module)."""

    __slots__ = ("_decide", "_decided", "_is_closed", "_pending", "replayed", "session_id")

    def __init__(self, session_id: str, decide: Callable[[LateArrival], None],
                 is_closed: Callable[[str], bool]) -> None:
        self.session_id = session_id
        self._decide = decide
        self._is_closed = is_closed
        self._decided: set[str] = set()
        self._pending: dict[str, LateArrival] = {}
        #: a replay: arrivals come only from the recording (:meth:`fed`)
        self.replayed = False

    def refused(self, port: str, event: Event) -> None:
        """A fence refused an output: a late event when its turn is closed (live only).
        An output of a fenced turn that is not closed yet (a lease loss before its T8)
        is only fenced."""
        tid = event.turn_id
        if self.replayed or tid is None or tid in self._decided or not self._is_closed(tid):
            return
        self._once(LateArrival.of(tid, port, event, self.session_id))

    def fed(self, arrival: LateArrival) -> None:
        """A recorded arrival (replay): decided now, or right after its turn's close."""
        if self._is_closed(arrival.turn_id):
            self._once(arrival)
        else:
            self._pending.setdefault(arrival.turn_id, arrival)

    def closed(self, turn_id: str) -> None:
        """``turn_id`` closed: a fed arrival waiting for it is decided now."""
        arrival = self._pending.pop(turn_id, None)
        if arrival is not None:
            self._once(arrival)

    def _once(self, arrival: LateArrival) -> None:
        if arrival.turn_id not in self._decided:
            self._decided.add(arrival.turn_id)
            self._decide(arrival)
