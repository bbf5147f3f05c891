"""An async node with several inputs takes their data in the order the session routed it.

Its inputs are served as one stream: control first (hooks), then data in routing order
across every input, then telemetry. Serving them input by input let a stream's end
marker on one input overtake the data it closes on another (F-008, F-142).
"""

from __future__ import annotations

import pytest

from rspp.contracts import Lane
from rspp.kernel import Event, GraphBuilder, Node, default_registry
from rspp.testing import GraphHarness

pytestmark = pytest.mark.unit


class _Split(Node):
    """Inline: text ``x`` to port ``a``; ``end`` to port ``b``; ``t:x`` as telemetry on ``a``."""

    type_name = "t.order_split"
    inputs = ("in",)
    outputs = ("a", "b")

    def process(self, event: Event, port: str) -> None:
        text = str(event.payload)
        if text.startswith("t:"):
            self.ctx.emit(event.derive("note", text, lane=Lane.TELEMETRY), "a")
        else:
            self.ctx.emit(event.derive("text", text), "b" if text == "end" else "a")


class _Seen(Node):
    """Async: records ``(port, payload)`` of every event it takes."""

    type_name = "t.order_seen"
    inputs = ("a", "b")
    outputs = ("out",)
    seen: list[tuple[str, str]] = []

    async def process(self, event: Event, port: str) -> None:
        type(self).seen.append((port, str(event.payload)))


for _cls in (_Split, _Seen):
    default_registry.register(_cls)


async def test_data_of_two_inputs_is_taken_in_routing_order_telemetry_last() -> None:
    _Seen.seen = []
    # input b is declared first: served input by input, its end marker would come first
    graph = (GraphBuilder().node("split", "t.order_split").node("seen", "t.order_seen")
             .edge("input.text", "split.in").edge("split.b", "seen.b")
             .edge("split.a", "seen.a").build())
    async with GraphHarness(graph) as h:
        # one burst: the scheduler routes all of it before the worker runs
        await h.feed([Event("text", x) for x in ("t:note", "s1", "s2", "end", "s3")], "text")
    assert _Seen.seen == [("a", "s1"), ("a", "s2"), ("b", "end"), ("a", "s3"),
                          ("a", "t:note")]
