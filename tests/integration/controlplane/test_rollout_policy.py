"""Rollouts (CP-09) and versioned policies/provider configs (CP-04, F-102)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from rspp.contracts import ProviderStatus
from rspp.controlplane import ConfigKind, ControlPlane, InvalidRequest, SessionAttributes
from rspp.controlplane._schema import sessions

from .conftest import OPERATOR, VIEWER, spec_version

pytestmark = pytest.mark.integration


async def _publish_two(cp: ControlPlane) -> None:
    await cp.publish(OPERATOR, spec_version("1.0.0"))
    await cp.publish(OPERATOR, spec_version("2.0.0", description="v2"))


async def _resolve(cp: ControlPlane, tenant: str, session: str) -> tuple[str, str | None, int]:
    async with cp.store.engine.connect() as conn:
        r = await cp.rollouts.resolve_in(
            conn,
            "voice-assistant",
            tenant_id=tenant,
            session_id=session,
            now_ms=cp.clock(),
            ttl_ms=5000,
        )
    return r.pipeline_version, r.cohort, r.meta.version


async def test_canary_percentage_allowlist_and_rollback_f093_f100(cp: ControlPlane) -> None:
    await _publish_two(cp)
    assert (await _resolve(cp, "acme", "s1"))[0] == "2.0.0"  # no rollout yet: latest
    state = await cp.rollout(OPERATOR, "voice-assistant", canary="2.0.0", percent=10)
    assert (state.stable_version, state.canary_version, state.revision) == ("1.0.0", "2.0.0", 1)
    picks = [(await _resolve(cp, "acme", f"sess-{i}"))[0] for i in range(1000)]
    assert 70 <= picks.count("2.0.0") <= 130  # ~10% of sessions
    assert set(picks) == {"1.0.0", "2.0.0"}
    # Snapshot ids/versions identify the rollout revision.
    _, cohort, snap = await _resolve(cp, "acme", "sess-0")
    assert snap == 1 and cohort in {"stable", "canary"}
    # Allowlist: only tenant beta may be in the canary.
    await cp.rollout(OPERATOR, "voice-assistant", canary="2.0.0", percent=100, tenants=("beta",))
    assert {(await _resolve(cp, "beta", f"s{i}"))[0] for i in range(50)} == {"2.0.0"}
    assert {(await _resolve(cp, "acme", f"s{i}"))[0] for i in range(50)} == {"1.0.0"}
    # Rollback: every new session resolves to 1.0.0, and it is audited.
    back = await cp.rollback(OPERATOR, "voice-assistant", to="1.0.0")
    assert back.canary_version is None and back.revision == 3
    assert {(await _resolve(cp, "beta", f"s{i}"))[0] for i in range(50)} == {"1.0.0"}
    audit = [(e.action, e.detail.get("to")) for e in await cp.audit_entries(VIEWER)]
    assert ("rollout.rollback", "1.0.0") in audit
    with pytest.raises(InvalidRequest) as bad:
        await cp.rollout(OPERATOR, "voice-assistant", canary="2.0.0", percent=120)
    assert bad.value.field == "percent"


POLICY_V1 = {
    "providers": {"stt": "pocketsphinx", "llm": "local", "tts": "espeak"},
    "rules": [
        {"match": {"language": "de"}, "providers": {"tts": "piper-de"}},
        {"match": {"region": "eu", "cost_tier": "premium"}, "providers": {"llm": "big-eu"}},
    ],
    "fallback_chains": {"llm": ["local-backup"], "tts": ["espeak"]},
    "turn_budget_ms": 4000,
    "insert_compliance_nodes": ["pii_redactor"],
    "compliance_nodes": {"pii_redactor": {"type": "redaction", "params": {"patterns": ["email"]}}},
}


async def test_policy_selection_health_and_independent_rollback_f056_f060_f062_f102_f114(
    cp: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rspp.controlplane")
    await cp.publish(OPERATOR, spec_version("1.0.0"))
    v1 = await cp.publish_config(OPERATOR, ConfigKind.POLICY, "acme", POLICY_V1)
    other = {
        "providers": {"stt": "cloud-stt", "llm": "cloud-llm", "tts": "cloud-tts"},
        "allow_compliance_insertion": False,
        "insert_compliance_nodes": ["compliance"],
    }
    await cp.publish_config(OPERATOR, ConfigKind.POLICY, "globex", other)
    from rspp.controlplane._bundle import build_bundle

    async def policy_for(tenant: str, attrs: SessionAttributes) -> dict[str, str]:
        from rspp.controlplane._configs import active_config
        from rspp.controlplane._policy import evaluate_policy, parse_policy

        async with cp.store.engine.connect() as conn:
            cfg = await active_config(conn, ConfigKind.POLICY, tenant)
            health = await cp.routing.provider_health_in(conn, now_ms=cp.clock())
        assert cfg is not None
        decision = evaluate_policy(parse_policy(cfg.body), attrs, health, health.meta)
        return dict(decision.resolution.provider_bindings)

    de = await policy_for("acme", SessionAttributes(language="de"))
    assert de == {"stt": "pocketsphinx", "llm": "local", "tts": "piper-de"}
    eu = await policy_for("acme", SessionAttributes(region="eu", cost_tier="premium"))
    assert eu["llm"] == "big-eu" and eu["tts"] == "espeak"
    assert (await policy_for("globex", SessionAttributes()))["llm"] == "cloud-llm"  # per tenant
    # Provider health (CP-10): an unhealthy provider is avoided, and returns on recovery.
    await cp.report_provider_health(
        OPERATOR, "local", status=ProviderStatus.UNHEALTHY, error_rate=0.9
    )
    assert (await policy_for("acme", SessionAttributes()))["llm"] == "local-backup"
    await cp.report_provider_health(OPERATOR, "local", status=ProviderStatus.HEALTHY)
    assert (await policy_for("acme", SessionAttributes()))["llm"] == "local"
    # The bundle carries compliance insertion where allowed, and the policy version.
    await cp.register_runtime(OPERATOR, runtime_id="rt-a", endpoint="ws://a")
    route = await cp.route_session(OPERATOR, tenant_id="acme", pipeline_name="voice-assistant")
    bundle = await build_bundle(
        cp,
        tenant_id="acme",
        session_id=route.session_id,
        pipeline_name="voice-assistant",
        runtime_id="rt-a",
    )
    assert bundle.policy_resolution is not None
    assert bundle.policy_resolution.insert_compliance_nodes == (
        '{"id":"pii_redactor","params":{"patterns":["email"]},"type":"redaction"}',)
    assert bundle.policy_resolution.meta.version == v1.version == 1
    assert bundle.policy_resolution.turn_budget_ms == 4000
    inserted = [e for e in await cp.audit_entries(VIEWER) if e.action == "policy.compliance_insert"]
    assert [(e.subject, e.detail["nodes"]) for e in inserted] == [
        (route.session_id, ["pii_redactor"])
    ]
    traces = [r.getMessage() for r in caplog.records if r.name == "rspp.controlplane.policy"]
    assert any(route.session_id in t and "insert compliance nodes" in t for t in traces)
    g_route = await cp.route_session(OPERATOR, tenant_id="globex", pipeline_name="voice-assistant")
    g_bundle = await build_bundle(
        cp,
        tenant_id="globex",
        session_id=g_route.session_id,
        pipeline_name="voice-assistant",
        runtime_id="rt-a",
    )
    assert g_bundle.policy_resolution is not None
    assert g_bundle.policy_resolution.insert_compliance_nodes == ()
    # a runtime's batch (POST /v1/runtimes/{id}/bundles) reads the shared parts once and
    # gives each session the bundle it would get alone (per-tenant policy, pinned version)
    from rspp.controlplane._bundle import build_bundles

    batch = await build_bundles(cp, "rt-a", [("acme", route.session_id, "voice-assistant"),
                                             ("globex", g_route.session_id, "voice-assistant"),
                                             ("acme", "s-unrouted", "voice-assistant")])
    alone = await build_bundle(cp, tenant_id="acme", session_id="s-unrouted",
                               pipeline_name="voice-assistant", runtime_id="rt-a")
    assert batch == [(route.session_id, bundle), (g_route.session_id, g_bundle),
                     ("s-unrouted", alone)]
    assert alone.version_resolution is not None and alone.version_resolution.cohort != "pinned"
    # Policy v2 then rollback to v1 without touching the PipelineSpec; recorded per session.
    v2_body = dict(POLICY_V1, providers={"stt": "pocketsphinx", "llm": "llm-v2", "tts": "espeak"})
    v2 = await cp.publish_config(OPERATOR, ConfigKind.POLICY, "acme", v2_body)
    s2 = await cp.route_session(OPERATOR, tenant_id="acme", pipeline_name="voice-assistant")
    assert s2.policy_version == v2.version == 2 and route.policy_version == 1
    await cp.activate_config(OPERATOR, ConfigKind.POLICY, "acme", 1)
    s3 = await cp.route_session(OPERATOR, tenant_id="acme", pipeline_name="voice-assistant")
    assert s3.policy_version == 1 and s3.pipeline_version == "1.0.0"
    async with cp.store.engine.connect() as conn:
        recorded = dict(
            (await conn.execute(select(sessions.c.session_id, sessions.c.policy_version))).all()
        )
    assert recorded[s2.session_id] == 2 and recorded[s3.session_id] == 1
    # Provider configs are versioned independently of policies.
    await cp.publish_config(OPERATOR, ConfigKind.PROVIDER_CONFIG, "*", {"local": {"model": "a"}})
    await cp.publish_config(OPERATOR, ConfigKind.PROVIDER_CONFIG, "*", {"local": {"model": "b"}})
    await cp.activate_config(OPERATOR, ConfigKind.PROVIDER_CONFIG, "*", 1)
    provider_versions = await cp.configs(VIEWER, ConfigKind.PROVIDER_CONFIG, "*")
    assert [(v.version, v.active) for v in provider_versions] == [(1, True), (2, False)]
    assert [(v.version, v.active) for v in await cp.configs(VIEWER, ConfigKind.POLICY, "acme")] == [
        (1, True),
        (2, False),
    ]
    actions = [e.action for e in await cp.audit_entries(VIEWER)]
    assert actions.count("policy.publish") == 3 and "policy.activate" in actions
    with pytest.raises(InvalidRequest) as bad:
        await cp.publish_config(
            OPERATOR, ConfigKind.POLICY, "acme", {"rules": [{"match": {"planet": "x"}}]}
        )
    assert bad.value.field is not None and bad.value.field.startswith("policy")


async def test_sessions_stay_pinned_to_their_version_across_rollout_changes_f016(
    cp: ControlPlane,
) -> None:
    from rspp.controlplane import build_bundle

    await _publish_two(cp)
    await cp.register_runtime(OPERATOR, runtime_id="rt-a", endpoint="ws://a")
    await cp.rollout(OPERATOR, "voice-assistant", canary="2.0.0", percent=100, tenants=("beta",))
    old = await cp.route_session(OPERATOR, tenant_id="acme", pipeline_name="voice-assistant")
    new = await cp.route_session(OPERATOR, tenant_id="beta", pipeline_name="voice-assistant")
    assert (old.pipeline_version, new.pipeline_version) == ("1.0.0", "2.0.0")
    await cp.rollback(OPERATOR, "voice-assistant", to="1.0.0")
    for route, version in ((old, "1.0.0"), (new, "2.0.0")):
        bundle = await build_bundle(
            cp,
            tenant_id=route.tenant_id,
            session_id=route.session_id,
            pipeline_name="voice-assistant",
            runtime_id="rt-a",
        )
        assert bundle.version_resolution is not None
        assert bundle.version_resolution.pipeline_version == version  # pinned, no leak
        assert bundle.version_resolution.cohort == "pinned"
        record = await cp.get_pipeline(VIEWER, "voice-assistant", version)
        assert bundle.version_resolution.spec_hash == record.spec_hash
        assert cp.verify_token(route.token).pipeline_version == version
    later = await cp.route_session(OPERATOR, tenant_id="beta", pipeline_name="voice-assistant")
    assert later.pipeline_version == "1.0.0"  # the rollback applies to new sessions


async def test_a_bundles_configs_read_in_one_statement_match_the_per_kind_reads(
    cp: ControlPlane,
) -> None:
    """``active_configs`` (the bundle's one read of the policy and admission configs) gives
    what ``active_config`` gives per kind: the tenant's active version, else the default
    scope's, else None - through publishes and an activation back."""
    from rspp.controlplane._configs import active_config, active_configs

    kinds = (ConfigKind.POLICY, ConfigKind.ADMISSION)

    async def agree() -> dict[str, dict[ConfigKind, int | None]]:
        seen = {}
        async with cp.store.engine.connect() as conn:
            for tenant in ("acme", "globex", "*"):
                together = await active_configs(conn, kinds, tenant)
                apart = {k: await active_config(conn, k, tenant) for k in kinds}
                assert together == apart, tenant
                seen[tenant] = {k: v.version if v else None for k, v in together.items()}
        return seen

    assert await agree() == {t: dict.fromkeys(kinds) for t in ("acme", "globex", "*")}
    await cp.publish_config(OPERATOR, ConfigKind.ADMISSION, "*", {"max_concurrent_sessions": 9})
    await cp.publish_config(OPERATOR, ConfigKind.POLICY, "acme", POLICY_V1)
    await cp.publish_config(OPERATOR, ConfigKind.ADMISSION, "acme", {"max_concurrent_sessions": 5})
    await cp.publish_config(OPERATOR, ConfigKind.ADMISSION, "acme", {"max_concurrent_sessions": 4})
    seen = await agree()
    assert seen["acme"] == {ConfigKind.POLICY: 1, ConfigKind.ADMISSION: 2}
    assert seen["globex"] == {ConfigKind.POLICY: None, ConfigKind.ADMISSION: 1}  # the default's
    await cp.activate_config(OPERATOR, ConfigKind.ADMISSION, "acme", 1)
    assert (await agree())["acme"] == {ConfigKind.POLICY: 1, ConfigKind.ADMISSION: 1}
