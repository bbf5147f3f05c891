"""Where the plan resolver reads the turn-start snapshots from.

:class:`SnapshotSource` is the control-plane client interface the runtime
depends on (the production runtime implements it over HTTP, in
``rspp.controlplane``); :class:`StaticSnapshotSource` is the in-process
implementation used by the local runner and tests. A
:class:`FreezingSnapshotSource` (a served session's) may let a turn open on the
expired snapshots of its last bundle while its control plane is unreachable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from rspp.contracts import (
    SCHEMA_VERSION,
    AbiCompatibility,
    AdmissionPolicy,
    PolicyResolution,
    ProviderHealth,
    RecordingLevel,
    RoutingView,
    RuntimeHealth,
    SnapshotMeta,
    TurnStartBundle,
    VersionResolution,
)

if TYPE_CHECKING:
    from rspp.spec import GraphDefinition

__all__ = ["FreezingSnapshotSource", "SnapshotSource", "StaticSnapshotSource",
           "in_process_bundle"]

_DAY_MS = 24 * 3600 * 1000


@runtime_checkable
class SnapshotSource(Protocol):
    """Reads the six versioned turn-start snapshots for one session."""

    async def turn_start_bundle(
        self, *, tenant_id: str, session_id: str, pipeline_name: str, runtime_id: str
    ) -> TurnStartBundle: ...


@runtime_checkable
class FreezingSnapshotSource(SnapshotSource, Protocol):
    """A source that may let a turn open on expired snapshots (issue 14: a served session
    whose control plane became unreachable mid-session continues on its frozen plan while
    its lease bound holds)."""

    def may_freeze(self, bundle: TurnStartBundle) -> bool:
        """True: ``bundle`` is the last one got before the control plane became unreachable
        and the session's authority still holds, so its expired snapshots are used."""
        ...

    def frozen(self, turn_id: str, stale: tuple[str, ...]) -> None:
        """Turn ``turn_id``'s plan was materialised over the expired snapshots ``stale``."""
        ...


class StaticSnapshotSource:
    """In-process source: a default bundle plus optional per-tenant bundles.

    ``set`` replaces a bundle atomically; a turn that already resolved its plan
    keeps the snapshots it read (plan freeze), the next turn sees the new ones.
    ``reads`` counts calls, for tests and diagnostics.
    """

    def __init__(self, bundle: TurnStartBundle | None = None) -> None:
        self._default = bundle if bundle is not None else TurnStartBundle()
        self._by_tenant: dict[str, TurnStartBundle] = {}
        self.reads = 0

    def set(self, bundle: TurnStartBundle, *, tenant_id: str | None = None) -> None:
        if tenant_id is None:
            self._default = bundle
        else:
            self._by_tenant[tenant_id] = bundle

    async def turn_start_bundle(
        self, *, tenant_id: str, session_id: str, pipeline_name: str, runtime_id: str
    ) -> TurnStartBundle:
        self.reads += 1
        return self._by_tenant.get(tenant_id, self._default)


def in_process_bundle(
    gd: GraphDefinition,
    *,
    now_ms: int,
    tenant_id: str,
    runtime_id: str,
    recording_level: RecordingLevel = RecordingLevel.L1,
    id_prefix: str = "local",
    ttl_ms: int = _DAY_MS,
    refs: Mapping[str, tuple[str, int]] | None = None,
) -> TurnStartBundle:
    """The six snapshots of a single-process run: the pipeline as compiled, this runtime
    healthy, generous quotas, providers as the spec binds them, the current ABI.

    Snapshot ids are ``<id_prefix>:<name>`` version 1 unless ``refs`` names one
    (a replay reuses the recorded ids so plan hashes match).
    """
    known = refs or {}

    def meta(name: str) -> SnapshotMeta:
        sid, version = known.get(name, (f"{id_prefix}:{name}", 1))
        return SnapshotMeta(snapshot_id=sid, version=version, issued_at_ms=now_ms,
                            expires_at_ms=now_ms + ttl_ms)

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
