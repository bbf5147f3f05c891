"""The runtime's turn capacity and its headroom for interactive work (F-172, F-173).

A runtime serves at most ``max_active_turns`` turns at once (the capacity the operator
sized it for). Background sessions (route attribute ``priority: background``) may hold
at most ``max_active_turns - interactive_reserve`` of them: the reserve is headroom only
interactive turns use, so when load rises background work is deferred first and an
interactive turn still opens. Over capacity every new turn is deferred. Control work is
never subject to it (cancels, interrupts and ends are not turns): a full runtime still
cancels and closes turns at once, which frees capacity.

:class:`TurnCapacity` is the bookkeeping: :meth:`TurnCapacity.admit` takes a
proposed turn's place or says why it does not fit (:meth:`TurnCapacity.release` frees
it). It is shared by every session of a runtime (through its admission).

Beside open turns a runtime may bound other loads (:class:`Headroom`): the work queued
for its shared execution pool and the provider calls in flight of a node type. While
one is at its limit every new turn is deferred (``capacity:NAME:VALUE/LIMIT``) before
the load grows further; turns already open go on. Each deferral is counted by the
threshold that caused it (:attr:`TurnCapacity.deferred`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from rspp.contracts import ControlSignal, DecisionOutcome, OutcomeKind, SignalName

__all__ = ["CapacityModel", "Headroom", "Priority", "TurnCapacity", "priority_of",
           "turn_end_listener"]

Priority = Literal["interactive", "background"]


def priority_of(value: str | None) -> Priority:
    """A session's priority from its ``priority`` attribute (anything else: interactive)."""
    return "background" if value == "background" else "interactive"


@dataclass(frozen=True, slots=True)
class CapacityModel:
    """How many turns may be open at once (None: unbounded), and how many of those only
    interactive ones."""

    max_active_turns: int | None
    interactive_reserve: int = 0

    def __post_init__(self) -> None:
        if self.max_active_turns is None:
            if self.interactive_reserve:
                raise ValueError("interactive_reserve needs max_active_turns")
            return
        if self.max_active_turns < 1:
            raise ValueError(f"max_active_turns={self.max_active_turns}: must be >= 1")
        if not 0 <= self.interactive_reserve < self.max_active_turns:
            raise ValueError(f"interactive_reserve={self.interactive_reserve}: must be >= 0 "
                             f"and below max_active_turns={self.max_active_turns}")

    def limit(self, priority: Priority) -> int | None:
        """Open turns beyond which a turn of ``priority`` is deferred (None: no bound)."""
        if self.max_active_turns is None:
            return None
        if priority == "background":
            return self.max_active_turns - self.interactive_reserve
        return self.max_active_turns


@dataclass(frozen=True, slots=True)
class Headroom:
    """A load bounded at admission: new turns are deferred while ``read()`` is at or
    above ``limit`` (``name``: ``queue_depth``, ``provider:llm``, ``cpu``...), or, given
    ``held``, while ``held()`` says the load is over its threshold (a measured load with
    hysteresis: it trips at ``limit`` and clears at a lower level)."""

    name: str
    limit: int
    read: Callable[[], int]
    held: Callable[[], bool] | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"{self.name} limit={self.limit}: must be >= 1")

    def over(self, value: int) -> bool:
        """Whether new turns are deferred at ``value`` (the load read now)."""
        return self.held() if self.held is not None else value >= self.limit


@dataclass(slots=True)
class TurnCapacity:
    """The open turns of a runtime by priority, against its :class:`CapacityModel` and
    :class:`Headroom` thresholds."""

    model: CapacityModel
    headroom: tuple[Headroom, ...] = ()
    #: (session_id, turn_id) -> priority of every admitted turn not yet closed
    open: dict[tuple[str, str], Priority] = field(default_factory=dict)
    #: deferrals by the threshold that caused them (``full``, ``queue_depth``...)
    deferred: dict[str, int] = field(default_factory=dict)
    #: told the headroom threshold a turn is deferred at, before the deferral is recorded
    #: (the runtime's capacity control records the threshold tripping first)
    on_defer: Callable[[str], None] | None = None

    def _full(self, priority: Priority) -> tuple[str, str] | None:
        """(the threshold a new turn of ``priority`` is at, the defer reason), or None."""
        limit = self.model.limit(priority)
        active = len(self.open)
        if limit is not None and active >= limit:
            which = "full" if limit == self.model.max_active_turns else "background_headroom"
            return which, f"capacity:{which}:{active}/{limit}"
        for h in self.headroom:
            value = h.read()
            if h.over(value):
                return h.name, f"capacity:{h.name}:{value}/{h.limit}"
        return None

    def admit(self, session_id: str, turn_id: str, priority: Priority) -> str | None:
        """Take capacity for the turn, or the defer reason (counted by its threshold)."""
        full = self._full(priority)
        if full is None:
            self.take(session_id, turn_id, priority)
            return None
        which, reason = full
        self.deferred[which] = self.deferred.get(which, 0) + 1
        if self.on_defer is not None:
            self.on_defer(which)
        return reason

    def loads(self) -> dict[str, tuple[int, int | None]]:
        """Each bounded load now: (value, limit); ``open_turns`` always."""
        out: dict[str, tuple[int, int | None]] = {
            "open_turns": (len(self.open), self.model.max_active_turns)}
        for h in self.headroom:
            out[h.name] = (h.read(), h.limit)
        return out

    def take(self, session_id: str, turn_id: str, priority: Priority) -> None:
        self.open[(session_id, turn_id)] = priority

    def release(self, session_id: str, turn_id: str) -> bool:
        """The turn closed (or never opened); True when it held capacity."""
        return self.open.pop((session_id, turn_id), None) is not None

    def release_session(self, session_id: str) -> None:
        for key in [k for k in self.open if k[0] == session_id]:
            del self.open[key]

    def by_priority(self) -> dict[Priority, int]:
        out: dict[Priority, int] = {"interactive": 0, "background": 0}
        for priority in self.open.values():
            out[priority] += 1
        return out


_ENDS_BEFORE_OPEN = frozenset({OutcomeKind.DEFER, OutcomeKind.REJECT,
                               OutcomeKind.STALE_EPOCH_REJECT, OutcomeKind.DEAUTHORIZED_DRAIN})


def turn_end_listener(release: Callable[[str, str], None], session_id: str
                      ) -> Callable[[object], None]:
    """A record listener of one session that gives a turn's capacity back when it closes
    (``close``) or ends before opening (a pre-turn defer, reject, stale epoch or drain)."""

    def on_record(record: object) -> None:
        if isinstance(record, ControlSignal):
            if record.signal is SignalName.CLOSE and record.turn_id is not None:
                release(session_id, record.turn_id)
        elif isinstance(record, DecisionOutcome):
            if record.outcome_kind in _ENDS_BEFORE_OPEN and record.turn_id is not None:
                release(session_id, record.turn_id)

    return on_record
