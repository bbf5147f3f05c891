"""Spec-declared edge buffers and built-in types through the executor
(F-010 registry side, F-043, F-131, F-143, F-144)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rspp.contracts import SignalName
from rspp.errors import ProviderError
from rspp.kernel import (
    ERROR_ACTIONS,
    Event,
    Node,
    NodeRegistry,
    ResourceLimitError,
    RuntimeGraph,
    SessionActor,
    VirtualClock,
    default_registry,
)
from rspp.kernel._deadletter import classify_error
from rspp.spec import SpecInvalid, compile_spec, parse_spec_text
from rspp.testing import GraphHarness, audio_frames

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


class Sink(Node):
    """Async consumer taking 20 ms (virtual) per frame."""

    type_name = "acme.sink"
    inputs = ("audio",)
    outputs = ("audio",)

    async def process(self, event: Event, port: str) -> Event:
        await self.ctx.clock.sleep(0.02)
        return event


SPEC = """
name: bounded
version: 1.0.0
profile: simple/v1
nodes:
  - id: fast
    type: acme.sink
    ports: {inputs: [{name: audio, type: audio}], outputs: [{name: audio, type: audio}],
            is_async: true}
  - id: slow
    type: acme.sink
    ports: {inputs: [{name: audio, type: audio}], outputs: [{name: audio, type: audio}],
            is_async: true}
edges:
  - {from: input.audio, to: fast.audio}
  - from: input.audio
    to: slow.audio
    buffer: {strategy: drop, max_queue_items: 5, watermarks: {queue_items: {high: 4, low: 1}}}
  - {from: fast.audio, to: output.a}
  - {from: slow.audio, to: output.b}
"""


def graph() -> RuntimeGraph:
    return RuntimeGraph.from_definition(compile_spec(parse_spec_text(SPEC)))


def reg() -> NodeRegistry:
    r = NodeRegistry()
    r.register(Sink)
    return r


def test_bounds_carry_their_defaulting_source() -> None:
    """F-143: each edge's resolved buffer says whether it came from config or profile."""
    g = graph()
    by_id = {e.id: e.buffer for e in g.edges}
    explicit = by_id["input.audio->slow.audio"]
    default = by_id["input.audio->fast.audio"]
    assert explicit.max_items == 5 and explicit.defaulting_source == "explicit_edge_config"
    assert default.defaulting_source == "execution_profile_default"
    assert default.max_items > 5


async def test_spec_capacity_enforced_with_strategy_and_watermarks(check_records) -> None:
    """F-043 and F-144: capacity N from the spec holds; watermark signals + plan action."""
    async with GraphHarness(graph(), registry=reg(), clock=VirtualClock()) as h:
        s = h.session
        for f in audio_frames(40):
            s.push(f)
            assert len(s.edge_buffers["input.audio->slow.audio"]) <= 5
        await h.drain()
        slow_buf = s.edge_buffers["input.audio->slow.audio"]
        assert slow_buf.stats.max_depth <= 5 and slow_buf.stats.dropped > 0
        assert len(h.outputs("b")) < 40
        wms = [w for w in h.signals(SignalName.WATERMARK) if w.edge_id == slow_buf.edge_id]
        assert wms and wms[0].reason.startswith("high_watermark_crossed:queue_items")
        assert any(w.reason.startswith("low_watermark_crossed") for w in wms)
        drops = [d for d in h.drops() if d.edge_id == slow_buf.edge_id]
        assert sum(d.seq_range.end - d.seq_range.start + 1 for d in drops) == \
            slow_buf.stats.dropped
        check_records(h.records())


