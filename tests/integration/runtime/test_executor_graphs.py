"""Graph execution on compiled specs: instantiate, fan-out, merge, select, conditions,
fallback, multiple outputs, determinism (F-002, F-004..F-009, F-011, F-018, F-023, F-024)."""

from __future__ import annotations

import pytest

from rspp.contracts import PayloadClass, SignalName
from rspp.kernel import (
    BufferConfig,
    Event,
    GraphBuilder,
    Node,
    NodeRegistry,
    RuntimeGraph,
    SessionActor,
    VirtualClock,
    to_record,
)
from rspp.spec import compile_spec, parse_spec_text
from rspp.testing import GraphHarness, audio_frames

pytestmark = pytest.mark.integration


class Tag(Node):
    """Appends its node id to the event's ``path`` attribute (inline)."""

    type_name = "acme.tag"
    inputs = ("audio",)
    outputs = ("audio",)

    def process(self, event: Event, port: str) -> Event:
        attrs = dict(event.attrs or {})
        attrs["path"] = (*attrs.get("path", ()), self.ctx.node_id)
        event.attrs = attrs
        return event


class SlowTag(Tag):
    """Async variant: sleeps ``delay_ms`` (virtual) on its worker, then tags."""

    type_name = "acme.slowtag"

    async def process(self, event: Event, port: str) -> Event:  # type: ignore[override]
        await self.ctx.clock.sleep(float(self.params.get("delay_ms", 1)) / 1000)
        return Tag.process(self, event, port)


SPEC = """
name: fanout
version: {version}
profile: simple/v1
nodes:
  - id: a
    type: acme.tag
    ports: {{inputs: [{{name: audio, type: audio}}], outputs: [{{name: audio, type: audio}}]}}
  - id: b
    type: acme.tag
    ports: {{inputs: [{{name: audio, type: audio}}], outputs: [{{name: audio, type: audio}}]}}
  - id: c
    type: acme.slowtag
    params: {{delay_ms: 3}}
    ports:
      inputs: [{{name: audio, type: audio}}]
      outputs: [{{name: audio, type: audio}}]
      is_async: true
edges:
  - {{from: input.audio, to: a.audio}}
  - {{from: a.audio, to: b.audio}}
  - {{from: a.audio, to: c.audio, when: "loud == True"}}
  - {{from: b.audio, to: output.left}}
  - {{from: c.audio, to: output.right}}
"""


def registry() -> NodeRegistry:
    r = NodeRegistry()
    r.register(Tag)
    r.register(SlowTag)
    return r


def graph(version: str = "1.0.0") -> RuntimeGraph:
    return RuntimeGraph.from_definition(compile_spec(parse_spec_text(SPEC.format(version=version))))


async def test_spec_instantiates_session_graph_and_runs(check_records) -> None:
    """F-002, F-011: compiled spec -> nodes constructed, edges connected, RUNNING."""
    h = GraphHarness(graph(), registry=registry())
    s = h.session
    assert set(s.hosts) == {"a", "b", "c"}
    assert not s.hosts["a"].is_async and s.hosts["c"].is_async
    assert "a.audio->c.audio" in s.edge_buffers  # async target gets a bounded buffer
    async with h:
        assert s.state == "running"
        assert s.signals.records[0].reason == "session_running"
        await h.feed(audio_frames(3))
        out = h.outputs("left")
        assert [e.attrs["path"] for e in out] == [("a", "b")] * 3
        recs = [to_record(e, session_id=s.session_id, pipeline_version=s.pipeline_version,
                          runtime_ms=0, wall_ms=0, edge_id="b.audio->output.left") for e in out]
        assert all(r.payload_class == PayloadClass.AUDIO_RAW and r.media_time for r in recs)
        check_records(recs)
        check_records(s.signals.records)
    assert s.state == "stopped"


async def test_fan_out_and_conditional_edges(check_records) -> None:
    """F-004 (both branches get the event, declared order) and F-018 (conditions + records)."""
    async with GraphHarness(graph(), registry=registry()) as h:
        frames = audio_frames(4)
        for i, f in enumerate(frames):
            f.attrs = {"loud": i % 2 == 0}
        await h.feed(frames)
        left = [e.sample_index for e in h.outputs("left")]
        right = [e.sample_index for e in h.outputs("right")]
        assert left == [0, 320, 640, 960]
        assert right == [0, 640]  # only loud frames take the conditional branch
        assert [e.attrs["path"] for e in h.outputs("right")] == [("a", "c")] * 2
        routing = [r for r in h.records()
                   if getattr(r, "reason", "").startswith("routing_decision")]
        assert [r.reason for r in routing] == [
            "routing_decision:taken", "routing_decision:skipped", "routing_decision:taken",
            "routing_decision:skipped",
        ]
        assert all(r.edge_id == "a.audio->c.audio" for r in routing)
        check_records(routing)


