"""Session actor: control preemption, turns, cancellation fence, hooks, isolation,
dead letters, correlation, multi-version
(F-012..F-014, F-016, F-131, F-132, F-134, F-142, F-147)."""

from __future__ import annotations

import asyncio

import pytest

from rspp.contracts import SignalName
from rspp.kernel import (
    BufferConfig,
    ControlCommand,
    Event,
    GraphBuilder,
    Node,
    NodeHookError,
    NodeRegistry,
    SessionActor,
    SessionOptions,
    VirtualClock,
    to_record,
)
from rspp.testing import GraphHarness, audio_frames

pytestmark = pytest.mark.integration


class Slow(Node):
    """Async node taking 10 ms (virtual) per event; records what it saw."""

    type_name = "t.slow"
    cancel_mode = "soft"

    def __init__(self, ctx, params=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, params)
        self.seen: list[int] = []
        self.cancels: list[tuple[str | None, str]] = []
        self.barge_ins = 0

    async def process(self, event: Event, port: str) -> Event:
        await self.ctx.clock.sleep(0.01)
        self.seen.append(event.seq)
        return event

    def on_cancel(self, turn_id: str | None, reason: str) -> None:
        self.cancels.append((turn_id, reason))

    def on_barge_in(self, turn_id: str | None) -> None:
        self.barge_ins += 1


class Counter(Node):
    """Inline, turn-scoped: counts events of the current turn in its state handle."""

    type_name = "t.counter"
    scope = "turn"

    def __init__(self, ctx, params=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, params)
        self.turns: list[str] = []

    def process(self, event: Event, port: str) -> Event:
        n = int(self.ctx.state.get("n", 0)) + 1  # type: ignore[arg-type]
        self.ctx.state.set("n", n)
        event.attrs = {**(event.attrs or {}), "n_in_turn": n, "ctx_turn": self.ctx.turn_id}
        self.ctx.telemetry.debug("counted", n=n)
        return event

    def on_turn_start(self, turn_id: str) -> None:
        self.turns.append(turn_id)


def reg() -> NodeRegistry:
    r = NodeRegistry()
    for cls in (Slow, Counter, Crashy, Hooky):
        r.register(cls)
    return r


def slow_graph(items: int = 1000) -> GraphBuilder:
    b = GraphBuilder("ctl", "1.0.0").node("slow", "t.slow")
    b.chain("slow", buffer=BufferConfig(max_items=items, max_queue_ms=100_000,
                                        max_latency_ms=100_000))
    return b


async def test_control_preempts_saturated_data_lane(check_records) -> None:
    """F-142/F-147: cancel is handled before queued data; queued data of the turn is flushed."""
    clock = VirtualClock()
    h = GraphHarness(slow_graph().build(), registry=reg(), clock=clock)
    s = h.session
    seen_at_control: list[int] = []
    s.on_control(lambda cmd: seen_at_control.append(len(s.hosts["slow"].node.seen)))
    async with h:
        turn = s.begin_turn()
        for f in audio_frames(200):
            s.push(f)
        for _ in range(30):  # let the worker start chewing
            await asyncio.sleep(0)
        node = s.hosts["slow"].node
        at_issue = len(node.seen)
        assert 0 < at_issue < 100
        s.cancel_turn(turn, reason="barge_in_cancel")
        await h.drain()
        assert seen_at_control[0] == 0  # turn_start control ran before any data
        # cancel did not wait behind the queued frames: at most the in-flight one finished
        assert seen_at_control[1] - at_issue <= 1
        assert len(node.seen) - at_issue <= 1 and node.cancels == [(turn, "barge_in_cancel")]
        drops = h.drops()
        assert drops and all(d.reason == "barge_in_cancel" for d in drops)
        dropped = sum(d.seq_range.end - d.seq_range.start + 1 for d in drops)
        assert dropped + len(node.seen) == 200
        # egress fence: nothing of the cancelled turn is delivered after acceptance
        outs = [e for e in h.data_outputs() if e.turn_id == turn]
        assert len(outs) <= len(node.seen) and s.gate.fenced_count >= 0  # type: ignore[attr-defined]
        check_records(h.records())


