"""Plan freeze: ResolvedTurnPlan from a compiled graph + turn-start snapshots (F-149, F-150)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from rspp.contracts import (
    AbiCompatibility,
    AdaptiveAction,
    AdmissionPolicy,
    NodeExecutionPolicy,
    OutcomeKind,
    PolicyResolution,
    ProviderHealth,
    ProviderHealthEntry,
    ProviderStatus,
    RecordingLevel,
    RoutingView,
    SnapshotMeta,
    StreamingHandoff,
    TurnStartBundle,
    VersionResolution,
)
from rspp.contracts._snapshots import RuntimeHealth
from rspp.kernel._clock import VirtualClock
from rspp.spec import GraphDefinition, compile_spec, load_spec
from rspp.turns._determinism import derive_seed
from rspp.turns._plan_resolver import PlanResolver, compute_plan_hash
from rspp.turns._snapshot_source import SnapshotSource, StaticSnapshotSource

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[3] / "pipelines" / "examples" / "voice_assistant.yaml"
NOW = 1_700_000_000_000


def meta(name: str, version: int = 1, expires: int = NOW + 60_000) -> SnapshotMeta:
    return SnapshotMeta(
        snapshot_id=name, version=version, issued_at_ms=NOW - 1000, expires_at_ms=expires
    )


@pytest.fixture(scope="module")
def graph() -> GraphDefinition:
    return compile_spec(load_spec(EXAMPLE))


def bundle_for(graph: GraphDefinition, **overrides: Any) -> TurnStartBundle:
    parts: dict[str, Any] = {
        "version_resolution": VersionResolution(
            meta=meta("vr"),
            pipeline_name=graph.name,
            pipeline_version=graph.version,
            spec_hash=graph.spec_hash,
        ),
        "routing_view": RoutingView(
            meta=meta("rv"), runtime_id="rt-1", health=RuntimeHealth.HEALTHY
        ),
        "admission_policy": AdmissionPolicy(
            meta=meta("ap"),
            tenant_id="acme",
            max_concurrent_sessions=10,
            sessions_per_minute=60,
            turns_per_minute=600,
        ),
        "policy_resolution": PolicyResolution(
            meta=meta("pr"),
            provider_bindings={},
            fallback_chains={"tts": ("backup-tts",)},
            allowed_adaptive_actions=(AdaptiveAction.FALLBACK, AdaptiveAction.DEGRADE),
            recording_level=RecordingLevel.L1,
        ),
        "provider_health": ProviderHealth(meta=meta("ph"), providers={}),
        "abi_compatibility": AbiCompatibility(
            meta=meta("abi"), schema_version="v1.0", compatible=True
        ),
    }
    parts.update(overrides)
    return TurnStartBundle(**parts)


def resolver(
    graph: GraphDefinition, bundle: TurnStartBundle
) -> tuple[PlanResolver, StaticSnapshotSource]:
    source = StaticSnapshotSource(bundle)
    assert isinstance(source, SnapshotSource)
    clock = VirtualClock(start_wall_ms=NOW)
    return PlanResolver(graph, source, clock, runtime_id="rt-1"), source


async def test_plan_is_frozen_hashed_and_schema_valid(
    graph: GraphDefinition, reference_schema: dict[str, Any]
) -> None:
    res, _ = resolver(graph, bundle_for(graph))
    out = await res.resolve(
        tenant_id="acme", session_id="s1", turn_id="s1:turn:1", authority_epoch=4, start_sequence=17
    )
    assert out.refusal is None and out.plan is not None
    plan = out.plan
    wrapper = {
        "$schema": reference_schema["$schema"],
        "$defs": reference_schema["$defs"],
        "$ref": "#/$defs/resolved_turn_plan",
    }
    jsonschema.Draft202012Validator(wrapper).validate(
        msgspec.json.decode(msgspec.json.encode(plan))
    )
    body = msgspec.json.decode(msgspec.json.encode(plan))
    body.pop("plan_hash")
    canonical = msgspec.json.encode(body, order="sorted")
    assert plan.plan_hash == hashlib.sha256(canonical).hexdigest() == compute_plan_hash(plan)
    with pytest.raises(AttributeError):
        setattr(plan, "authority_epoch", 5)  # noqa: B010 - frozen struct must refuse this
    assert plan.authority_epoch == 4
    assert plan.graph_definition_ref == f"{graph.name}@{graph.version}#{graph.graph_hash}"
    assert plan.edge_buffer_policies == graph.edge_buffer_policies()
    assert plan.provider_bindings == {p.modality: p.primary for p in graph.providers}
    assert plan.snapshot_provenance.routing_view_snapshot == "rv@v1"
    det = plan.determinism
    assert det.seed == derive_seed("s1", "s1:turn:1")
    assert det.ordering_markers[0] == "runtime_sequence_from:17"
    assert (det.merge_rule_id, det.merge_rule_version) == ("runtime_sequence_order", "1.0")
    keys = [i.input_key for i in det.nondeterministic_inputs]
    assert keys[0] == "turn_start_wall_ms" and "snapshot:provider_health" in keys
    assert plan.allowed_adaptive_actions == (AdaptiveAction.FALLBACK, AdaptiveAction.DEGRADE)


async def test_plan_hash_covers_optional_fields_and_the_cached_graph_parts(
    graph: GraphDefinition,
) -> None:
    """The hash is the canonical JSON of every field but ``plan_hash``, optional ones too
    (omitted when at their default); plans of one resolver share the graph's parts."""
    res, _ = resolver(graph, bundle_for(graph))
    plans = []
    for n in (1, 2):
        out = await res.resolve(tenant_id="acme", session_id="s1", turn_id=f"s1:turn:{n}",
                                authority_epoch=n, start_sequence=10 * n)
        assert out.plan is not None
        plans.append(out.plan)
    assert plans[0].edge_buffer_policies == plans[1].edge_buffer_policies
    assert plans[0].plan_hash != plans[1].plan_hash  # turn id, epoch, seed, sequence differ
    extra = msgspec.structs.replace(
        plans[0], node_execution_policies={"llm": NodeExecutionPolicy(concurrency_limit=2)},
        streaming_handoff=StreamingHandoff(enabled=False))
    for plan in (*plans, extra):
        body = msgspec.to_builtins(plan)
        body.pop("plan_hash")
        canonical = msgspec.json.encode(body, order="sorted")
        assert compute_plan_hash(plan) == hashlib.sha256(canonical).hexdigest()
    assert compute_plan_hash(extra) != compute_plan_hash(plans[0])
    # a field at its default is omitted from the canonical form, as the encoder omits it
    assert compute_plan_hash(msgspec.structs.replace(extra, node_execution_policies=None,
                                                     streaming_handoff=None)) == \
        compute_plan_hash(plans[0])