async def test_identical_order_across_runs() -> None:
    """F-008: same inputs, same per-edge order and at-most-once delivery, run after run."""

    async def run() -> list[tuple[str, int, int, tuple[str, ...]]]:
        async with GraphHarness(graph(), registry=registry(), clock=VirtualClock()) as h:
            frames = audio_frames(40)
            for i, f in enumerate(frames):
                f.attrs = {"loud": i % 3 != 0}
            await h.feed(frames[:20], drain=False)
            await h.feed(frames[20:])
            return [(p, e.seq, e.sample_index, e.attrs["path"])  # type: ignore[misc]
                    for p in ("left", "right") for e in h.outputs(p)]

    first = await run()
    assert first == await run() == await run()
    right = [x[2] for x in first if x[0] == "right"]
    assert len(right) == len(set(right))  # at most once
    assert right == sorted(right)  # per-edge order preserved


class Asr(Node):
    """Emits growing partials per audio frame and a final on ``audio_end`` (two outputs)."""

    type_name = "fake.asr"
    inputs = ("audio",)
    outputs = ("partial", "final")
    streaming = "partial_and_final"

    def __init__(self, ctx, params=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, params)
        self.words: list[str] = []

    def process(self, event: Event, port: str) -> None:
        if event.kind == "audio_end":
            text = " ".join(self.words)
            self.ctx.emit(event.derive("text", text, final=True, revision=len(self.words)),
                          "final")
            self.words = []
            return
        assert event.audio_format is not None and event.audio_format.sample_rate == 16000
        self.words.append(f"w{len(self.words)}")
        self.ctx.emit(event.derive("text", " ".join(self.words), final=False,
                                   revision=len(self.words) - 1), "partial")


async def test_multiple_output_streams_partial_then_final() -> None:
    """F-009, F-023, F-024: partial stream with monotonic revisions, one final per segment."""
    b = GraphBuilder("asr", "1.0.0").node("asr", "fake.asr")
    b.edge("input.audio", "asr.audio").edge("asr.partial", "output.partial")
    b.edge("asr.final", "output.final")
    reg = NodeRegistry()
    reg.register(Asr)
    async with GraphHarness(b.build(), registry=reg) as h:
        await h.feed([*audio_frames(5), Event("audio_end")])
        await h.feed([*audio_frames(2), Event("audio_end")])
        partial = h.outputs("partial")
        final = h.outputs("final")
        assert [e.payload for e in final] == ["w0 w1 w2 w3 w4", "w0 w1"]
        assert all(e.final for e in final) and not any(e.final for e in partial)
        revs = [e.revision for e in partial]
        assert revs == [0, 1, 2, 3, 4, 0, 1]
        seqs = [e.seq for e in partial]
        assert seqs == sorted(seqs)
        assert all(e.parent_id is None or e.parent_id for e in partial)


class Src(Node):
    type_name = "acme.src"
    inputs = ("in",)

    def process(self, event: Event, port: str) -> Event:
        event.attrs = {**(event.attrs or {}), "src": self.ctx.node_id}
        return event


def merge_graph(rule: str) -> RuntimeGraph:
    b = GraphBuilder("merge", "1.0.0")
    b.node("x", "acme.src").node("y", "acme.src").node("m", "merge")
    b.edge("input.x", "x.in").edge("input.y", "y.in")
    b.edge("x.out", "m.in", edge_id="ex").edge("y.out", "m.in", edge_id="ey")
    b.edge("m.out", "output.merged")
    return b.build(merge_rules={"m": (rule, ("ey", "ex"))})


