"""Reusable versioned subgraphs referenced by name@version (F-019)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rspp.spec import (
    FileSubgraphResolver,
    MappingSubgraphResolver,
    SpecInvalid,
    compile_spec,
    lint_text,
    load_spec,
    parse_spec_text,
)

pytestmark = pytest.mark.unit

OTHER = """\
name: other-pipeline
version: 3.1.0
subgraphs:
  - id: listen
    use: transcribe@{version}
    params: {{stt: {{language: de}}}}
nodes:
  - {{id: tts, type: tts}}
edges:
  - {{from: input.audio, to: listen.audio}}
  - {{from: listen.partial, to: output.partial}}
  - {{from: listen.final, to: tts.text}}
  - {{from: tts.audio, to: output.audio}}
"""


def test_subgraph_nodes_are_namespaced_and_wired(fixtures_dir: Path) -> None:
    graph = compile_spec(load_spec(fixtures_dir / "with_subgraph.yaml"))
    assert graph.topo_order == ("asr.stt", "asr.norm", "llm")
    ids = {e.id for e in graph.edges}
    assert {"input.audio->asr.stt.audio", "asr.stt.final->asr.norm.in",
            "asr.norm.out->llm.text", "llm.text->output.text"} <= ids
    assert graph.node("asr.stt").origin == "subgraph:asr@transcribe@1.0.0"
    assert graph.node("llm").origin == "spec"


def test_two_pipelines_share_a_module_and_versions_apply_intentionally(
    fixtures_dir: Path,
) -> None:
    resolver = FileSubgraphResolver([fixtures_dir / "subgraphs"])
    first = compile_spec(load_spec(fixtures_dir / "with_subgraph.yaml"), subgraphs=resolver)
    v1 = compile_spec(parse_spec_text(OTHER.format(version="1.0.0")), subgraphs=resolver)
    v2 = compile_spec(parse_spec_text(OTHER.format(version="2.0.0")), subgraphs=resolver)
    assert first.node("asr.norm").type == v1.node("listen.norm").type == "passthrough"
    assert v1.node("listen.stt").params["language"] == "de"  # per-instance override
    # a new module version changes only the pipeline that opts into it
    assert v2.node("listen.norm").type == "redaction"
    assert v2.node("listen.stt").params["model"] == "large"
    assert v1.graph_hash != v2.graph_hash
    again = compile_spec(parse_spec_text(OTHER.format(version="1.0.0")), subgraphs=resolver)
    assert again.graph_hash == v1.graph_hash


def test_missing_version_reports_available_versions(fixtures_dir: Path) -> None:
    path = fixtures_dir / "missing_subgraph.yaml"
    issues = lint_text(path.read_text(), str(path))
    assert [(i.line, i.path) for i in issues] == [(5, "subgraphs[0].use")]
    assert "transcribe@9.9.9 not found" in issues[0].message
    assert "1.0.0, 2.0.0" in issues[0].hint
    with pytest.raises(SpecInvalid):
        compile_spec(load_spec(path))


def test_unknown_boundary_port_and_inner_override(fixtures_dir: Path) -> None:
    text = (fixtures_dir / "with_subgraph.yaml").read_text()
    bad = text.replace("asr.final", "asr.finished").replace(
        "use: transcribe@1.0.0", "use: transcribe@1.0.0\n    params: {nope: {x: 1}}")
    issues = lint_text(bad, str(fixtures_dir / "with_subgraph.yaml"))
    messages = {i.path: (i.message, i.hint) for i in issues}
    assert "no output port 'finished'" in messages["edges[1].from"][0]
    assert "final, partial" in messages["edges[1].from"][1]
    assert "has no node 'nope'" in messages["subgraphs[0].params.nope"][0]


def test_mapping_resolver_and_name_mismatch(fixtures_dir: Path) -> None:
    inner = load_spec(fixtures_dir / "subgraphs" / "transcribe@1.0.0.yaml")
    spec = parse_spec_text(OTHER.format(version="1.0.0"))
    graph = compile_spec(spec, subgraphs=MappingSubgraphResolver({"transcribe@1.0.0": inner}))
    assert "listen.stt" in graph.topo_order
    wrong = MappingSubgraphResolver({"transcribe@1.0.0": load_spec(
        fixtures_dir / "subgraphs" / "transcribe@2.0.0.yaml")})
    with pytest.raises(SpecInvalid) as info:
        compile_spec(spec, subgraphs=wrong)
    assert "declares transcribe@2.0.0" in info.value.issues[0].message


def test_nested_subgraphs_get_nested_namespaces(fixtures_dir: Path) -> None:
    graph = compile_spec(load_spec(fixtures_dir / "nested.yaml"))
    assert graph.topo_order == ("outer.tr.stt", "outer.tr.norm", "outer.shout")
    assert "input.audio->outer.tr.stt.audio" in {e.id for e in graph.edges}
    assert graph.node("outer.tr.stt").origin == "subgraph:tr@transcribe@1.0.0"


def test_self_referencing_subgraph_is_reported_not_looped() -> None:
    loop = parse_spec_text(
        "name: loop\nversion: 1.0.0\nsubgraphs: [{id: again, use: loop@1.0.0}]\n"
        "nodes: [{id: p, type: passthrough}]\n"
        "edges: [{from: input.text, to: p.in}, {from: p.out, to: output.text}]\n"
    )
    with pytest.raises(SpecInvalid) as info:
        compile_spec(loop, subgraphs=MappingSubgraphResolver({"loop@1.0.0": loop}))
    assert any("nested deeper" in i.message for i in info.value.issues)
