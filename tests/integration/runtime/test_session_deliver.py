"""``SessionActor.deliver``: a live transport's ingress, one event at a time, in cause-and-effect
order, waiting on the scheduler (no polling).

The transport records each frame in ``admitted`` (before anything the frame causes); a frame
that makes a node request a control returns only once the scheduler handled that control, so
the next frame cannot be recorded ahead of it, whether the frame was dispatched at once (idle
scheduler) or queued behind others (busy scheduler).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rspp.kernel import (
    ControlCommand,
    Event,
    GraphBuilder,
    Node,
    NodeRegistry,
    SessionActor,
)

pytestmark = pytest.mark.integration

LOG: list[str] = []
SESSION: list[SessionActor] = []


class Marker(Node):
    """Inline: logs each frame; frame 3 asks the session for a control (as a VAD's proposal)."""

    type_name = "t.marker"

    def process(self, event: Event, port: str) -> Event | None:
        LOG.append(f"node:{event.payload}")
        if event.payload == 3:
            SESSION[0].control("probe", reason="frame 3")
        return event


def _session() -> SessionActor:
    registry = NodeRegistry()
    registry.register(Marker)
    b = GraphBuilder("deliver", "1.0.0")
    b.node("m", "t.marker")
    b.edge("input.audio", "m.in").edge("m.out", "output.audio")
    s = SessionActor(b.build(), session_id="d1", registry=registry,
                     output_sink=lambda port, ev: LOG.append(f"out:{ev.payload}"))

    async def handled(cmd: ControlCommand) -> None:
        await asyncio.sleep(0)  # a handler that awaits: the scheduler is busy meanwhile
        LOG.append(f"control:{cmd.name}")

    s.on_control(handled)
    LOG.clear()
    SESSION[:] = [s]
    return s


async def _deliver_frames(s: SessionActor, frames: range) -> None:
    for i in frames:
        ok = await s.deliver(Event("audio_chunk", i), "audio",
                             lambda ev: LOG.append(f"admit:{ev.payload}"))
        assert ok
        LOG.append(f"returned:{i}")


def test_an_idle_session_takes_the_frame_before_deliver_returns() -> None:
    async def main() -> None:
        s = _session()
        await s.start()
        try:
            await _deliver_frames(s, range(3))
        finally:
            await s.stop()

    asyncio.run(main())
    assert LOG == [e for i in range(3) for e in (f"admit:{i}", f"node:{i}", f"out:{i}",
                                                 f"returned:{i}")]


def test_a_control_the_frame_caused_is_handled_before_the_next_frame_is_admitted() -> None:
    async def main() -> None:
        s = _session()
        await s.start()
        try:
            await _deliver_frames(s, range(6))
        finally:
            await s.stop()

    asyncio.run(main())
    assert LOG.index("control:probe") < LOG.index("returned:3") < LOG.index("admit:4")
    assert LOG.index("admit:3") < LOG.index("node:3") < LOG.index("control:probe")
    assert [e for e in LOG if e.startswith("admit:")] == [f"admit:{i}" for i in range(6)]


def test_a_busy_session_queues_the_frame_and_deliver_waits_for_it() -> None:
    async def main() -> list[str]:
        s = _session()
        await s.start()
        try:
            # a control pending: the scheduler is not idle, so the frame is queued
            s.control("probe", reason="before")
            done = asyncio.ensure_future(s.deliver(Event("audio_chunk", 7), "audio",
                                                   lambda ev: LOG.append("admit:7")))
            await done
            seen = list(LOG)
        finally:
            await s.stop()
        return seen

    seen = asyncio.run(main())
    assert seen == ["admit:7", "control:probe", "node:7", "out:7"]


def test_settled_returns_once_the_session_stopped() -> None:
    async def main() -> Any:
        s = _session()
        await s.start()
        await s.stop()
        await s.settled("audio")  # nothing will take queued events: never waits

    asyncio.run(main())
