"""Versioned control-plane snapshots the runtime reads at turn start.

The control plane (CP-01..CP-10) produces these; the runtime's plan resolver reads
them through a client interface and records their ids in the plan's
``snapshot_provenance``. Every snapshot carries an id, a monotonically growing
version, and its issue/expiry times so staleness is decided deterministically.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from rspp.contracts._enums import AdaptiveAction, RecordingLevel
from rspp.contracts._types import NonEmptyStr, NonNegInt, PosInt


class SnapshotMeta(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Identity and freshness of one snapshot."""

    snapshot_id: NonEmptyStr
    version: NonNegInt
    issued_at_ms: NonNegInt
    expires_at_ms: NonNegInt


class VersionResolution(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Which pipeline version a session/tenant runs (CP-09 rollout result)."""

    meta: SnapshotMeta
    pipeline_name: NonEmptyStr
    pipeline_version: NonEmptyStr
    spec_hash: NonEmptyStr
    rollout_id: NonEmptyStr | None = None
    cohort: NonEmptyStr | None = None


class RuntimeHealth(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class RoutingView(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Placement of a session on a runtime instance (CP-08)."""

    meta: SnapshotMeta
    runtime_id: NonEmptyStr
    health: RuntimeHealth
    endpoint: NonEmptyStr | None = None


class AdmissionPolicy(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Per-tenant quotas the runtime enforces locally (CP-05)."""

    meta: SnapshotMeta
    tenant_id: NonEmptyStr
    max_concurrent_sessions: PosInt
    sessions_per_minute: PosInt
    turns_per_minute: PosInt
    #: LLM tokens the tenant may use per minute; over it, new turns are deferred (F-050)
    llm_tokens_per_minute: PosInt | None = None


class PolicyResolution(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Provider choice, fallbacks, budgets and postures for a tenant (CP-04).

    ``provider_bindings`` maps a modality (``stt``, ``llm``, ``tts``) to a provider
    id; ``fallback_chains`` lists, per modality, the providers tried after it.
    """

    meta: SnapshotMeta
    provider_bindings: dict[str, str]
    fallback_chains: dict[str, tuple[str, ...]] = {}
    allowed_adaptive_actions: tuple[AdaptiveAction, ...] = ()
    recording_level: RecordingLevel = RecordingLevel.L1
    turn_budget_ms: PosInt | None = None
    degrade_to_text_on_tts_failure: bool = True
    insert_compliance_nodes: tuple[str, ...] = ()


class ProviderStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class ProviderHealthEntry(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    status: ProviderStatus
    error_rate: float = 0.0
    latency_p95_ms: NonNegInt | None = None
    #: the last reported unit price (USD) and when it was reported (F-066)
    price_usd: float | None = None
    price_at_ms: NonNegInt | None = None


class ProviderHealth(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Aggregated provider health (CP-10)."""

    meta: SnapshotMeta
    providers: dict[str, ProviderHealthEntry] = {}


class AbiCompatibility(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Whether the runtime's contract ABI can run the resolved pipeline version."""

    meta: SnapshotMeta
    schema_version: NonEmptyStr
    compatible: bool
    reason: NonEmptyStr | None = None


class TurnStartBundle(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """The six snapshots a plan is resolved from (any may be missing: defer/reject)."""

    version_resolution: VersionResolution | None = None
    routing_view: RoutingView | None = None
    admission_policy: AdmissionPolicy | None = None
    policy_resolution: PolicyResolution | None = None
    provider_health: ProviderHealth | None = None
    abi_compatibility: AbiCompatibility | None = None