async def test_control_handler_can_consume_command() -> None:
    """Hook point: a handler returning False stops the kernel's own action."""
    h = GraphHarness(slow_graph().build(), registry=reg())
    async with h:
        h.session.on_control(lambda cmd: False if cmd.name == "cancel" else None)
        h.session.cancel_turn("t-x")
        await h.drain()
        assert h.session.hosts["slow"].node.cancels == []


async def test_barge_in_runs_hooks_and_fences_egress() -> None:
    h = GraphHarness(slow_graph().build(), registry=reg())
    s = h.session
    async with h:
        t1 = s.begin_turn()
        s.barge_in()
        await h.drain()
        s.push(audio_frames(1)[0])  # late frame of the cancelled turn (still current id)
        await h.drain()
        node = s.hosts["slow"].node
        assert node.barge_ins == 1 and node.cancels == [(t1, "barge_in")]
        assert [e for e in h.data_outputs() if e.turn_id == t1] == []


async def test_turn_primitives_numbered_and_reset_state(check_records) -> None:
    """F-013, F-014: turn_start/turn_end events, numbered turns, state reset, correlation."""
    b = GraphBuilder("turns", "1.0.0").node("c", "t.counter").chain("c")
    h = GraphHarness(b.build(), registry=reg(), options=SessionOptions(debug=True))
    s = h.session
    async with h:
        for _ in range(2):
            s.begin_turn()
            await h.feed(audio_frames(3))
            s.end_turn()
            await h.drain()
        outs = h.outputs()
        kinds = [e.kind for e in outs]
        assert kinds == (["turn_start"] + ["audio_chunk"] * 3 + ["turn_end"]) * 2
        data = h.data_outputs()
        assert [e.attrs["n_in_turn"] for e in data] == [1, 2, 3, 1, 2, 3]
        turns = [e.turn_id for e in data]
        assert turns == ["test-session:turn-1"] * 3 + ["test-session:turn-2"] * 3
        assert all(e.attrs["ctx_turn"] == e.turn_id for e in data)
        assert s.hosts["c"].node.turns == ["test-session:turn-1", "test-session:turn-2"]
        recs = [to_record(e, session_id=s.session_id, pipeline_version=s.pipeline_version,
                          runtime_ms=0, wall_ms=0, edge_id="c.out->output.audio") for e in data]
        assert {(r.session_id, r.turn_id) for r in recs} == {
            ("test-session", "test-session:turn-1"), ("test-session", "test-session:turn-2")}
        check_records(recs)
        assert len(s.debug_events()) == 6  # debug on for this session (F-027)


async def test_debug_events_off_by_default() -> None:
    """F-027: default sessions emit no debug events; enabling is per session."""
    b = GraphBuilder("dbg", "1.0.0").node("c", "t.counter").chain("c")
    async with GraphHarness(b.build(), registry=reg()) as h:
        await h.feed(audio_frames(3))
        assert h.session.debug_events() == []
        h.session.set_debug(True)
        await h.feed(audio_frames(2))
        assert len(h.session.debug_events()) == 2
        assert [e.attrs["n_in_turn"] for e in h.data_outputs()] == [1, 2, 3, 4, 5]


class Hooky(Node):
    type_name = "t.hooky"
    hook_timeout_ms = 30
    calls: list[str] = []

    async def on_start(self) -> None:
        Hooky.calls.append(f"start:{self.ctx.node_id}")
        if self.params.get("hang_start"):
            await self.ctx.clock.sleep(5)

    def on_stop(self) -> None:
        Hooky.calls.append(f"stop:{self.ctx.node_id}")


async def test_hooks_run_exactly_once() -> None:
    """F-012: start/stop hooks once per node instance."""
    Hooky.calls = []
    b = GraphBuilder("hooks", "1.0.0").node("h1", "t.hooky").node("h2", "t.hooky")
    b.chain("h1", "h2")
    s = SessionActor(b.build(), session_id="s", registry=reg(), clock=VirtualClock())
    await s.start()
    await s.stop()
    await s.stop()
    assert Hooky.calls == ["start:h1", "start:h2", "stop:h2", "stop:h1"]


