"""F-022: one pipeline emits audio, text, control, metrics, debug and error events.

The graph comes from a PipelineSpec whose custom nodes declare their ports. A
session runs end to end on the virtual clock: every event type reaches its
declared output edge or the in-band record stream, a catch-all subscriber sees
all six types, and type-filtered subscribers see only their type. A control
event asked for by a node ends the turn through a control subscriber; a node
raising becomes a dead letter and an ``error`` record; debug records exist only
in the session that switched debug on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from rspp.contracts import (
    ControlSignal,
    DebugPayload,
    EventRecord,
    EventType,
    Lane,
    MetricsPayload,
    TextPayload,
)
from rspp.kernel import (
    Delivery,
    Event,
    Node,
    NodeRegistry,
    RuntimeGraph,
    SessionOptions,
    classify_event,
    to_record,
)
from rspp.spec import compile_spec, parse_spec_text
from rspp.testing import GraphHarness, audio_frames

pytestmark = pytest.mark.integration

Check = Callable[[Iterable[Any]], int]

SPEC = """\
name: event-types
version: 1.0.0
nodes:
  - id: src
    type: acme.multi
    ports:
      inputs: [{name: audio, type: audio}]
      outputs:
        - {name: audio, type: audio}
        - {name: text, type: text}
        - {name: control, type: control}
        - {name: metrics, type: any}
        - {name: debug, type: any}
  - id: faulty
    type: acme.faulty
    ports:
      inputs: [{name: audio, type: audio}]
      outputs: [{name: audio, type: audio}]
edges:
  - {from: input.audio, to: src.audio}
  - {from: input.audio, to: faulty.audio}
  - {from: src.audio, to: output.audio}
  - {from: src.text, to: output.text}
  - {from: src.control, to: output.control}
  - {from: src.metrics, to: output.metrics}
  - {from: src.debug, to: output.debug}
