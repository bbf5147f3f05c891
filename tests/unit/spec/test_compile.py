"""Graph compiler: typed ports, fan-out/in, fallback, conditions, multi-output, defaults."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from rspp.contracts import DefaultingSource, EdgeBufferPolicy, Lane, ResolvedTurnPlan
from rspp.spec import (
    BUILTIN_NODE_TYPES,
    SIMPLE_V1,
    GraphDefinition,
    NodeSignature,
    PortSpec,
    PortType,
    SpecInvalid,
    StaticCatalog,
    ValueSource,
    compile_spec,
    lint_text,
    load_spec,
    parse_spec_text,
)

pytestmark = pytest.mark.unit


def _compile(text: str) -> GraphDefinition:
    return compile_spec(parse_spec_text(textwrap.dedent(text), "t.yaml"))


def test_typed_ports_compatible_edges_compile_and_incompatible_are_rejected() -> None:
    good = """\
        name: typed
        version: 1.0.0
        nodes:
          - id: enrich
            type: acme.enrich
            ports:
              inputs: [{name: text, type: text}]
              outputs: [{name: text, type: text}, {name: score, type: control}]
          - {id: tts, type: tts}
        edges:
          - {from: input.text, to: enrich.text}
          - {from: enrich.text, to: tts.text}
          - {from: enrich.score, to: output.score}
          - {from: tts.audio, to: output.audio}
        """
    graph = _compile(good)
    edge = next(e for e in graph.edges if e.id == "enrich.text->tts.text")
    assert edge.port_type is PortType.TEXT and edge.lane is Lane.DATA
    score = next(e for e in graph.edges if e.source_port == "score")
    assert score.lane is Lane.CONTROL
    bad = good.replace("{from: enrich.text, to: tts.text}", "{from: enrich.score, to: tts.text}")
    with pytest.raises(SpecInvalid) as info:
        _compile(bad)
    (issue,) = [i for i in info.value.issues if "incompatible" in i.message]
    assert issue.line == 12 and "control" in issue.message and "text" in issue.message


def test_speech_boundary_edges_are_control_lane_and_lint_warns_on_a_lossy_lane() -> None:
    spec = """\
        name: boundaries
        version: 1.0.0
        nodes:
          - {id: vad, type: vad}
          - {id: stt, type: stt}
        edges:
          - {from: input.audio, to: vad.audio}
          - {from: vad.audio, to: stt.audio}
          - {from: vad.vad, to: stt.vad}
          - {from: stt.final, to: output.transcript}
        """
    graph = _compile(spec)
    lanes = {e.id: e.lane for e in graph.edges}
    assert lanes["vad.vad->stt.vad"] is Lane.CONTROL  # never shed, served first
    assert lanes["vad.audio->stt.audio"] is Lane.DATA
    assert not lint_text(textwrap.dedent(spec), "t.yaml")
    lossy = spec.replace("{from: vad.vad, to: stt.vad}",
                         "{from: vad.vad, to: stt.vad, lane: DataLane}")
    [issue] = lint_text(textwrap.dedent(lossy), "t.yaml")
    assert issue.severity == "warning" and issue.line == 9 and issue.path.endswith("lane")
    assert "strand its turn" in issue.message and "vad.vad -> stt.vad" in issue.message


def test_fan_out_routes_one_output_to_two_nodes() -> None:
    graph = _compile("""\
        name: fan
        version: 1.0.0
        nodes:
          - {id: stt, type: stt}
          - {id: redact, type: redaction}
          - {id: comply, type: compliance}
        edges:
          - {from: input.audio, to: stt.audio}
          - {from: stt.final, to: redact.text}
          - {from: stt.final, to: comply.text}
          - {from: redact.text, to: output.redacted}
          - {from: comply.text, to: output.checked}
        """)
    outs = [e for e in graph.edges if e.source_node == "stt"]
    assert [e.target_node for e in outs] == ["redact", "comply"]  # declaration order
    assert {e.source_port for e in outs} == {"final"}
    assert graph.topo_order.index("stt") < graph.topo_order.index("redact")


def test_merge_has_deterministic_rule_and_order_and_select_has_policy() -> None:
    graph = load_spec_and_compile("showcase.yaml")
    (merge,) = graph.merges
    assert (merge.node, merge.rule_id, merge.rule_version) == ("join", "arrival_order", "1.0")
    assert merge.input_order == ("filler.text->join.in", "pick.out->join.in")
    (select,) = graph.selects
    assert select.policy == "priority"
    assert select.candidates == ("llm_main.text->pick.in", "llm_alt.text->pick.in")


def test_merge_defaults_come_from_profile_and_order_must_match_sources() -> None:
    text = """\
        name: m
        version: 1.0.0
        nodes:
          - {id: a, type: passthrough}
          - {id: b, type: passthrough}
          - {id: j, type: merge, params: {rule: timestamp}}
        edges:
          - {from: input.text, to: a.in}
          - {from: input.text, to: b.in}
          - {from: b.out, to: j.in}
          - {from: a.out, to: j.in}
          - {from: j.out, to: output.text}
        """
    (merge,) = _compile(text).merges
    assert merge.rule_version == SIMPLE_V1.merge_rule_version
    assert merge.input_order == ("b.out->j.in", "a.out->j.in")
    with pytest.raises(SpecInvalid) as info:
        _compile(text.replace("{rule: timestamp}", "{rule: fastest, order: [a, zz]}"))
    messages = {i.path: i.message for i in info.value.issues}
    assert "unknown merge rule 'fastest'" in messages["nodes[2].params.rule"]
    assert "order must list exactly" in messages["nodes[2].params.order"]


def test_fallback_on_timeout_or_error_is_wired() -> None:
    graph = load_spec_and_compile("showcase.yaml")
    (fb,) = graph.fallbacks
    assert (fb.primary, fb.fallback, fb.on) == ("tts", "apology", ("timeout", "error"))
    mirrored = [e for e in graph.edges if e.role == "fallback"]
    assert [(e.source_node, e.target_node, e.target_port) for e in mirrored] == [
        ("segmenter", "apology", "in")
    ]
    with pytest.raises(SpecInvalid) as info:
        _compile("""\
            name: f
            version: 1.0.0
            nodes:
              - {id: tts, type: tts, fallback: {node: nothere}}
            edges:
              - {from: input.text, to: tts.text}
              - {from: tts.audio, to: output.audio}
            """)
    assert info.value.issues[0].path == "nodes[0].fallback.node"


def test_conditional_edges_route_on_event_attributes() -> None:
    graph = load_spec_and_compile("showcase.yaml")
    main = next(e for e in graph.edges if e.target_node == "llm_main")
    alt = next(e for e in graph.edges if e.target_node == "llm_alt")
    assert main.condition is not None and alt.condition is not None
    confident = {"confidence": 0.9, "transcript": True}
    unsure = {"confidence": 0.3, "transcript": True}
    unknown: dict[str, object] = {"transcript": True}  # no confidence: neither edge fires
    assert (main.condition.evaluate(confident), alt.condition.evaluate(confident)) == (True, False)
    assert (main.condition.evaluate(unsure), alt.condition.evaluate(unsure)) == (False, True)
    assert (main.condition.evaluate(unknown), alt.condition.evaluate(unknown)) == (False, False)


def test_multiple_outputs_partial_and_final() -> None:
    graph = load_spec_and_compile("voice_assistant.yaml")
    stt = graph.node("stt")
    assert [(p.name, p.streaming) for p in stt.outputs] == [("partial", True), ("final", False)]
    exits = {p.name: p for p in graph.exit_ports}
    assert exits["transcript_partial"].edges == ("stt.partial->output.transcript_partial",)
    assert exits["transcript"].type is PortType.TEXT
    assert exits["audio"].type is PortType.AUDIO
    assert [p.name for p in graph.entry_ports] == ["audio"]


def test_profile_defaults_carry_their_source() -> None:
    graph = load_spec_and_compile("voice_assistant.yaml")
    b = graph.budgets
    assert (b.turn.value, b.node.value, b.provider_timeout.value, b.cancel_grace.value) == (
        2000, 800, 1000, 75)
    assert {s.source for s in (b.turn, b.node, b.provider_timeout, b.cancel_grace)} == {
        ValueSource.PROFILE}
    assert graph.node("llm").timeout.source is ValueSource.PROFILE
    for edge in graph.edges:
        assert isinstance(edge.buffer, EdgeBufferPolicy)
        assert edge.buffer.defaulting_source is DefaultingSource.EXECUTION_PROFILE_DEFAULT
    showcase = load_spec_and_compile("showcase.yaml")
    explicit = next(e for e in showcase.edges if e.id == "tts.audio->output.audio")
    assert explicit.buffer.defaulting_source is DefaultingSource.EXPLICIT_EDGE_CONFIG
    assert explicit.buffer.max_queue_items == 50
    assert explicit.buffer.max_queue_ms == SIMPLE_V1.audio_edge_buffer.max_queue_ms
    assert showcase.budgets.turn.source is ValueSource.SPEC
    llm = showcase.provider("llm")
    assert llm is not None and llm.fallbacks == ("local-responder",)
    assert (llm.timeout.value, llm.timeout.source) == (900, ValueSource.SPEC)


def test_a_text_edge_keeps_its_words_for_the_turn_budget() -> None:
    """A turn's text is not shed for queueing shorter than its turn may run (a sentence
    waiting for a slow TTS is spoken): text edges take the turn budget as their
    time-in-queue bound; other edges keep the profile's; an explicit bound wins."""
    graph = load_spec_and_compile("voice_assistant.yaml")
    by_type = {e.id: (e.port_type, e.buffer.max_queue_ms) for e in graph.edges}
    turn = graph.budgets.turn.value
    assert by_type["segmenter.text->tts.text"] == (PortType.TEXT, turn)
    assert by_type["vad.vad->stt.vad"] == (PortType.VAD, SIMPLE_V1.edge_buffer.max_queue_ms)
    assert by_type["input.audio->vad.audio"] == (PortType.AUDIO,
                                                 SIMPLE_V1.audio_edge_buffer.max_queue_ms)
    explicit = _compile(textwrap.dedent("""\
        name: t
        version: 1.0.0
        profile: simple/v1
        budgets: {turn_ms: 9000}
        nodes:
          - {id: llm, type: llm}
        edges:
          - {from: input.text, to: llm.text, buffer: {max_queue_ms: 700}}
          - {from: llm.text, to: output.text}
        """))
    got = {e.id: e.buffer.max_queue_ms for e in explicit.edges}
    assert got == {"input.text->llm.text": 700, "llm.text->output.text": 9000}