async def test_same_inputs_same_hash_and_policy_change_applies_next_turn(
    graph: GraphDefinition,
) -> None:
    res, source = resolver(graph, bundle_for(graph))
    a = await res.resolve(tenant_id="acme", session_id="s1", turn_id="t1", authority_epoch=1)
    b = await res.resolve(tenant_id="acme", session_id="s1", turn_id="t1", authority_epoch=1)
    assert a.plan is not None and b.plan is not None and a.plan.plan_hash == b.plan.plan_hash
    first = a.plan
    source.set(
        bundle_for(
            graph,
            policy_resolution=PolicyResolution(
                meta=meta("pr", 2), provider_bindings={"tts": "backup-tts"}, turn_budget_ms=900
            ),
        )
    )
    c = await res.resolve(tenant_id="acme", session_id="s1", turn_id="t2", authority_epoch=1)
    assert c.plan is not None
    assert c.plan.provider_bindings["tts"] == "backup-tts" and c.plan.budgets.turn_budget_ms == 900
    assert c.plan.snapshot_provenance.policy_resolution_snapshot == "pr@v2"
    assert first.provider_bindings["tts"] != "backup-tts"  # the earlier plan never changes


async def test_unhealthy_provider_uses_fallback_chain(graph: GraphDefinition) -> None:
    tts = graph.provider("tts")
    assert tts is not None
    health = ProviderHealth(
        meta=meta("ph"),
        providers={tts.primary: ProviderHealthEntry(status=ProviderStatus.UNHEALTHY)},
    )
    res, _ = resolver(graph, bundle_for(graph, provider_health=health))
    out = await res.resolve(tenant_id="acme", session_id="s", turn_id="t", authority_epoch=0)
    assert out.plan is not None and out.plan.provider_bindings["tts"] == "backup-tts"
    health2 = ProviderHealth(
        meta=meta("ph"),
        providers={
            tts.primary: ProviderHealthEntry(status=ProviderStatus.UNHEALTHY),
            "backup-tts": ProviderHealthEntry(status=ProviderStatus.UNHEALTHY),
        },
    )
    res2, _ = resolver(graph, bundle_for(graph, provider_health=health2))
    out2 = await res2.resolve(tenant_id="acme", session_id="s", turn_id="t", authority_epoch=0)
    assert out2.plan is None and out2.refusal is not None
    assert (out2.refusal.kind, out2.refusal.reason) == (
        OutcomeKind.DEFER,
        "provider_unavailable:tts",
    )


