"""The in-process control plane of the local runner: a fresh turn-start bundle.

Six snapshots (version resolution, routing view, admission policy, policy
resolution, provider health, ABI compatibility) for one compiled graph, valid
for ``ttl_ms``. The runner's :class:`~rspp.turns._snapshot_source.StaticSnapshotSource`
serves it to the plan resolver at every turn start.
"""

from __future__ import annotations

from rspp.contracts import RecordingLevel, TurnStartBundle
from rspp.spec import GraphDefinition
from rspp.turns._snapshot_source import in_process_bundle

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
    return in_process_bundle(gd, now_ms=now_ms, tenant_id=tenant_id, runtime_id=runtime_id,
                             recording_level=recording_level, ttl_ms=ttl_ms)
