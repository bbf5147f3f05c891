"""Subscribe to a session's outputs and in-band records by event type (F-022).

Every item a session delivers has one of the six event types of
:class:`rspp.contracts.EventType` (audio, text, control, metrics, debug, error):

* output events (what passes the egress gate on an output port) are classified
  by :func:`classify_event` - ControlLane and turn boundaries are ``control``,
  a contract payload body decides by :func:`rspp.contracts.event_type`, else the
  event kind (``audio_*``, ``text``, ``metric``, ``debug``, ``error``);
* in-band records of the session's :class:`SignalLog` (control signals and
  TelemetryLane metrics/debug/error records, dead-letter errors included) are
  classified by :func:`classify_record`.

:class:`SubscriptionHub` fans both out to :class:`Subscription` objects that
filter by type (and optionally output port). A subscription either calls its
handler or keeps a bounded list of :class:`Delivery` objects. A failing handler
never reaches the session: the error is counted on the subscription. With no
subscriber the session pays one attribute check per output event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from rspp.contracts import (
    AudioPayload,
    AudioRef,
    ControlSignal,
    DebugPayload,
    ErrorPayload,
    EventRecord,
    EventType,
    Lane,
    MetricsPayload,
    PayloadClass,
    TextPayload,
    event_type,
)
from rspp.kernel._events import EventKind

if TYPE_CHECKING:
    from rspp.kernel._events import Event
    from rspp.kernel._signals import SignalLog

__all__ = [
    "Delivery",
    "Subscription",
    "SubscriptionHub",
    "classify_event",
    "classify_record",
    "parse_event_types",
]

_BODIES: Final = (AudioPayload, AudioRef, TextPayload, MetricsPayload, DebugPayload, ErrorPayload)
_KIND_TYPES: Final[dict[str, EventType]] = {
    EventKind.TEXT: EventType.TEXT,
    EventKind.TURN_START: EventType.CONTROL,
    EventKind.TURN_END: EventType.CONTROL,
    EventKind.METRIC: EventType.METRICS,
    "metrics": EventType.METRICS,
    EventKind.DEBUG: EventType.DEBUG,
    EventKind.ERROR: EventType.ERROR,
}
#: TelemetryLane record kinds (``event_id`` is ``<session>:<kind>:<seq>``) that are not metrics.
_RECORD_KINDS: Final[dict[str, EventType]] = {
    "error": EventType.ERROR,
    "text_guard": EventType.ERROR,
    "debug": EventType.DEBUG,
}

def classify_event(ev: Event) -> EventType:
    """The event type of one executor event (see the module docstring)."""
    if ev.lane is Lane.CONTROL:
        return EventType.CONTROL
    if isinstance(ev.payload, _BODIES):
        return event_type(ev.lane, ev.payload)
    t = _KIND_TYPES.get(ev.kind)
    if t is not None:
        return t
    if ev.kind.startswith("audio"):
        return EventType.AUDIO
    return EventType.METRICS if ev.lane is Lane.TELEMETRY else EventType.DEBUG


def classify_record(rec: ControlSignal | EventRecord) -> EventType:
    """The event type of one contract record of the session's signal log."""
    if isinstance(rec, ControlSignal) or rec.lane == Lane.CONTROL:
        return EventType.CONTROL
    if rec.lane == Lane.TELEMETRY:
        parts = rec.event_id.rsplit(":", 2)
        kind = parts[1] if len(parts) == 3 else ""
        return _RECORD_KINDS.get(kind, EventType.METRICS)
    if rec.payload_class == PayloadClass.AUDIO_RAW:
        return EventType.AUDIO
    if rec.payload_class == PayloadClass.TEXT_RAW:
        return EventType.TEXT
    return EventType.DEBUG


