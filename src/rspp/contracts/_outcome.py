"""Admission and authority decisions (kind ``decision_outcome``)."""

from __future__ import annotations

import msgspec

from rspp.contracts._enums import OutcomeEmitter, OutcomeKind, OutcomePhase, OutcomeScope
from rspp.contracts._types import NonEmptyStr, NonNegInt


class DecisionOutcome(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A pre-turn, scheduling-point or active-turn decision with its owner and reason."""

    outcome_kind: OutcomeKind
    phase: OutcomePhase
    scope: OutcomeScope
    session_id: NonEmptyStr
    event_id: NonEmptyStr
    runtime_timestamp_ms: NonNegInt
    wall_clock_timestamp_ms: NonNegInt
    emitted_by: OutcomeEmitter
    reason: NonEmptyStr
    turn_id: NonEmptyStr | None = None
    timestamp_ms: NonNegInt | None = None
    authority_epoch: NonNegInt | None = None