async def test_hook_timeout_is_controlled_error_and_shutdown() -> None:
    """F-012: a hanging on_start gives NodeHookError; started nodes are stopped."""
    Hooky.calls = []
    b = GraphBuilder("hooks", "1.0.0").node("h1", "t.hooky")
    b.node("h2", "t.hooky", params={"hang_start": True}).chain("h1", "h2")
    s = SessionActor(b.build(), session_id="s", registry=reg(), clock=VirtualClock())
    with pytest.raises(NodeHookError, match=r"h2.*on_start.*hook_timeout_ms=30"):
        await s.start()
    assert s.state == "failed"
    assert Hooky.calls == ["start:h1", "start:h2", "stop:h1"]


class Crashy(Node):
    type_name = "t.crashy"

    def process(self, event: Event, port: str) -> Event:
        if event.attrs and event.attrs.get("poison"):
            raise ZeroDivisionError("poisoned frame")
        return event


def crash_graph(on_error: str = "dead_letter") -> GraphBuilder:
    return GraphBuilder("crash", "1.0.0").node("x", "t.crashy", on_error=on_error).chain("x")


async def test_crash_goes_to_dead_letter_and_session_continues(check_records) -> None:
    """F-131, F-132, F-134: error code, node id, message; event to dead-letter; others fine."""
    async with GraphHarness(crash_graph().build(), registry=reg()) as h:
        frames = audio_frames(5)
        frames[2].attrs = {"poison": True}
        await h.feed(frames)
        assert len(h.data_outputs()) == 4
        (dl,) = h.session.dead_letters
        assert dl.error.error_code == "runtime_internal_error"
        assert dl.error.node_id == "x" and "ZeroDivisionError" in dl.error.message
        assert dl.error.default_action == "dead_letter" and dl.error.retryable is False
        assert dl.event is frames[2]
        assert dl.record.reason == "runtime_internal_error" and dl.record.node_id == "x"
        check_records([dl.record])
        assert h.session.state == "running"


async def test_crash_ending_one_session_leaves_others_running() -> None:
    """F-134: policy end_session fails that session only."""
    r, clock, graph = reg(), VirtualClock(), crash_graph("end_session").build()
    async with (GraphHarness(graph, registry=r, clock=clock, session_id="a") as ha,
                GraphHarness(graph, registry=r, clock=clock, session_id="b") as hb):
        a, b = ha.session, hb.session
        bad = audio_frames(1)[0]
        bad.attrs = {"poison": True}
        a.push(bad)
        for f in audio_frames(3):
            b.push(f)
        await b.drain()
        for _ in range(10):
            await asyncio.sleep(0)
        assert a.state == "failed" and a.failure == "runtime_internal_error"
        assert b.state == "running" and len(b.outputs["audio"]) == 3
    assert b.state == "stopped"


class Upper(Node):
    type_name = "t.upper"

    def process(self, event: Event, port: str) -> Event:
        return event.derive("text", str(event.payload).upper())


async def test_two_versions_side_by_side_without_leaks() -> None:
    """F-016: sessions pinned to v1 and v2 run concurrently; no state/correlation leaks."""
    r = reg()
    r.register(Upper)
    clock = VirtualClock()
    v1 = GraphBuilder("p", "1.0.0").node("c", "t.counter").chain("c", entry="text", exit_="text")
    v2 = GraphBuilder("p", "2.0.0").node("c", "t.counter").node("u", "t.upper")
    v2.chain("c", "u", entry="text", exit_="text")
    async with (GraphHarness(v1.build(), registry=r, clock=clock, session_id="s1") as h1,
                GraphHarness(v2.build(), registry=r, clock=clock, session_id="s2") as h2):
        s1, s2 = h1.session, h2.session
        for s in (s1, s2):
            s.begin_turn()
            for w in ("hi", "there"):
                s.push(Event("text", w), "text")
        await s1.drain()
        await s2.drain()
    o1 = [e for e in s1.outputs["text"] if e.kind == "text"]
    o2 = [e for e in s2.outputs["text"] if e.kind == "text"]
    assert [e.payload for e in o1] == ["hi", "there"]
    assert [e.payload for e in o2] == ["HI", "THERE"]
    assert {e.turn_id for e in o1} == {"s1:turn-1"} and {e.turn_id for e in o2} == {"s2:turn-1"}
    assert s1.pipeline_version == "p@1.0.0" and s2.pipeline_version == "p@2.0.0"
    assert s1.hosts["c"].node is not s2.hosts["c"].node
    assert [e.attrs["n_in_turn"] for e in o1] == [1, 2]
    assert s1.hosts["c"].node.ctx.state.get("n") == 2 == s2.hosts["c"].node.ctx.state.get("n")


