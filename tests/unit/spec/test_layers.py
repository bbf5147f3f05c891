"""Layering defaults -> environment -> tenant -> session (F-080) and resolved view (F-081)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rspp.spec import (
    ConfigLayers,
    SpecInvalid,
    ValueSource,
    load_spec,
    resolve_effective,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def spec(repo_root: Path):  # type: ignore[no-untyped-def]
    return load_spec(repo_root / "pipelines" / "examples" / "voice_assistant.yaml")


LAYERS = ConfigLayers(
    tenants={"acme": {"budgets.turn_ms": 1800, "providers.llm.primary": "anthropic",
                      "budgets.node_ms": 700}},
    sessions={"s-1": {"budgets.turn_ms": 1500, "providers.tts.timeout_ms": 600}},
)
ENV = {"RSPP_SPEC__BUDGETS__TURN_MS": "1900", "RSPP_SPEC__BUDGETS__EDGE_MS": "150",
       "RSPP_SPEC__PROVIDERS__LLM__PRIMARY": "openai",
       "RSPP_SPEC__PROVIDERS__LLM__FALLBACKS": "local, anthropic", "UNRELATED": "1"}


def test_defaults_only(spec) -> None:  # type: ignore[no-untyped-def]
    eff = resolve_effective(spec)
    assert eff.value_of("budgets.turn_ms") == 2000
    assert eff.source_of("budgets.turn_ms") is ValueSource.PROFILE
    assert eff.source_of("providers.llm.primary") is ValueSource.SPEC
    assert eff.overrides == ()


def test_precedence_defaults_env_tenant_session(spec) -> None:  # type: ignore[no-untyped-def]
    env_only = resolve_effective(spec, env=ENV)
    assert env_only.value_of("budgets.turn_ms") == 1900
    assert env_only.source_of("budgets.turn_ms") is ValueSource.ENVIRONMENT
    assert env_only.value_of("providers.llm.fallbacks") == ["local", "anthropic"]

    tenant = resolve_effective(spec, tenant="acme", env=ENV, layers=LAYERS)
    assert (tenant.value_of("budgets.turn_ms"), tenant.source_of("budgets.turn_ms")) == (
        1800, ValueSource.TENANT)
    assert tenant.value_of("providers.llm.primary") == "anthropic"
    assert tenant.source_of("budgets.edge_ms") is ValueSource.ENVIRONMENT

    full = resolve_effective(spec, tenant="acme", session="s-1", env=ENV, layers=LAYERS)
    assert (full.value_of("budgets.turn_ms"), full.source_of("budgets.turn_ms")) == (
        1500, ValueSource.SESSION)
    assert full.source_of("budgets.node_ms") is ValueSource.TENANT
    assert full.source_of("budgets.edge_ms") is ValueSource.ENVIRONMENT
    assert full.source_of("budgets.path_ms") is ValueSource.PROFILE
    assert full.value_of("providers.tts.timeout_ms") == 600
    assert full.source_of("providers.tts.timeout_ms") is ValueSource.SESSION
    # the effective graph really uses the layered values, tied to the session id
    assert full.graph.budgets.turn.value == 1500
    assert full.graph.node("llm").timeout.value == 700
    assert full.session == "s-1" and full.tenant == "acme"
    assert full.graph.graph_hash != resolve_effective(spec).graph.graph_hash
    assert [v.path for v in full.overrides][:2] == ["budgets.edge_ms", "budgets.node_ms"]

    other_tenant = resolve_effective(spec, tenant="globex", env=ENV, layers=LAYERS)
    assert other_tenant.source_of("budgets.turn_ms") is ValueSource.ENVIRONMENT


def test_unknown_or_invalid_override_fails_fast(spec) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecInvalid) as info:
        resolve_effective(spec, tenant="t", layers=ConfigLayers(tenants={"t": {"budget": 1}}))
    issue = info.value.issues[0]
    assert "unknown key 'budget'" in issue.message and "budgets.turn_ms" in issue.hint
    with pytest.raises(SpecInvalid) as info:
        resolve_effective(spec, session="s", layers=ConfigLayers(
            sessions={"s": {"budgets.turn_ms": -5}}))
    assert "override invalid" in info.value.issues[0].message


def test_resolved_view_lists_template_nodes_and_chosen_providers(repo_root: Path) -> None:
    spec = load_spec(repo_root / "tests" / "fixtures" / "specs" / "simple_mode.yaml")
    eff = resolve_effective(spec, session="sess-9")
    assert eff.source_of("nodes.stt.type") is ValueSource.TEMPLATE
    assert eff.value_of("providers.stt.primary") == "pocketsphinx"
    assert eff.source_of("providers.stt.primary") is ValueSource.PROFILE
    assert eff.value_of("providers.llm.primary") == "openai"
    assert any(v.path.startswith("edges.") for v in eff.values)


def test_policy_inserted_node_appears_in_resolved_view(spec) -> None:  # type: ignore[no-untyped-def]
    layers = ConfigLayers(tenants={"bank": {"insert.pii_filter": {
        "type": "redaction", "on_edge": "stt.final->llm.text", "params": {"patterns": ["card"]},
    }}})
    eff = resolve_effective(spec, tenant="bank", session="s-7", layers=layers)
    node = eff.graph.node("pii_filter")
    assert node.origin == "inserted:tenant" and node.params["patterns"] == ("card",)
    assert eff.source_of("nodes.pii_filter.type") is ValueSource.TENANT
    ids = {e.id for e in eff.graph.edges}
    assert {"stt.final->pii_filter.text", "pii_filter.text->llm.text"} <= ids
    assert "stt.final->llm.text" not in ids
    order = eff.graph.topo_order
    assert order.index("stt") < order.index("pii_filter") < order.index("llm")
    # other tenants are unaffected
    other = resolve_effective(spec, tenant="other", layers=layers)
    assert "pii_filter" not in other.graph.topo_order
    with pytest.raises(SpecInvalid) as info:
        resolve_effective(spec, tenant="t", layers=ConfigLayers(tenants={"t": {
            "insert.x": {"type": "redaction", "on_edge": "a.b->c.d"}}}))
    assert "not found" in info.value.issues[0].message
    assert "stt.final->llm.text" in info.value.issues[0].hint