"""
PORT_TYPE = {"audio": EventType.AUDIO, "text": EventType.TEXT, "control": EventType.CONTROL,
             "metrics": EventType.METRICS, "debug": EventType.DEBUG}
FRAMES = 10


class Multi(Node):
    """Forwards audio; emits text, metrics, debug and (at end of speech) a control request."""

    type_name = "acme.multi"
    inputs = ("audio",)
    outputs = ("audio", "text", "control", "metrics", "debug")

    def __init__(self, ctx: Any, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.n = 0

    def process(self, event: Event, port: str) -> None:
        self.n += 1
        emit = self.ctx.emit
        emit(event, "audio")
        emit(Event("metric", MetricsPayload(name="frames_seen", value=float(self.n),
                                            unit="count"), lane=Lane.TELEMETRY), "metrics")
        if self.n == 3:
            emit(Event("debug", DebugPayload(message="third frame", fields={"n": "3"})),
                 "debug")
        if self.n == 5:
            body = TextPayload(text="hello", is_final=True, revision=1, segment_id="u1")
            emit(Event("text", body, final=True, revision=1), "text")
        if (event.attrs or {}).get("eou"):
            emit(Event("end_of_turn_request", None, lane=Lane.CONTROL), "control")


class Faulty(Node):
    """Raises on the frame marked ``boom`` (-> dead letter, error record)."""

    type_name = "acme.faulty"
    inputs = ("audio",)
    outputs = ("audio",)

    def process(self, event: Event, port: str) -> None:
        if (event.attrs or {}).get("boom"):
            raise RuntimeError("faulty node exploded on purpose")


def _graph_and_registry() -> tuple[RuntimeGraph, NodeRegistry]:
    reg = NodeRegistry()
    reg.register(Multi)
    reg.register(Faulty)
    return RuntimeGraph.from_definition(compile_spec(parse_spec_text(SPEC))), reg


def _frames() -> list[Event]:
    frames = audio_frames(FRAMES)
    frames[4].attrs = {"boom": True}
    frames[-1].attrs = {"eou": True}
    return frames


async def _run(debug: bool, check: Check) -> dict[str, Any]:
    graph, reg = _graph_and_registry()
    sid = f"types-debug-{str(debug).lower()}"
    async with GraphHarness(graph, registry=reg, session_id=sid,
                            options=SessionOptions(debug=debug)) as h:
        s = h.session
        hub = s.subscriptions
        everything = hub.subscribe()
        by_type = {t: hub.subscribe(t) for t in EventType}
        text_on_port = hub.subscribe("text", ports=["text"], records=False)
        ended: list[str | None] = []

        def end_turn_on_request(d: Delivery) -> None:
            if isinstance(d.item, Event) and d.item.kind == "end_of_turn_request":
                ended.append(s.end_turn())

        acting = hub.subscribe(EventType.CONTROL, handler=end_turn_on_request)

        def broken(d: Delivery) -> None:
            raise ValueError("subscriber bug")

        bad = hub.subscribe(EventType.METRICS, handler=broken)
        s.begin_turn("turn-1")
        await h.feed(_frames(), "audio")
        await h.drain()
        metric_records = s.emit_metrics()
        outputs = {p: h.outputs(p) for p in PORT_TYPE}
        result = {
            "everything": everything, "by_type": by_type,
            "text_on_port": list(text_on_port.deliveries), "ended": ended,
            "acting": acting.received, "bad": bad, "outputs": outputs, "session": s,
            "metric_records": metric_records, "records": list(s.signals.records),
        }
        result["metrics_at_close"] = len(by_type[EventType.METRICS].deliveries)
        bad.close()
    check(result["records"])
    check(to_record(e, session_id=sid, pipeline_version="1.0.0", runtime_ms=0, wall_ms=0,
                    edge_id=f"output.{p}") for p, evs in outputs.items() for e in evs)
    return result


async def test_every_event_type_is_emitted_delivered_and_filterable(check_records: Check) -> None:
    r = await _run(True, check_records)
    everything: list[Delivery] = list(r["everything"].deliveries)
    seen = Counter(d.type for d in everything)
    assert set(seen) == set(EventType), seen  # all six types in one session

    # each type-filtered subscriber sees exactly its type, and all of it
    for t, sub in r["by_type"].items():
        got = list(sub.deliveries)
        assert got and all(d.type is t for d in got), t
        assert [d.item for d in got] == [d.item for d in everything if d.type is t]

    # each type reached its declared output edge (turn boundaries go to every output)
    outs: dict[str, list[Event]] = r["outputs"]
    for port, t in PORT_TYPE.items():
        data = [e for e in outs[port] if e.kind not in ("turn_start", "turn_end")]
        assert data and {classify_event(e) for e in data} == {t}, port
    assert len([e for e in outs["audio"] if e.kind == "audio_chunk"]) == FRAMES
    assert [e.payload.value for e in outs["metrics"] if e.kind == "metric"] == [
        float(i) for i in range(1, FRAMES + 1)]
    (text,) = [e for e in outs["text"] if e.kind == "text"]
    assert isinstance(text.payload, TextPayload) and text.payload.text == "hello"

    # port + type filter, outputs only
    assert [d.item for d in r["text_on_port"]] == [text]

    # control: the node's request reached the control edge; the subscriber ended the turn,
    # and the kernel's turn boundary events (control type) reached every output
    assert r["ended"] == ["turn-1"] and r["session"].turn_id is None
    control = [d.item for d in r["by_type"][EventType.CONTROL].deliveries]
    kinds = Counter(e.kind for e in control if isinstance(e, Event))
    assert kinds == {"turn_start": len(PORT_TYPE), "end_of_turn_request": 1,
                     "turn_end": len(PORT_TYPE)}
    assert r["acting"] == len(control)
    for port in PORT_TYPE:
        assert [e.kind for e in outs[port] if e.lane is Lane.CONTROL and e.kind.startswith(
            "turn_")] == ["turn_start", "turn_end"]

    # error: the raising node became a dead letter and an in-band error record
    (dl,) = r["session"].dead_letters
    assert dl.error.node_id == "faulty" and dl.event.attrs == {"boom": True}
    errors = [d.item for d in r["by_type"][EventType.ERROR].deliveries]
    assert [(e.node_id, e.lane) for e in errors] == [("faulty", "TelemetryLane")]
    assert errors[0] is dl.record

    # metrics: in-band node metrics events plus the kernel's metrics records
    metrics = r["by_type"][EventType.METRICS].deliveries
    kernel_metrics = {id(rec) for rec, _ in r["metric_records"]}
    assert kernel_metrics <= {id(d.item) for d in metrics if isinstance(d.item, EventRecord)}
    # a failing subscriber never broke the session; closed, it receives nothing more
    assert len(r["bad"].errors) == r["metrics_at_close"] < len(metrics)

    # debug: the node's debug event plus the kernel's debug records (debug is on)
    debug = [d.item for d in r["by_type"][EventType.DEBUG].deliveries]
    assert any(isinstance(e, Event) and isinstance(e.payload, DebugPayload) for e in debug)
    assert any(isinstance(e, EventRecord) and (e.reason or "").startswith("control:")
               for e in debug)
    assert not any(isinstance(d.item, ControlSignal) and d.type is not EventType.CONTROL
                   for d in everything)


async def test_debug_records_only_when_debug_is_on_and_bad_filters_are_rejected(
    check_records: Check,
) -> None:
    r = await _run(False, check_records)
    debug = [d.item for d in r["by_type"][EventType.DEBUG].deliveries]
    assert debug and not any(isinstance(e, EventRecord) for e in debug)  # no kernel debug
    assert all(isinstance(e, Event) and e.node_id == "src" for e in debug)
    hub = r["session"].subscriptions
    with pytest.raises(ValueError, match=r"unknown event type 'logs'.*'metrics'"):
        hub.subscribe(["text", "logs"])
    with pytest.raises(ValueError, match="empty"):
        hub.subscribe([])