async def test_merge_timestamp_rule_is_deterministic() -> None:
    """F-005: interleaved inputs, one merged stream in (ts, source priority) order."""
    reg = NodeRegistry()
    reg.register(Src)
    import rspp.nodes._builtin_simple as builtins

    reg.register(builtins.MergeNode)
    async with GraphHarness(merge_graph("timestamp"), registry=reg) as h:
        for ts_x, ts_y in ((10, 5), (20, 20), (30, 25)):
            h.session.push(Event("text", f"x{ts_x}", attrs={"ts": ts_x}), "x")
            h.session.push(Event("text", f"y{ts_y}", attrs={"ts": ts_y}), "y")
        await h.drain()
        h.session.end_turn()  # no-op without a turn; flush explicitly
        h.session.hosts["m"].node.flush()  # type: ignore[attr-defined]
        got = [e.payload for e in h.outputs("merged")]
        # ties (20, 20) go to the higher-priority source ey first
        assert got == ["y5", "x10", "y20", "x20", "y25", "x30"]


class Flaky(Node):
    type_name = "acme.flaky"
    inputs = ("in",)
    timeout_ms = 50

    async def process(self, event: Event, port: str) -> Event:
        if event.attrs and event.attrs.get("mode") == "hang":
            await self.ctx.clock.sleep(10)
        if event.attrs and event.attrs.get("mode") == "boom":
            raise RuntimeError("provider exploded")
        return event


class Apology(Node):
    type_name = "acme.apology"
    inputs = ("in",)

    def process(self, event: Event, port: str) -> Event:
        return event.derive("text", "sorry")


async def test_fallback_on_timeout_and_error(check_records) -> None:
    """F-007: primary times out / errors -> fallback path + fallback signal with reason."""
    reg = NodeRegistry()
    reg.register(Flaky)
    reg.register(Apology)
    b = GraphBuilder("fb", "1.0.0")
    b.node("primary", "acme.flaky", fallback="apology").node("apology", "acme.apology")
    b.edge("input.text", "primary.in").edge("primary.out", "output.text")
    b.edge("apology.out", "output.text")
    async with GraphHarness(b.build(), registry=reg) as h:
        await h.feed([Event("text", "ok", attrs={"mode": "ok"}),
                      Event("text", "x", attrs={"mode": "hang"}),
                      Event("text", "y", attrs={"mode": "boom"})], "text")
        assert [e.payload for e in h.outputs("text")] == ["ok", "sorry", "sorry"]
        sigs = h.signals(SignalName.FALLBACK)
        assert [s.reason for s in sigs] == [
            "provider_timeout:primary->apology", "runtime_internal_error:primary->apology",
        ]
        assert [str(s.emitted_by) for s in sigs] == ["RK-17", "RK-13"]
        assert not h.session.dead_letters
        check_records(h.records())


class SlowPass(Node):
    type_name = "acme.slowpass"

    async def process(self, event: Event, port: str) -> Event:
        await self.ctx.clock.sleep(0.001)
        return event


async def test_session_from_builder_buffers_between_async_nodes() -> None:
    """Async chain keeps order through bounded buffers (sanity for the executor)."""
    reg = NodeRegistry()
    reg.register(SlowPass)
    b = GraphBuilder("chain", "1.0.0")
    for i in range(3):
        b.node(f"n{i}", "acme.slowpass")
    b.chain("n0", "n1", "n2", buffer=BufferConfig(max_items=500))
    async with GraphHarness(b.build(), registry=reg) as h:
        await h.feed(audio_frames(100))
        out = h.outputs()
        assert [e.sample_index for e in out] == [i * 320 for i in range(100)]
        assert isinstance(h.session, SessionActor)


async def test_runs_on_the_system_clock_too() -> None:
    """The same graph on real time (SystemClock): ordered, complete, timeouts armed."""
    from rspp.kernel import SystemClock

    reg = NodeRegistry()
    reg.register(SlowPass)
    reg.register(Flaky)
    b = GraphBuilder("real", "1.0.0").node("s", "acme.slowpass").node("f", "acme.flaky")
    b.chain("s", "f", entry="text", exit_="text")
    async with GraphHarness(b.build(), registry=reg, clock=SystemClock()) as h:
        await h.feed([Event("text", str(i), attrs={"mode": "ok"}) for i in range(20)], "text")
        assert [e.payload for e in h.outputs("text")] == [str(i) for i in range(20)]
        await h.feed([Event("text", "late", attrs={"mode": "hang"})], "text")
        (dl,) = h.session.dead_letters
        assert dl.error.error_code == "provider_timeout"
