"""Turn lifecycle transitions (kind ``turn_transition``)."""

from __future__ import annotations

from typing import Literal

import msgspec

from rspp.contracts._enums import TransitionTrigger, TurnState


class TurnTransition(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One legal edge of the turn state machine; ``deterministic`` is always true."""

    from_state: TurnState
    trigger: TransitionTrigger
    to_state: TurnState
    deterministic: Literal[True] = True


#: Every legal (from_state, trigger, to_state) triple of the reference schema.
LEGAL_TRANSITIONS: frozenset[tuple[TurnState, TransitionTrigger, TurnState]] = frozenset(
    {
        (TurnState.IDLE, TransitionTrigger.TURN_OPEN_PROPOSED, TurnState.OPENING),
        (TurnState.OPENING, TransitionTrigger.TURN_OPEN, TurnState.ACTIVE),
        (TurnState.OPENING, TransitionTrigger.REJECT, TurnState.IDLE),
        (TurnState.OPENING, TransitionTrigger.DEFER, TurnState.IDLE),
        (TurnState.OPENING, TransitionTrigger.STALE_EPOCH_REJECT, TurnState.IDLE),
        (TurnState.OPENING, TransitionTrigger.DEAUTHORIZED_DRAIN, TurnState.IDLE),
        (TurnState.ACTIVE, TransitionTrigger.COMMIT, TurnState.TERMINAL),
        (TurnState.ACTIVE, TransitionTrigger.ABORT, TurnState.TERMINAL),
        (TurnState.TERMINAL, TransitionTrigger.CLOSE, TurnState.CLOSED),
    }
)
