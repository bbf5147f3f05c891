"""Session lifecycle state machine (F-138): the one owner of a session's states.

``CONNECTING -> ACTIVE -> DRAINING -> ENDED`` with disconnect/reconnect through
``RECONNECTING``. Only the transitions in :data:`SESSION_TRANSITIONS` are legal;
any other request (``ENDED -> ACTIVE``, a second end, ...) is rejected with a
deterministic :class:`SessionRejection` marker and leaves the state untouched.

Every running session has one (``TurnDriver.session_lifecycle``): the live session
handle of ``rspp serve`` drives it from its connections and emits the RK-23
connection signals it returns, in the transport's order: ``connected``; on a lost
connection ``disconnected``, then ``stall`` once the stall timeout passes (the active
turn then aborts), ``connected`` (reason ``resumed``) on a reconnect; ``ended`` when
the session closes. ``rspp run`` (a file, no connection) moves through the same
states without connection signals. The kernel's ``SessionActor.state`` is only its
scheduler's run state (created, running, stopped).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rspp.contracts import ControlSignal, Emitter, SignalName
from rspp.kernel._identity import RecordStamp

__all__ = [
    "SESSION_TRANSITIONS",
    "SessionEvent",
    "SessionLifecycle",
    "SessionRejection",
    "SessionState",
]


class SessionState(StrEnum):
    CONNECTING = "CONNECTING"
    ACTIVE = "ACTIVE"
    RECONNECTING = "RECONNECTING"
    DRAINING = "DRAINING"
    ENDED = "ENDED"


class SessionEvent(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # transport lost, resume window open
    RECONNECTED = "reconnected"
    RESUME_TIMEOUT = "resume_timeout"
    STALL = "stall"  # still no transport after the stall timeout (resume window still open)
    DRAIN = "drain"  # end requested, lease lost, or runtime shutting down
    END = "end"


#: (from, event) -> to
SESSION_TRANSITIONS: dict[tuple[SessionState, SessionEvent], SessionState] = {
    (SessionState.CONNECTING, SessionEvent.CONNECTED): SessionState.ACTIVE,
    (SessionState.CONNECTING, SessionEvent.END): SessionState.ENDED,
    (SessionState.ACTIVE, SessionEvent.DISCONNECTED): SessionState.RECONNECTING,
    (SessionState.ACTIVE, SessionEvent.DRAIN): SessionState.DRAINING,
    (SessionState.RECONNECTING, SessionEvent.STALL): SessionState.RECONNECTING,
    (SessionState.RECONNECTING, SessionEvent.RECONNECTED): SessionState.ACTIVE,
    (SessionState.RECONNECTING, SessionEvent.RESUME_TIMEOUT): SessionState.DRAINING,
    (SessionState.RECONNECTING, SessionEvent.DRAIN): SessionState.DRAINING,
    (SessionState.DRAINING, SessionEvent.END): SessionState.ENDED,
}

#: the connection signal each event emits (the transport's sequence); others are silent
_SIGNALS = {
    SessionEvent.CONNECTED: SignalName.CONNECTED,
    SessionEvent.DISCONNECTED: SignalName.DISCONNECTED,
    SessionEvent.STALL: SignalName.STALL,
    SessionEvent.RECONNECTED: SignalName.CONNECTED,
    SessionEvent.END: SignalName.ENDED,
}


@dataclass(frozen=True, slots=True)
class SessionRejection:
    """Deterministic diagnostic for an illegal session transition request."""

    state: SessionState
    event: SessionEvent
    code: str
    detail: str


class SessionLifecycle:
    """The session state plus its emitted signals and rejection markers."""

    def __init__(self, stamp: RecordStamp, *, authority_epoch: int) -> None:
        self.stamp = stamp
        self.authority_epoch = authority_epoch
        self.state = SessionState.CONNECTING
        self.signals: list[ControlSignal] = []
        self.rejections: list[SessionRejection] = []
        self.history: list[tuple[SessionState, SessionEvent, SessionState]] = []

    def apply(self, event: SessionEvent, reason: str | None = None, *,
              emit: bool = True) -> ControlSignal | None:
        """Apply ``event``; returns the signal to record, or None (silent, rejected or
        ``emit`` False: a session without a connection has no connection signals)."""
        target = SESSION_TRANSITIONS.get((self.state, event))
        if target is None:
            code = (
                "duplicate_end"
                if (self.state is SessionState.ENDED and event is SessionEvent.END)
                else "illegal_transition"
            )
            allowed = sorted(e.value for (s, e) in SESSION_TRANSITIONS if s is self.state)
            self.rejections.append(
                SessionRejection(
                    self.state,
                    event,
                    code,
                    f"{event.value} is not allowed in {self.state.value}; allowed: {allowed}",
                )
            )
            return None
        self.history.append((self.state, event, target))
        self.state = target
        name = _SIGNALS.get(event)
        if name is None or not emit:
            return None
        sig = self.stamp.signal(
            name, Emitter.RK_23, authority_epoch=self.authority_epoch, reason=reason or event.value
        )
        self.signals.append(sig)
        return sig