def test_buffers_fit_a_resolved_turn_plan() -> None:
    import msgspec

    graph = load_spec_and_compile("showcase.yaml")
    policies = graph.edge_buffer_policies()
    # the contract type validates the compiled buffers (kernel II builds plans from this)
    encoded = msgspec.json.encode(policies)
    decoded = msgspec.json.decode(encoded, type=dict[str, EdgeBufferPolicy])
    assert decoded == policies
    assert "edge_buffer_policies" in ResolvedTurnPlan.__struct_fields__


def test_simple_mode_template_expands_with_provider_choice(fixtures_dir: Path) -> None:
    graph = compile_spec(load_spec(fixtures_dir / "simple_mode.yaml"))
    assert graph.topo_order == ("vad", "stt", "llm", "segmenter", "tts")
    assert {n.origin for n in graph.nodes} == {"template"}
    llm = graph.provider("llm")
    stt = graph.provider("stt")
    assert llm is not None and (llm.primary, llm.source) == ("openai", ValueSource.SPEC)
    assert llm.config["api_key"] == "env://OPENAI_API_KEY"
    assert stt is not None and (stt.primary, stt.source) == ("pocketsphinx", ValueSource.PROFILE)


def test_graph_definition_is_immutable() -> None:
    graph = load_spec_and_compile("voice_assistant.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.name = "x"  # type: ignore[misc]
    params = graph.node("llm").params
    with pytest.raises(TypeError):
        params["system_prompt"] = "hijack"  # type: ignore[index]
    assert isinstance(graph.nodes, tuple) and isinstance(graph.edges, tuple)
    assert graph.to_builtins()["name"] == "voice-assistant"


def test_custom_catalog_is_used() -> None:
    builtins = {n: s for n in BUILTIN_NODE_TYPES.names()
                if (s := BUILTIN_NODE_TYPES.signature(n)) is not None}
    catalog = StaticCatalog({**builtins, "shout": NodeSignature(
        type_name="shout", inputs=(PortSpec(name="text", type=PortType.TEXT),),
        outputs=(PortSpec(name="text", type=PortType.TEXT),), default_params={"level": 3},
    )})
    assert isinstance(catalog, StaticCatalog)
    spec = parse_spec_text(textwrap.dedent("""\
        name: c
        version: 1.0.0
        nodes: [{id: s, type: shout}]
        edges:
          - {from: input.text, to: s.text}
          - {from: s.text, to: output.text}
        """))
    graph = compile_spec(spec, catalog=catalog)
    assert graph.node("s").params["level"] == 3
    with pytest.raises(SpecInvalid):
        compile_spec(spec)


def load_spec_and_compile(name: str) -> GraphDefinition:
    root = Path(__file__).resolve().parents[3]
    return compile_spec(load_spec(root / "pipelines" / "examples" / name))


def test_fallback_outputs_may_share_the_primary_target_port() -> None:
    graph = _compile("""\
        name: fb
        version: 1.0.0
        nodes:
          - {id: llm, type: llm, timeout_ms: 500, fallback: {node: backup, on: [timeout]}}
          - {id: backup, type: llm, params: {model: tiny}}
          - {id: seg, type: sentence_segmenter}
        edges:
          - {from: input.text, to: llm.text}
          - {from: llm.text, to: seg.text}
          - {from: backup.text, to: seg.text}
          - {from: seg.text, to: output.text}
        """)
    (fb,) = graph.fallbacks
    assert (fb.primary, fb.fallback, fb.on) == ("llm", "backup", ("timeout",))
    assert graph.node("llm").timeout == graph.node("llm").timeout.__class__(500, ValueSource.SPEC)
    mirrored = next(e for e in graph.edges if e.role == "fallback")
    assert mirrored.id == "input.text->backup.text"
    assert graph.topo_order == ("llm", "backup", "seg")
    assert graph.provider_bindings() == {"llm": "local"}
