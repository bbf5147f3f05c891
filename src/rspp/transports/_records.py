"""How a transport records the frames that cross it (one definition for every transport).

Ingress events are recorded on edge ``input.<port>`` with no node id and the
payload encoded BEFORE the push (inline nodes may change the event), so
``rspp replay`` rebuilds exactly what entered; outputs on ``output.<port>``
with the replay codec's payload. The loopback (``rspp run``) and the live
network transports (``rspp serve``) both call these, so their timelines
replay alike.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from rspp.contracts import PayloadClass
from rspp.kernel import Event, SessionActor, to_record
from rspp.replay._codec import encode_event

__all__ = ["RecordSink", "encode_ingress", "record_ingress", "record_output"]

RecordSink = Callable[[msgspec.Struct, object], None]


def encode_ingress(event: Event) -> tuple[PayloadClass, object]:
    """The replay payload of an ingress event; take it before the push."""
    return encode_event(event)


def record_output(record: RecordSink, s: SessionActor, port: str, event: Event) -> None:
    """Record one output event that reached the transport (edge ``output.<port>``)."""
    payload_class, payload = encode_event(event)
    rec = to_record(event, session_id=s.session_id, pipeline_version=s.pipeline_version,
                    runtime_ms=s.timebase.runtime_ms(), wall_ms=s.timebase.wall_ms(),
                    edge_id=f"output.{port}", payload_class=payload_class,
                    authority_epoch=s.signals.authority_epoch)
    record(rec, payload)


def record_ingress(record: RecordSink, s: SessionActor, event: Event,
                   encoded: tuple[PayloadClass, object], port: str = "audio") -> None:
    """Record one ingress event (the end-to-end anchor and the replay input)."""
    rec = to_record(event, session_id=s.session_id, pipeline_version=s.pipeline_version,
                    runtime_ms=s.timebase.runtime_ms(), wall_ms=s.timebase.wall_ms(),
                    edge_id=f"input.{port}", payload_class=encoded[0],
                    authority_epoch=s.signals.authority_epoch)
    if rec.node_id is not None:  # an ingress record names no node (copy only then)
        rec = msgspec.structs.replace(rec, node_id=None)
    record(rec, encoded[1])
