"""NodeContext: what a node sees of its session (F-013)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from rspp.runtime._handles import BudgetHandle, CancelToken, Clock, StateHandle, TelemetryHandle

if TYPE_CHECKING:
    from rspp.runtime._events import Event
    from rspp.runtime._host import NodeHost
    from rspp.runtime._session import SessionActor

__all__ = ["NodeContext"]


class NodeContext:
    """Correlation ids, handles and ``emit()`` for one node instance of one session."""

    __slots__ = (
        "_host",
        "_session",
        "budget",
        "cancel",
        "clock",
        "node_id",
        "pipeline_version",
        "rng",
        "session_id",
        "state",
        "telemetry",
    )

    def __init__(
        self,
        session: SessionActor,
        node_id: str,
        *,
        clock: Clock,
        cancel: CancelToken,
        budget: BudgetHandle,
        state: StateHandle,
        telemetry: TelemetryHandle,
        seed: int,
    ) -> None:
        self._session = session
        self._host: NodeHost | None = None
        self.session_id = session.session_id
        self.pipeline_version = session.pipeline_version
        self.node_id = node_id
        self.clock = clock
        self.cancel = cancel
        self.budget = budget
        self.state = state
        self.telemetry = telemetry
        #: Seeded PRNG (determinism context): same seed and node id, same sequence.
        self.rng = random.Random(f"{seed}:{node_id}")

    @property
    def turn_id(self) -> str | None:
        """The session's current turn (None between turns)."""
        return self._session.turn_id

    @property
    def turn_index(self) -> int:
        return self._session.turn_index

    def emit(self, event: Event, port: str | None = None) -> None:
        """Send ``event`` out of ``port`` (default: the first output port)."""
        host = self._host
        if host is None:
            raise RuntimeError("emit() called before the node was attached to a session")
        host.emit(event, port)

    def audit(self, reason: str) -> None:
        """Record a TelemetryLane audit event for this node (selection, routing)."""
        self._session.signals.telemetry(
            kind="audit", node_id=self.node_id, turn_id=self._session.turn_id, reason=reason
        )

    def new_event(self, kind: str, payload: object = None, **kw: object) -> Event:
        """A new event stamped with this session's turn id."""
        from rspp.runtime._events import Event

        kw.setdefault("turn_id", self._session.turn_id)
        return Event(kind, payload, **kw)  # type: ignore[arg-type]
