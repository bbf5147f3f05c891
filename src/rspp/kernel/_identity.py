"""Identity and correlation: deterministic ids, the sequencer and record stamping (NF-008).

Every record a Kernel II component emits goes through :class:`RecordStamp`,
which fills the correlation fields (session, turn, pipeline version, authority
epoch, node/edge/provider invocation ids), the sequencer's ``runtime_sequence``
and the timebase's timestamps. Ids are deterministic (counter based) so that
identical inputs produce identical records in run and replay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rspp.contracts import (
    SCHEMA_VERSION,
    CancelScopeKind,
    ControlSignal,
    DecisionOutcome,
    Emitter,
    EventScope,
    Lane,
    OutcomeEmitter,
    OutcomeKind,
    OutcomePhase,
    OutcomeScope,
    PayloadClass,
    SignalName,
)
from rspp.kernel._timebase import Timebase

__all__ = ["Correlation", "IdFactory", "RecordStamp", "Sequencer"]


class Sequencer:
    """The single per-session ``runtime_sequence`` counter."""

    __slots__ = ("_next",)

    def __init__(self, start: int = 0) -> None:
        self._next = start

    def __call__(self) -> int:
        value = self._next
        self._next += 1
        return value

    @property
    def peek(self) -> int:
        return self._next


@dataclass(frozen=True, slots=True)
class Correlation:
    """Correlation ids carried by every log line, metric and record of a session."""

    tenant_id: str
    session_id: str
    pipeline_version: str
    turn_id: str | None = None
    node_id: str | None = None

    def labels(self) -> dict[str, str]:
        """Labels for logs/metrics/traces (absent ids are omitted)."""
        out = {
            "tenant_id": self.tenant_id,
            "session_id": self.session_id,
            "pipeline_version": self.pipeline_version,
        }
        if self.turn_id is not None:
            out["turn_id"] = self.turn_id
        if self.node_id is not None:
            out["node_id"] = self.node_id
        return out


@dataclass(slots=True)
class IdFactory:
    """Deterministic ids scoped to one session: ``<session>:<kind>:<n>``.

    ``epoch``: the lease epoch a resumed session was taken over at (> 1). Its turn ids
    carry it (``<session>:turn:<n>@<epoch>``): the previous owner may have opened turns
    its last checkpoint does not count (it died before the checkpoint landed), and an
    epoch has one holder, so no turn id of an earlier owner can come back.
    """

    session_id: str
    _counters: dict[str, int] = field(default_factory=dict)
    epoch: int | None = None

    def next(self, kind: str) -> str:
        n = self._counters.get(kind, 0) + 1
        self._counters[kind] = n
        return f"{self.session_id}:{kind}:{n}"

    def turn_id(self) -> str:
        return self._turn(self.next("turn"))

    def next_turn_id(self) -> str:
        """The id :meth:`turn_id` returns next (nothing is taken)."""
        return self._turn(f"{self.session_id}:turn:{self._counters.get('turn', 0) + 1}")

    def _turn(self, tid: str) -> str:
        """A turn id as issued: with the lease epoch of a resumed session."""
        return tid if self.epoch is None else f"{tid}@{self.epoch}"

    def counters(self) -> dict[str, int]:
        """How many ids of each kind were issued (a checkpoint of the session)."""
        return dict(self._counters)

    def resume(self, counters: dict[str, int]) -> None:
        """Continue numbering after ``counters`` (a session resumed on a new runtime):
        ids never repeat within a session. Counters only grow."""
        for kind, n in counters.items():
            if n > self._counters.get(kind, 0):
                self._counters[kind] = n

    def provider_invocation_id(self, node_id: str) -> str:
        return self.next(f"pi.{node_id}")


class RecordStamp:
    """Builds contract records stamped with the session's correlation, sequence and time."""

    __slots__ = ("correlation", "ids", "next_seq", "timebase")

    def __init__(
        self,
        correlation: Correlation,
        timebase: Timebase,
        *,
        next_seq: Callable[[], int] | None = None,
        ids: IdFactory | None = None,
    ) -> None:
        self.correlation = correlation
        self.timebase = timebase
        self.next_seq = next_seq if next_seq is not None else Sequencer()
        self.ids = ids if ids is not None else IdFactory(correlation.session_id)

    def signal(
        self,
        name: SignalName,
        emitter: Emitter,
        *,
        authority_epoch: int,
        turn_id: str | None = None,
        reason: str | None = None,
        scope: CancelScopeKind | None = None,
        node_id: str | None = None,
        edge_id: str | None = None,
        provider_invocation_id: str | None = None,
        causal_parent_id: str | None = None,
        idempotency_key: str | None = None,
        session_scoped: bool = False,
    ) -> ControlSignal:
        """A ControlLane signal; turn-scoped when ``turn_id`` is given unless ``session_scoped``."""
        seq = self.next_seq()
        turn_scoped = turn_id is not None and not session_scoped
        runtime_ms, wall_ms = self.timebase.stamps_ms()
        return ControlSignal(
            schema_version=SCHEMA_VERSION,
            event_scope=EventScope.TURN if turn_scoped else EventScope.SESSION,
            session_id=self.correlation.session_id,
            pipeline_version=self.correlation.pipeline_version,
            event_id=f"{self.correlation.session_id}:sig:{seq}",
            lane=Lane.CONTROL,
            transport_sequence=None,
            runtime_sequence=seq,
            runtime_timestamp_ms=runtime_ms,
            wall_clock_timestamp_ms=wall_ms,
            payload_class=PayloadClass.METADATA,
            turn_id=turn_id,
            node_id=node_id,
            edge_id=edge_id,
            provider_invocation_id=provider_invocation_id,
            causal_parent_id=causal_parent_id,
            idempotency_key=idempotency_key,
            authority_epoch=authority_epoch,
            reason=reason,
            signal=name,
            emitted_by=emitter,
            scope=scope,
        )

    def outcome(
        self,
        kind: OutcomeKind,
        phase: OutcomePhase,
        scope: OutcomeScope,
        emitter: OutcomeEmitter,
        *,
        reason: str,
        turn_id: str | None = None,
        authority_epoch: int | None = None,
    ) -> DecisionOutcome:
        """A decision outcome (admission, shed or authority)."""
        rt, wall_ms = self.timebase.stamps_ms()
        return DecisionOutcome(
            outcome_kind=kind,
            phase=phase,
            scope=scope,
            session_id=self.correlation.session_id,
            event_id=self.ids.next("outcome"),
            runtime_timestamp_ms=rt,
            wall_clock_timestamp_ms=wall_ms,
            emitted_by=emitter,
            reason=reason,
            turn_id=turn_id,
            timestamp_ms=rt,
            authority_epoch=authority_epoch,
        )
