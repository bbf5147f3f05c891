"""Egress gating and session control hooks (integration points for Kernel II).

* :class:`EgressGate` is consulted for every event before it reaches a transport
  output; :class:`TurnFenceGate` (default) blocks outputs of cancelled turns.
* :class:`ControlCommand` is what the ControlLane carries inside a session;
  handlers registered with ``SessionActor.on_control`` see each one first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rspp.kernel._events import Event

__all__ = ["ControlCommand", "ControlHandler", "EgressGate", "TurnFenceGate"]


class EgressGate(Protocol):
    """Decides whether one output event may reach the transport."""

    def allow(self, port: str, event: Event) -> bool: ...


class TurnFenceGate:
    """Blocks every output of a fenced (cancelled) turn; keeps the last 256 fences."""

    __slots__ = ("_fenced", "fenced_count")

    def __init__(self) -> None:
        self._fenced: deque[str] = deque(maxlen=256)
        self.fenced_count = 0

    def fence(self, turn_id: str) -> None:
        if turn_id not in self._fenced:
            self._fenced.append(turn_id)

    def is_fenced(self, turn_id: str | None) -> bool:
        return turn_id is not None and turn_id in self._fenced

    def allow(self, port: str, event: Event) -> bool:
        if self._fenced and event.turn_id is not None and event.turn_id in self._fenced:
            self.fenced_count += 1
            return False
        return True


@dataclass(slots=True)
class ControlCommand:
    """One ControlLane item: ``turn_start``, ``turn_end``, ``cancel``, ``barge_in``,
    ``budget_exhausted``, ``select`` or any name a handler understands."""

    name: str
    turn_id: str | None = None
    reason: str | None = None
    scope: str = "turn"
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = -1


class ControlHandler(Protocol):
    """Called for every control command before the kernel acts on it.

    Return ``False`` to consume the command (the kernel then does nothing more).
    May be a coroutine function.
    """

    def __call__(self, command: ControlCommand) -> Any: ...
