"""Subscribing by event type on the live protocol (F-022, protocol 1.3 ``start.events``)."""

from __future__ import annotations

import pytest

from rspp.contracts import EventType, MetricsPayload
from rspp.kernel import SignalLog, SubscriptionHub, VirtualClock
from rspp.transports import (
    AudioFrame,
    AudioOut,
    Clear,
    EpochEvent,
    ErrorEvent,
    OutboundQueue,
    ProtocolError,
    Ready,
    RecordEvent,
    ReplyText,
    SessionEnd,
    Start,
    Stats,
    Transcript,
    TurnEvent,
    decode_client,
    decode_server,
    encode_message,
)
from rspp.transports._event_filter import RecordForwarder, event_type_of

pytestmark = pytest.mark.unit


def test_start_takes_event_types_and_names_a_bad_one() -> None:
    start = decode_client('{"type": "start", "events": ["text", "metrics"]}')
    assert isinstance(start, Start) and start.events == ["text", "metrics"]
    assert decode_client('{"type": "start"}').events is None  # type: ignore[union-attr]
    with pytest.raises(ProtocolError) as bad:
        decode_client('{"type": "start", "events": ["text", "telepathy"]}')
    assert bad.value.field == "events[1]"
    with pytest.raises(ProtocolError) as empty:
        decode_client('{"type": "start", "events": []}')
    assert empty.value.field == "events"


def test_every_server_event_has_one_of_the_six_types_or_is_protocol() -> None:
    typed = [
        (AudioFrame("t1", 0, b"\0\0"), "audio"), (AudioOut(seq=1, data=b""), "audio"),
        (Transcript(text="hi", final=True), "text"), (ReplyText(text="hello"), "text"),
        (TurnEvent(turn_id="t1", state="open"), "control"),
        (Clear(turn_id="t1", reason="x"), "control"), (Stats(), "metrics"),
        (ErrorEvent(code="bad_input", message="m"), "error"),
        (RecordEvent(event_type="debug", record={}), "debug"),
    ]
    for item, t in typed:
        assert event_type_of(item) == t, item
        assert t in {e.value for e in EventType}
    for protocol in (Ready(session_id="s", sample_rate=16000, output_sample_rate=16000,
                           frame_ms=20), EpochEvent(lease_epoch=1, sent_at_ms=0),
                     SessionEnd(reason="client_end"),
                     ErrorEvent(code="flood", message="m", fatal=True)):
        assert event_type_of(protocol) is None, protocol


def test_records_of_the_subscribed_types_become_record_events_best_effort() -> None:
    clock = VirtualClock()
    counter = iter(range(10**6))
    log = SignalLog("s1", "p@1.0.0", clock, lambda: next(counter))
    log.payload_sink = lambda rec, payload: None
    hub = SubscriptionHub(log)
    q = OutboundQueue(max_audio=4, max_events=4)
    fwd = RecordForwarder(hub, frozenset({"metrics", "text"}), q)
    log.telemetry(kind="debug", reason="not subscribed")
    log.telemetry(kind="metric", payload=MetricsPayload(name="node_latency_ms", value=2.0,
                                                         unit="ms"))
    log.telemetry(kind="audit", reason="a metrics-typed note")
    for _ in range(3):  # past half the queue: dropped, never an overflow
        log.telemetry(kind="audit", reason="more")
    assert (fwd.sent, fwd.dropped, q.overflowed) == (2, 3, False)
    first = decode_server(encode_message(q._items[0]))  # type: ignore[arg-type]
    assert isinstance(first, RecordEvent) and first.event_type == "metrics"
    assert first.payload is not None
    assert (first.payload["name"], first.payload["value"]) == ("node_latency_ms", 2.0)
    fwd.close()
    log.telemetry(kind="audit", reason="after the close")
    assert fwd.sent == 2 and not hub.active