async def test_control_command_object_shape() -> None:
    cmd = ControlCommand("cancel", turn_id="t", reason="r")
    assert cmd.scope == "turn" and cmd.data == {}
    assert SignalName.CANCEL == "cancel"


async def test_turn_start_via_control_hook_applies_turn_id() -> None:
    """Hook point used by the turn driver: control('turn_start') sets the ingress turn."""
    b = GraphBuilder("turns", "1.0.0").node("c", "t.counter").chain("c")
    async with GraphHarness(b.build(), registry=reg()) as h:
        s = h.session
        s.control("turn_start", turn_id="T-7")
        await h.drain()
        await h.feed(audio_frames(2))
        s.control("turn_end", turn_id="T-7")
        await h.drain()
        assert s.turn_id is None and s.turn_index == 1
        assert [e.turn_id for e in h.data_outputs()] == ["T-7", "T-7"]
        assert h.outputs()[0].kind == "turn_start"


async def test_failing_output_sink_does_not_kill_the_session() -> None:
    """F-134: an exception in the egress sink is recorded; the scheduler keeps running."""
    b = GraphBuilder("sink", "1.0.0").node("c", "t.counter").chain("c")
    seen: list[int] = []

    def sink(port: str, ev: Event) -> None:
        if ev.kind != "audio_chunk":
            return
        if ev.sample_index == 320:
            raise OSError("socket closed")
        seen.append(ev.sample_index or 0)

    s = SessionActor(b.build(), session_id="s", registry=reg(), clock=VirtualClock(),
                     output_sink=sink)
    async with s:
        turn = s.begin_turn()
        for f in audio_frames(3):  # queued behind the control: dispatched by the scheduler
            s.push(f)
        await s.drain()
        assert seen == [0, 640]
        (dl,) = s.dead_letters
        assert dl.error.node_id == "egress" and "OSError" in dl.error.message
        assert dl.event.turn_id == turn and s.state == "running"


async def test_control_lane_is_bounded_and_never_drops() -> None:
    from rspp.errors import RuntimeKernelError
    from rspp.kernel._control import CONTROL_LANE_LIMIT

    s = SessionActor(slow_graph().build(), session_id="s", registry=reg(), clock=VirtualClock())
    for _ in range(CONTROL_LANE_LIMIT):
        s.control("noop")
    with pytest.raises(RuntimeKernelError, match="control is never dropped"):
        s.control("noop")


class Stubborn(Node):
    """Async node that, once cancelled, still needs ``release`` before it returns."""

    type_name = "t.stubborn"
    release: asyncio.Event

    async def process(self, event: Event, port: str) -> Event:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await Stubborn.release.wait()
            raise
        return event


async def test_cancelling_the_caller_of_stop_is_not_swallowed() -> None:
    """"CancelledError never swallowed": stop() waiting on a slow worker stays cancellable."""
    Stubborn.release = asyncio.Event()
    r = reg()
    r.register(Stubborn)
    b = GraphBuilder("stub", "1.0.0").node("x", "t.stubborn").chain("x")
    s = SessionActor(b.build(), session_id="s", registry=r, clock=VirtualClock())
    await s.start()
    s.push(audio_frames(1)[0])
    for _ in range(50):
        await asyncio.sleep(0)
    assert s.hosts["x"].busy
    stopper = asyncio.create_task(s.stop())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not stopper.done()  # waiting for the stubborn worker
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert stopper.cancelled()
    Stubborn.release.set()
    await s.stop()  # a later stop still completes and runs the hooks once
    assert s.state == "stopped"
