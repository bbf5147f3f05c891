"""Canonical hashes: published-spec hash (F-015) and execution-only graph hash (F-082)."""

from __future__ import annotations

import msgspec
import pytest

from rspp.spec import compile_spec, parse_spec_text, spec_hash

pytestmark = pytest.mark.unit

BASE = """\
name: h
version: 1.0.0
metadata: {owner: team-a}
nodes:
  - {id: llm, type: llm, params: {temperature: 0.2, system_prompt: hi}}
  - {id: tts, type: tts}
edges:
  - {from: input.text, to: llm.text}
  - {from: llm.text, to: tts.text}
  - {from: tts.audio, to: output.audio}
"""

REORDERED = """\
# a comment that must not matter
version: "1.0.0"      # quoted, trailing comment
edges:
  - to: llm.text
    from: input.text
  - {to: tts.text, from: llm.text}
  - {from: tts.audio,   to: output.audio}
nodes:
  - id: llm
    params:
      system_prompt: hi
      temperature: 0.2
    type: llm
  - {type: tts, id: tts}
metadata:
  owner: team-a
name: h
"""


def test_key_order_whitespace_and_comments_do_not_change_hashes() -> None:
    a, b = parse_spec_text(BASE), parse_spec_text(REORDERED)
    assert spec_hash(a) == spec_hash(b)
    assert len(spec_hash(a)) == 64 and int(spec_hash(a), 16) >= 0
    assert compile_spec(a).graph_hash == compile_spec(b).graph_hash


def test_metadata_and_description_never_change_execution() -> None:
    a = parse_spec_text(BASE)
    b = parse_spec_text(BASE.replace("{owner: team-a}", "{owner: team-b, ticket: X-1}")
                        + "description: audited\n")
    ga, gb = compile_spec(a), compile_spec(b)
    assert ga.graph_hash == gb.graph_hash
    assert ga.nodes == gb.nodes and ga.edges == gb.edges
    # the published artifact still differs and keeps its metadata for audit/search
    assert spec_hash(a) != spec_hash(b)
    assert gb.metadata["ticket"] == "X-1"
    assert b.metadata == {"owner": "team-b", "ticket": "X-1"}


def test_param_or_edge_change_changes_graph_hash() -> None:
    base = compile_spec(parse_spec_text(BASE)).graph_hash
    param = compile_spec(parse_spec_text(BASE.replace("0.2", "0.3"))).graph_hash
    buffered = compile_spec(parse_spec_text(BASE.replace(
        "{from: tts.audio, to: output.audio}",
        "{from: tts.audio, to: output.audio, buffer: {max_queue_items: 10}}"))).graph_hash
    assert len({base, param, buffered}) == 3


def test_published_spec_objects_are_immutable() -> None:
    spec = parse_spec_text(BASE)
    with pytest.raises(AttributeError):
        spec.version = "2.0.0"  # type: ignore[misc]
    bumped = msgspec.structs.replace(spec, version="2.0.0")
    assert spec_hash(bumped) != spec_hash(spec) and spec.version == "1.0.0"
