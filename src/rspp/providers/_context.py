"""InvocationContext and the RK-11 control signals it stamps (F-136).

Signals carry identity, the invocation id and a reason naming provider,
outcome, error code, attempt and thresholds; never request payloads or secrets
(the reason passes through the redactor before it leaves).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rspp.contracts import (
    SCHEMA_VERSION,
    CancelScopeKind,
    ControlSignal,
    Emitter,
    EventScope,
    Lane,
    PayloadClass,
    SignalName,
)
from rspp.providers._clock import LoopClock
from rspp.providers._secrets import redact

if TYPE_CHECKING:
    from rspp.kernel._handles import Clock

__all__ = ["InvocationContext", "SignalSink"]

#: receives every control signal the provider layer emits; must not block
SignalSink = Callable[[ControlSignal], None]


@dataclass(slots=True)
class InvocationContext:
    """Who is calling: session/turn identity, epoch, sequence and clock."""

    session_id: str
    pipeline_version: str
    authority_epoch: int
    turn_id: str | None = None
    node_id: str | None = None
    clock: Clock = field(default_factory=LoopClock)
    #: the session sequencer (runtime_sequence); a local counter when not given
    next_sequence: Callable[[], int] | None = None
    _counter: itertools.count[int] = field(default_factory=itertools.count, init=False, repr=False)
    _event_counter: itertools.count[int] = field(
        default_factory=lambda: itertools.count(1), init=False, repr=False
    )

    def sequence(self) -> int:
        if self.next_sequence is not None:
            return self.next_sequence()
        return next(self._counter)

    def signal(
        self,
        name: SignalName,
        reason: str,
        *,
        provider_invocation_id: str | None = None,
        emitted_by: Emitter = Emitter.RK_11,
    ) -> ControlSignal:
        """Build a ControlLane signal valid against the reference schema."""
        n = next(self._event_counter)
        turn_scoped = self.turn_id is not None
        return ControlSignal(
            schema_version=SCHEMA_VERSION,
            event_scope=EventScope.TURN if turn_scoped else EventScope.SESSION,
            session_id=self.session_id,
            turn_id=self.turn_id,
            pipeline_version=self.pipeline_version,
            node_id=self.node_id,
            event_id=f"{self.session_id}:{self.turn_id or '-'}:{name.value}:{n}",
            provider_invocation_id=provider_invocation_id,
            lane=Lane.CONTROL,
            transport_sequence=None,
            runtime_sequence=self.sequence(),
            runtime_timestamp_ms=self.clock.monotonic_ns() // 1_000_000,
            wall_clock_timestamp_ms=self.clock.wall_ms(),
            payload_class=PayloadClass.METADATA,
            authority_epoch=self.authority_epoch,
            signal=name,
            emitted_by=emitted_by,
            scope=CancelScopeKind.PROVIDER_INVOCATION if provider_invocation_id else None,
            reason=redact(reason)[:500],
        )
