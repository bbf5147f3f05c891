"""Layering defaults -> environment -> tenant -> session (F-080) and resolved view (F-081)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rspp.spec import (
    ConfigLayers,
    EffectiveSpec,
    SpecInvalid,
    ValueSource,
    load_spec,
    resolve_effective,
)

pytestmark = pytest.mark.unit


def _resolved(eff: EffectiveSpec) -> dict[str, tuple[object, ValueSource]]:
    """Each reported path's (value, source), as ``rspp spec resolve --json`` prints them."""
    values = eff.document()["values"]
    assert isinstance(values, list)
    return {v["path"]: (v["value"], ValueSource(v["source"])) for v in values}


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
    assert _resolved(eff)["budgets.turn_ms"][0] == 2000
    assert _resolved(eff)["budgets.turn_ms"][1] is ValueSource.PROFILE
    assert _resolved(eff)["providers.llm.primary"][1] is ValueSource.SPEC
    assert eff.overrides == ()


def test_precedence_defaults_env_tenant_session(spec) -> None:  # type: ignore[no-untyped-def]
    env_only = resolve_effective(spec, env=ENV)
    assert _resolved(env_only)["budgets.turn_ms"][0] == 1900
    assert _resolved(env_only)["budgets.turn_ms"][1] is ValueSource.ENVIRONMENT
    assert _resolved(env_only)["providers.llm.fallbacks"][0] == ["local", "anthropic"]

    tenant = resolve_effective(spec, tenant="acme", env=ENV, layers=LAYERS)
    assert (_resolved(tenant)["budgets.turn_ms"][0], _resolved(tenant)["budgets.turn_ms"][1]) == (
        1800, ValueSource.TENANT)
    assert _resolved(tenant)["providers.llm.primary"][0] == "anthropic"
    assert _resolved(tenant)["budgets.edge_ms"][1] is ValueSource.ENVIRONMENT

    full = resolve_effective(spec, tenant="acme", session="s-1", env=ENV, layers=LAYERS)
    assert (_resolved(full)["budgets.turn_ms"][0], _resolved(full)["budgets.turn_ms"][1]) == (
        1500, ValueSource.SESSION)
    assert _resolved(full)["budgets.node_ms"][1] is ValueSource.TENANT
    assert _resolved(full)["budgets.edge_ms"][1] is ValueSource.ENVIRONMENT
    assert _resolved(full)["budgets.path_ms"][1] is ValueSource.PROFILE
    assert _resolved(full)["providers.tts.timeout_ms"][0] == 600
    assert _resolved(full)["providers.tts.timeout_ms"][1] is ValueSource.SESSION
    # the effective graph really uses the layered values, tied to the session id
    assert full.graph.budgets.turn.value == 1500
    assert full.graph.node("llm").timeout.value == 700
    assert full.session == "s-1" and full.tenant == "acme"
    assert full.graph.graph_hash != resolve_effective(spec).graph.graph_hash
    assert [v.path for v in full.overrides][:2] == ["budgets.edge_ms", "budgets.node_ms"]

    other_tenant = resolve_effective(spec, tenant="globex", env=ENV, layers=LAYERS)
    assert _resolved(other_tenant)["budgets.turn_ms"][1] is ValueSource.ENVIRONMENT


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
    assert _resolved(eff)["nodes.stt.type"][1] is ValueSource.TEMPLATE
    assert _resolved(eff)["providers.stt.primary"][0] == "pocketsphinx"
    assert _resolved(eff)["providers.stt.primary"][1] is ValueSource.PROFILE
    assert _resolved(eff)["providers.llm.primary"][0] == "openai"
    assert any(v.path.startswith("edges.") for v in eff.values)


def test_policy_inserted_node_appears_in_resolved_view(spec) -> None:  # type: ignore[no-untyped-def]
    layers = ConfigLayers(tenants={"bank": {"insert.pii_filter": {
        "type": "redaction", "on_edge": "stt.final->llm.text", "params": {"patterns": ["card"]},
    }}})
    eff = resolve_effective(spec, tenant="bank", session="s-7", layers=layers)
    node = eff.graph.node("pii_filter")
    assert node.origin == "inserted:tenant" and node.params["patterns"] == ("card",)
    assert _resolved(eff)["nodes.pii_filter.type"][1] is ValueSource.TENANT
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
