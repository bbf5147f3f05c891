"""The in-process control plane of the local runner: a fresh turn-start bundle.

Six snapshots (version resolution, routing view, admission policy, policy
resolution, provider health, ABI compatibility) for one compiled graph, valid
for ``ttl_ms``. The runner's :class:`~rspp.runtime._snapshot_source.StaticSnapshotSource`
serves it to the plan resolver at every turn start.
"""

from __future__ import annotations

from rspp.contracts import (
    SCHEMA_VERSION,
    AbiCompatibility,
    AdmissionPolicy,
    PolicyResolution,
    ProviderHealth,
    RecordingLevel,
    RoutingView,
    SnapshotMeta,
    TurnStartBundle,
    VersionResolution,
)
from rspp.contracts._snapshots import RuntimeHealth
from rspp.spec import GraphDefinition

__all__ = ["LOCAL_RUNTIME_ID", "LOCAL_TENANT", "local_bundle"]

LOCAL_RUNTIME_ID = "local-runner"
LOCAL_TENANT = "local"


def local_bundle(
    gd: GraphDefinition,
    *,
    now_ms: int,
    ttl_ms: int = 24 * 3600 * 1000,
    tenant_id: str = LOCAL_TENANT,
    runtime_id: str = LOCAL_RUNTIME_ID,
    recording_level: RecordingLevel = RecordingLevel.L1,
) -> TurnStartBundle:
    def meta(name: str) -> SnapshotMeta:
        return SnapshotMeta(snapshot_id=f"local:{name}", version=1,
                            issued_at_ms=now_ms, expires_at_ms=now_ms + ttl_ms)

    return TurnStartBundle(
        version_resolution=VersionResolution(
            meta=meta("version_resolution"), pipeline_name=gd.name,
            pipeline_version=gd.version, spec_hash=gd.spec_hash,
        ),
        routing_view=RoutingView(meta=meta("routing_view"), runtime_id=runtime_id,
                                 health=RuntimeHealth.HEALTHY),
        admission_policy=AdmissionPolicy(
            meta=meta("admission_policy"), tenant_id=tenant_id, max_concurrent_sessions=16,
            sessions_per_minute=600, turns_per_minute=600,
        ),
        policy_resolution=PolicyResolution(
            meta=meta("policy_resolution"), provider_bindings={},
            recording_level=recording_level,
        ),
        provider_health=ProviderHealth(meta=meta("provider_health")),
        abi_compatibility=AbiCompatibility(meta=meta("abi_compatibility"),
                                           schema_version=SCHEMA_VERSION, compatible=True),
    )