def parse_event_types(types: Iterable[EventType | str] | EventType | str | None) -> frozenset[
        EventType]:
    """Normalise a type filter; ``None`` means all six types. Bad names raise ValueError."""
    if types is None:
        return frozenset(EventType)
    if isinstance(types, str):
        types = (types,)
    out: set[EventType] = set()
    for t in types:
        try:
            out.add(EventType(t))
        except ValueError:
            raise ValueError(
                f"subscribe(types=...): unknown event type {t!r}; use any of "
                f"{[e.value for e in EventType]}"
            ) from None
    if not out:
        raise ValueError("subscribe(types=...) is empty; pass None to receive every event type")
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivered item: its type, the output port (None for in-band records), the item
    (and the payload an in-band record travels with, e.g. a metric's value)."""

    type: EventType
    port: str | None
    item: Event | ControlSignal | EventRecord
    payload: object = None


class Subscription:
    """A type (and optional port) filter with a handler or a bounded delivery list."""

    __slots__ = ("_hub", "deliveries", "errors", "handler", "ports", "received", "records",
                 "types")

    def __init__(self, hub: SubscriptionHub, types: frozenset[EventType],
                 ports: frozenset[str] | None,
                 handler: Callable[[Delivery], object] | None, maxlen: int,
                 records: bool = True) -> None:
        self._hub = hub
        self.types = types
        self.ports = ports
        #: whether in-band signal-log records (no port) are delivered too
        self.records = records
        self.handler = handler
        self.deliveries: deque[Delivery] = deque(maxlen=maxlen)
        self.received = 0
        self.errors: list[Exception] = []

    def wants(self, t: EventType, port: str | None) -> bool:
        """Whether an item of type ``t`` on ``port`` (None: in-band record) matches."""
        if t not in self.types:
            return False
        if port is None:
            return self.records
        return self.ports is None or port in self.ports

    def deliver(self, d: Delivery) -> None:
        self.received += 1
        if self.handler is None:
            self.deliveries.append(d)
            return
        try:
            self.handler(d)
        except Exception as exc:  # a subscriber never breaks the session
            self.errors.append(exc)

    def close(self) -> None:
        self._hub.unsubscribe(self)


class SubscriptionHub:
    """Per-session fan-out of outputs and in-band records to type-filtered subscribers."""

    __slots__ = ("_prev_sink", "_signals", "_subs", "active")

    def __init__(self, signals: SignalLog | None = None) -> None:
        self._signals = signals
        self._subs: list[Subscription] = []
        self._prev_sink: Callable[[ControlSignal | EventRecord], None] | None = None
        #: True while at least one subscription is open (the egress fast check).
        self.active = False

    def subscribe(
        self,
        types: Iterable[EventType | str] | EventType | str | None = None,
        *,
        ports: Iterable[str] | None = None,
        handler: Callable[[Delivery], object] | None = None,
        records: bool = True,
        maxlen: int = 4096,
    ) -> Subscription:
        """Open a subscription for ``types`` (None: all) on ``ports`` (None: all).

        ``records=False`` skips in-band signal-log records (outputs only).
        """
        if maxlen < 1:
            raise ValueError(f"subscribe(maxlen=...) must be >= 1, got {maxlen}")
        port_set = frozenset(ports) if ports is not None else None
        sub = Subscription(self, parse_event_types(types), port_set, handler, maxlen, records)
        self._subs.append(sub)
        self.active = True
        self._tap()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        self.active = bool(self._subs)

    def _tap(self) -> None:
        """Tee the signal log's sink into this hub (once)."""
        sig = self._signals
        if sig is None or sig.sink == self._tee:
            return
        self._prev_sink = sig.sink
        sig.sink = self._tee
        sig.payload_tap = self.publish_record  # records travelling with a payload (F-026)

    def _tee(self, rec: ControlSignal | EventRecord) -> None:
        if self._prev_sink is not None:
            self._prev_sink(rec)
        self.publish_record(rec)

    def publish_event(self, port: str, ev: Event) -> None:
        """Deliver one output event (called by the session's egress)."""
        t = classify_event(ev)
        d: Delivery | None = None
        for sub in self._subs:
            if sub.wants(t, port):
                if d is None:
                    d = Delivery(t, port, ev)
                sub.deliver(d)

    def publish_record(self, rec: ControlSignal | EventRecord, payload: object = None) -> None:
        """Deliver one in-band record (control signal or telemetry record; ``payload``: the
        body it travels with, if any)."""
        if not self._subs:
            return
        t = classify_record(rec)
        d: Delivery | None = None
        for sub in self._subs:
            if sub.wants(t, None):
                if d is None:
                    d = Delivery(t, None, rec, payload)
                sub.deliver(d)
