"""Subscribing to a live session by event type (F-022, protocol 1.3 ``start.events``).

A client that names event types in its ``start`` message gets only the server events of
those types, classified by :func:`event_type_of` over the unified event ABI's six types
(``rspp.contracts.EventType``): reply audio is ``audio``; ``transcript`` and
``reply_text`` are ``text``; ``turn``, ``clear`` and ``turn_row`` are ``control``;
``stats`` is ``metrics``; a non-fatal ``error`` is ``error``. The connection's own
protocol (``ready``, ``epoch``, ``session_end``, a fatal ``error``) is always sent.

Naming ``metrics``, ``debug`` or ``error`` also subscribes the connection to the session's
in-band records of that type (the kernel's ``SessionActor.subscriptions``): each becomes a
``record`` event. Records are best effort: one that finds the connection's event queue
half full is dropped (counted), so a burst of records never closes a slow client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec

from rspp.transports._egress import AudioFrame
from rspp.transports._protocol import (
    AudioOut,
    Clear,
    ErrorEvent,
    RecordEvent,
    ReplyText,
    ServerEvent,
    Stats,
    Transcript,
    TurnEvent,
    TurnRowEvent,
)

if TYPE_CHECKING:
    from rspp.kernel import Delivery, Subscription, SubscriptionHub
    from rspp.transports._egress import OutboundQueue

__all__ = ["RECORD_TYPES", "RecordForwarder", "event_type_of"]

#: the event types whose in-band records a connection can subscribe to
RECORD_TYPES: Final = frozenset({"metrics", "debug", "error"})
_TYPES: Final[dict[type[Any], str]] = {
    AudioFrame: "audio", AudioOut: "audio", Transcript: "text", ReplyText: "text",
    TurnEvent: "control", Clear: "control", TurnRowEvent: "control", Stats: "metrics",
}


def event_type_of(item: ServerEvent | AudioFrame) -> str | None:
    """The event type of one outbound item; None: the connection's protocol (always sent)."""
    t = _TYPES.get(type(item))
    if t is not None:
        return t
    if type(item) is ErrorEvent:
        return None if item.fatal else "error"
    if type(item) is RecordEvent:
        return item.event_type
    return None


class RecordForwarder:
    """The in-band records of the subscribed types, as ``record`` events on one queue."""

    __slots__ = ("dropped", "queue", "sent", "subscription")

    def __init__(self, hub: SubscriptionHub, types: frozenset[str], queue: OutboundQueue
                 ) -> None:
        self.queue = queue
        self.sent = self.dropped = 0
        #: no output ports: outputs reach the client as protocol events already
        self.subscription: Subscription = hub.subscribe(
            sorted(types & RECORD_TYPES), ports=(), handler=self._forward)

    def _forward(self, d: Delivery) -> None:
        q = self.queue
        if q.closed or q.events_queued() >= q.max_events // 2:
            self.dropped += 1
            return
        body = msgspec.to_builtins(d.payload) if isinstance(d.payload, msgspec.Struct) else None
        event = RecordEvent(event_type=str(d.type),  # type: ignore[arg-type]
                            record=msgspec.to_builtins(d.item), payload=body)
        if q.put_event(event):
            self.sent += 1

    def close(self) -> None:
        self.subscription.close()
