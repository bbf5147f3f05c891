"""A turn's streams end where its data drained (``stream_end``; truth table T6 without ``eos``).

A node flags the last event it emits for a turn on a port (``LAST_OF_TURN``); once no
node downstream of that port holds an event of the turn, every output reachable from it
gets one ControlLane ``stream_end`` of the turn, after the turn's data. Nodes never see
it, it takes no runtime sequence number, and nothing is sent for a port whose turn is
not flagged.
"""

from __future__ import annotations

import pytest

from rspp.contracts import Lane
from rspp.kernel import LAST_OF_TURN, Event, EventKind, GraphBuilder, Node, NodeRegistry
from rspp.testing import GraphHarness

pytestmark = pytest.mark.integration


class Split(Node):
    """Async: each input text goes out as two words; the second is flagged when the
    input asks for it (``attrs["last"]``)."""

    type_name = "acme.split"
    inputs = ("text",)
    outputs = ("out",)

    async def process(self, event: Event, port: str) -> None:
        for i, word in enumerate(str(event.payload).split()):
            last = i == 1 and bool((event.attrs or {}).get("last"))
            out = event.derive("text", word, attrs={LAST_OF_TURN: True} if last else None)
            out.turn_id = event.turn_id
            self.ctx.emit(out, "out")


class Slow(Node):
    """Async: waits ``delay_ms`` of virtual time per event, records what it saw."""

    type_name = "acme.slow"
    inputs = ("text",)
    outputs = ("out",)
    seen: list[tuple[str, str]] = []

    async def process(self, event: Event, port: str) -> Event:
        await self.ctx.clock.sleep(0.05)
        Slow.seen.append((event.kind, str(event.payload)))
        out = event.derive("text", str(event.payload).upper())
        out.turn_id = event.turn_id
        return out


def _graph() -> GraphHarness:
    reg = NodeRegistry()
    reg.register(Split)
    reg.register(Slow)
    b = GraphBuilder("drain", "1.0.0")
    b.node("split", "acme.split").node("slow", "acme.slow")
    b.edge("input.text", "split.text").edge("split.out", "slow.text")
    b.edge("slow.out", "output.text").edge("split.out", "output.raw")
    return GraphHarness(b.build(), registry=reg)


async def test_stream_end_follows_the_turns_data_on_every_reachable_output() -> None:
    Slow.seen = []
    async with _graph() as h:
        await h.feed([Event("text", "hello world", turn_id="t1", attrs={"last": True})], "text")
        text, raw = h.outputs("text"), h.outputs("raw")
    assert [(e.kind, e.payload) for e in text] == [
        ("text", "HELLO"), ("text", "WORLD"), (EventKind.STREAM_END, None)]
    assert [(e.kind, e.payload) for e in raw] == [
        ("text", "hello"), ("text", "world"), (EventKind.STREAM_END, None)]
    for end in (text[-1], raw[-1]):
        assert end.lane is Lane.CONTROL and end.turn_id == "t1"
    # the marker is no event of its own: no node saw it, no sequence number was taken
    assert Slow.seen == [("text", "hello"), ("text", "world")]
    assert text[-1].seq == max(e.seq for e in text[:-1] + raw[:-1])
    assert not h.session.drains.armed


async def test_no_stream_end_without_the_flag_and_one_per_flagged_turn() -> None:
    Slow.seen = []
    async with _graph() as h:
        await h.feed([Event("text", "a b", turn_id="t1"),
                      Event("text", "c d", turn_id="t2", attrs={"last": True})], "text")
        text = h.outputs("text")
    ends = [e for e in text if e.kind == EventKind.STREAM_END]
    assert [e.turn_id for e in ends] == ["t2"]
    assert text[-1] is ends[0]  # after t2's data
    assert [p for _, p in Slow.seen] == ["a", "b", "c", "d"]