@pytest.mark.parametrize(
    ("override", "kind", "reason"),
    [
        ({"routing_view": None}, OutcomeKind.DEFER, "snapshot_missing:routing_view"),
        ({"abi_compatibility": None}, OutcomeKind.DEFER, "snapshot_missing:abi_compatibility"),
        (
            {"provider_health": ProviderHealth(meta=meta("ph", expires=NOW - 1))},
            OutcomeKind.DEFER,
            "snapshot_stale:provider_health",
        ),
        (
            {
                "abi_compatibility": AbiCompatibility(
                    meta=meta("abi"), schema_version="v1.0", compatible=False, reason="node_abi_v2"
                )
            },
            OutcomeKind.REJECT,
            "abi_incompatible:node_abi_v2",
        ),
        (
            {
                "abi_compatibility": AbiCompatibility(
                    meta=meta("abi"), schema_version="v2.0", compatible=True
                )
            },
            OutcomeKind.REJECT,
            "abi_incompatible:v2.0",
        ),
        (
            {
                "routing_view": RoutingView(
                    meta=meta("rv"), runtime_id="rt-9", health=RuntimeHealth.HEALTHY
                )
            },
            OutcomeKind.REJECT,
            "routing_mismatch:rt-9",
        ),
        (
            {
                "routing_view": RoutingView(
                    meta=meta("rv"), runtime_id="rt-1", health=RuntimeHealth.UNHEALTHY
                )
            },
            OutcomeKind.DEFER,
            "runtime_unhealthy",
        ),
    ],
)
async def test_bad_snapshots_give_deterministic_refusals(
    graph: GraphDefinition, override: dict[str, Any], kind: OutcomeKind, reason: str
) -> None:
    res, _ = resolver(graph, bundle_for(graph, **override))
    for _ in range(2):  # deterministic: same verdict every time
        out = await res.resolve(tenant_id="acme", session_id="s", turn_id="t", authority_epoch=0)
        assert out.plan is None and out.refusal is not None
        assert (out.refusal.kind, out.refusal.reason) == (kind, reason)


async def test_version_mismatch_rejects(graph: GraphDefinition) -> None:
    vr = VersionResolution(
        meta=meta("vr"), pipeline_name=graph.name, pipeline_version="9.9.9", spec_hash="x"
    )
    res, _ = resolver(graph, bundle_for(graph, version_resolution=vr))
    out = await res.resolve(tenant_id="acme", session_id="s", turn_id="t", authority_epoch=0)
    assert out.refusal is not None and out.refusal.kind is OutcomeKind.REJECT
    assert out.refusal.reason.startswith("version_mismatch:")


class _Freezing(StaticSnapshotSource):
    """A served session's source as the resolver sees it: ``may_freeze`` says whether its
    control plane is unreachable and the lease bound holds (issue 14)."""

    def __init__(self, bundle: TurnStartBundle, *, freeze: bool) -> None:
        super().__init__(bundle)
        self.freeze = freeze
        self.told: list[tuple[str, tuple[str, ...]]] = []

    def may_freeze(self, bundle: TurnStartBundle) -> bool:
        return self.freeze

    def frozen(self, turn_id: str, stale: tuple[str, ...]) -> None:
        self.told.append((turn_id, stale))


@pytest.mark.parametrize("freeze", [True, False], ids=["unreachable-lease-holds", "no-freeze"])
async def test_expired_snapshots_open_the_turn_only_when_the_source_freezes(
    graph: GraphDefinition, freeze: bool
) -> None:
    stale = bundle_for(graph, provider_health=ProviderHealth(meta=meta("ph", expires=NOW - 1)),
                       routing_view=RoutingView(meta=meta("rv", expires=NOW - 5),
                                                runtime_id="rt-1", health=RuntimeHealth.HEALTHY))
    source = _Freezing(stale, freeze=freeze)
    res = PlanResolver(graph, source, VirtualClock(start_wall_ms=NOW), runtime_id="rt-1")
    assert (res.check(stale) is None) is freeze
    out = await res.resolve(tenant_id="acme", session_id="s", turn_id="s:turn:1",
                            authority_epoch=1)
    if not freeze:  # T2: a control plane that answers (or no lease) still defers
        assert out.plan is None and out.refusal is not None
        assert (out.refusal.kind, out.refusal.reason) == (OutcomeKind.DEFER,
                                                          "snapshot_stale:routing_view")
        assert source.told == []
        return
    assert out.plan is not None and out.refusal is None
    # the provenance names the snapshot ids the plan was frozen over; the source is told once
    prov = out.plan.snapshot_provenance
    assert (prov.routing_view_snapshot, prov.provider_health_snapshot) == ("rv@v1", "ph@v1")
    assert source.told == [("s:turn:1", ("routing_view", "provider_health"))]
    # and its DeterminismContext marks the freeze (the failed turn-start call is its input)
    (mark,) = [i for i in out.plan.determinism.nondeterministic_inputs
               if i.input_key == "snapshot_freeze"]
    assert (mark.source.value, mark.evidence_ref) == (
        "external_call", "control_plane_unreachable;expired:routing_view,provider_health")
