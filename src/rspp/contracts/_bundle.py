"""One example of every contract kind together (kind ``artifact_bundle``)."""

from __future__ import annotations

import msgspec

from rspp.contracts._envelope import ControlSignal, EventRecord
from rspp.contracts._outcome import DecisionOutcome
from rspp.contracts._plan import ResolvedTurnPlan
from rspp.contracts._transition import TurnTransition


class ArtifactBundle(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``event`` is any event ABI record (data, telemetry or control)."""

    event: EventRecord | ControlSignal
    control_signal: ControlSignal
    turn_transition: TurnTransition
    resolved_turn_plan: ResolvedTurnPlan
    decision_outcome: DecisionOutcome