def test_error_taxonomy_maps_codes_to_default_actions() -> None:
    """F-131: representative error classes -> code, retryability, deterministic action."""

    class Overload(ProviderError):
        outcome = "overload"

    class Internal(ProviderError):
        outcome = "internal"

    ev = Event("text", "x", turn_id="t1")
    ev.seq = 7
    cases = {
        "runtime_internal_error": RuntimeError("bug"),
        "provider_timeout": TimeoutError(),
        "provider_overload": Overload("429"),
        "provider_error": Internal("500"),
        "resource_limit_exceeded": ResourceLimitError("too big"),
        "schema_validation_error": ValueError("schema: missing field 'lane'"),
    }
    for code, exc in cases.items():
        info = classify_error(exc, "n1", has_fallback=False, ev=ev)
        assert info.error_code == code and info.node_id == "n1"
        assert info.turn_id == "t1" and info.event_seq == 7 and info.message
        retryable, action = ERROR_ACTIONS[code]
        assert info.retryable is retryable
        assert info.default_action == (action if action != "fallback" else "dead_letter")
    with_fb = classify_error(TimeoutError(), "n1", has_fallback=True)
    assert with_fb.default_action == "fallback"


async def test_builtin_voice_pipeline_instantiates_from_registry() -> None:
    """F-010 (registry side): built-in types resolve by name and a session starts."""
    import rspp.nodes  # noqa: F401  (registers built-in node types)
    from rspp.spec import load_spec

    gd = compile_spec(load_spec(REPO / "pipelines" / "examples" / "voice_assistant.yaml"))
    g = RuntimeGraph.from_definition(gd)
    for n in g.nodes:
        assert n.type in default_registry
    s = SessionActor(g, session_id="va", clock=VirtualClock())
    await s.start()
    assert s.state == "running" and set(s.hosts) == {n.id for n in g.nodes}
    await s.stop()
    assert s.state == "stopped"


FLOW_SPEC = """
name: flow-modes
version: 1.0.0
profile: simple/v1
nodes:
""" + "".join(f"""  - id: {n}
    type: acme.sink
    ports: {{inputs: [{{name: audio, type: audio}}], outputs: [{{name: audio, type: audio}}],
            is_async: true}}
""" for n in ("sig", "cred", "hyb")) + """edges:
""" + "".join(f"""  - from: input.audio
    to: {n}.audio
    buffer: {{flow_mode: {mode}, max_queue_items: 1000, max_queue_bytes: 1000000,
             max_queue_ms: 600000, max_latency_contribution_ms: 600000,
             watermarks: {{queue_items: {{high: 900, low: 10}}}}}}
  - {{from: {n}.audio, to: output.{n}}}
""" for n, mode in (("sig", "signal"), ("cred", "credit"), ("hyb", "hybrid")))


async def test_each_edge_runs_the_flow_mode_its_spec_declares(check_records) -> None:
    """F-145: one spec, three edges in signal, credit and hybrid mode, one overloaded
    producer (the pipeline's flow watermarks: xoff above 192 queued, xon at 64)."""
    g = RuntimeGraph.from_definition(compile_spec(parse_spec_text(FLOW_SPEC)))
    modes = {e.target: e.buffer.flow_mode for e in g.edges if e.source == "input"}
    assert modes == {"sig": "signal", "cred": "credit", "hyb": "hybrid"}
    async with GraphHarness(g, registry=reg(), clock=VirtualClock()) as h:
        await h.feed(audio_frames(260))
        seen = {(s.signal, s.edge_id) for s in h.session.signals.records
                if getattr(s, "signal", None) in (SignalName.FLOW_XOFF, SignalName.FLOW_XON,
                                                   SignalName.CREDIT_GRANT)}
        check_records(h.records())
    kinds = {edge.split("->")[1].split(".")[0]: {s for s, e in seen if e == edge}
             for edge in {e for _, e in seen}}
    assert kinds["sig"] == {SignalName.FLOW_XOFF, SignalName.FLOW_XON}
    assert kinds["cred"] == {SignalName.CREDIT_GRANT}
    assert kinds["hyb"] == {SignalName.FLOW_XOFF, SignalName.FLOW_XON, SignalName.CREDIT_GRANT}
    with pytest.raises(SpecInvalid) as bad:
        compile_spec(parse_spec_text(FLOW_SPEC.replace("flow_mode: credit", "flow_mode: turbo")))
    assert bad.value.issues[0].path == "edges[2].buffer.flow_mode"
