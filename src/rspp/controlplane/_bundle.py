"""Turn-start bundle: the six versioned snapshots a runtime freezes into a plan.

:func:`build_bundle` answers ``GET /v1/bundle`` (one session); :func:`build_bundles`
answers ``POST /v1/runtimes/{id}/bundles``, the bundles of every live session of a
runtime in one transaction. Both read through :class:`_Reads`, which reads each
tenant-wide or fleet-wide part (admission and policy configs, provider health, the
runtime's routing view, a pipeline version and its ABI verdict) once per transaction,
so a batch costs one read per session plus one per shared part.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import (
    SCHEMA_VERSION,
    AbiCompatibility,
    AdmissionPolicy,
    ProviderHealth,
    RoutingView,
    SnapshotMeta,
    TurnStartBundle,
    VersionResolution,
)
from rspp.controlplane._admission import admission_snapshot
from rspp.controlplane._configs import (
    ConfigKind,
    ConfigVersion,
    active_config,
    active_configs,
)
from rspp.controlplane._errors import NotFound
from rspp.controlplane._policy import (
    PolicyDocument,
    SessionAttributes,
    evaluate_policy,
    parse_policy,
)
from rspp.controlplane._registry import PipelineRecord
from rspp.controlplane._service import ControlPlane
from rspp.controlplane._sessions import SessionInfo

__all__ = ["BundleKey", "build_bundle", "build_bundles", "bundle_in"]

SUPPORTED_PROFILES = ("simple/v1",)
#: the configs a bundle reads (both read in one statement)
_BUNDLE_CONFIGS = (ConfigKind.POLICY, ConfigKind.ADMISSION)
logger = logging.getLogger("rspp.controlplane.policy")

#: (tenant_id, session_id, pipeline_name) of one bundle
BundleKey = tuple[str, str, str]


async def build_bundle(
    cp: ControlPlane, *, tenant_id: str, session_id: str, pipeline_name: str, runtime_id: str | None
) -> TurnStartBundle:
    """Snapshots for a turn of ``session_id``; a missing piece is left ``None`` (runtime defers)."""
    async with cp.store.tx() as conn:
        reads = _Reads(cp, conn)
        return await reads.bundle(tenant_id, session_id, pipeline_name, runtime_id)


async def bundle_in(
    cp: ControlPlane, conn: AsyncConnection, *, tenant_id: str, session_id: str,
    pipeline_name: str, runtime_id: str | None, info: SessionInfo | None = None
) -> TurnStartBundle:
    """:func:`build_bundle` inside the caller's transaction (a session start, which read
    the session's record ``info`` already)."""
    return await _Reads(cp, conn).bundle(tenant_id, session_id, pipeline_name, runtime_id,
                                         info=info)


async def build_bundles(
    cp: ControlPlane, runtime_id: str, keys: list[BundleKey]
) -> list[tuple[str, TurnStartBundle]]:
    """The bundles of ``keys`` for sessions on ``runtime_id``, in one transaction."""
    async with cp.store.tx() as conn:
        reads = _Reads(cp, conn)
        return [(sid, await reads.bundle(tenant, sid, name, runtime_id))
                for tenant, sid, name in keys]


class _Reads:
    """The reads of one bundle transaction; shared parts are read once (module docstring)."""

    def __init__(self, cp: ControlPlane, conn: AsyncConnection) -> None:
        self.cp = cp
        self.conn = conn
        self.now = cp.clock()
        self.ttl = cp.settings.snapshot_ttl_ms
        self._memo: dict[tuple[str, ...], Any] = {}

    async def _once(self, key: tuple[str, ...], make: Any) -> Any:
        if key not in self._memo:
            self._memo[key] = await make()
        return self._memo[key]

    def _meta(self, snapshot_id: str, version: int = 0) -> SnapshotMeta:
        return SnapshotMeta(snapshot_id=snapshot_id, version=version, issued_at_ms=self.now,
                            expires_at_ms=self.now + self.ttl)

    async def bundle(self, tenant_id: str, session_id: str, pipeline_name: str,
                     runtime_id: str | None, *, info: SessionInfo | None = None
                     ) -> TurnStartBundle:
        cp, conn = self.cp, self.conn
        if info is None or info.session_id != session_id:
            try:
                info = await cp.sessions.get_in(conn, session_id)
            except NotFound:
                info = None
        attrs = SessionAttributes.of(info.attributes if info else {})
        version = await self._version(tenant_id, session_id, pipeline_name, info)
        target_runtime = runtime_id or (info.runtime_id if info else None)
        routing = await self._routing(target_runtime) if target_runtime is not None else None
        admission = await self._admission(tenant_id)
        health = await self._health()
        policy_cfg = await self._config(ConfigKind.POLICY, tenant_id)
        doc = parse_policy(policy_cfg.body) if policy_cfg else PolicyDocument()
        policy_version = policy_cfg.version if policy_cfg else 0
        meta = self._meta(f"pr:{tenant_id}:v{policy_version}:ph{health.meta.version}",
                          policy_version)
        decision = evaluate_policy(doc, attrs, health, meta)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "policy %s tenant=%s session_id=%s: %s",
                meta.snapshot_id,
                tenant_id,
                session_id,
                "; ".join(decision.trace),
                extra={
                    "tenant_id": tenant_id,
                    "session_id": session_id,
                    "policy_trace": decision.trace,
                },
            )
        if info is not None and info.policy_version != (policy_cfg.version if policy_cfg else None):
            await cp.sessions.set_policy_version_in(
                conn, session_id, policy_cfg.version if policy_cfg else None
            )
        abi = await self._abi(version)
        return TurnStartBundle(
            version_resolution=version,
            routing_view=routing,
            admission_policy=admission,
            policy_resolution=decision.resolution,
            provider_health=health,
            abi_compatibility=abi,
        )

    async def _record(self, name: str, version: str) -> PipelineRecord:
        async def read() -> PipelineRecord:
            return await self.cp.registry.get_version(name, version, conn=self.conn)

        record: PipelineRecord = await self._once(("pipeline", name, version), read)
        return record

    async def _config(self, kind: ConfigKind, tenant_id: str) -> ConfigVersion | None:
        async def read() -> dict[ConfigKind, ConfigVersion | None]:
            return await active_configs(self.conn, _BUNDLE_CONFIGS, tenant_id)

        if kind not in _BUNDLE_CONFIGS:
            return await active_config(self.conn, kind, tenant_id)
        found: dict[ConfigKind, ConfigVersion | None] = await self._once(
            ("configs", tenant_id), read)
        return found[kind]

    async def _routing(self, runtime_id: str) -> RoutingView | None:
        async def read() -> RoutingView | None:
            try:
                return await self.cp.routing.view_in(self.conn, runtime_id, now_ms=self.now)
            except NotFound:
                return None

        view: RoutingView | None = await self._once(("routing", runtime_id), read)
        return view

    async def _admission(self, tenant_id: str) -> AdmissionPolicy:
        config = await self._config(ConfigKind.ADMISSION, tenant_id)
        return admission_snapshot(tenant_id, config, now_ms=self.now, ttl_ms=self.ttl)

    async def _health(self) -> ProviderHealth:
        async def read() -> ProviderHealth:
            return await self.cp.routing.provider_health_in(self.conn, now_ms=self.now)

        health: ProviderHealth = await self._once(("health",), read)
        return health

    async def _version(self, tenant_id: str, session_id: str, pipeline_name: str,
                       info: SessionInfo | None) -> VersionResolution | None:
        if info is not None and info.tenant_id == tenant_id \
                and info.pipeline_name == pipeline_name:
            record = await self._record(pipeline_name, info.pipeline_version)
            return VersionResolution(
                meta=self._meta(f"vr:{pipeline_name}:pinned:{session_id}:{record.version}"),
                pipeline_name=pipeline_name,
                pipeline_version=record.version,
                spec_hash=record.spec_hash,
                cohort="pinned",
            )
        try:
            return await self.cp.rollouts.resolve_in(
                self.conn, pipeline_name, tenant_id=tenant_id, session_id=session_id,
                now_ms=self.now, ttl_ms=self.ttl
            )
        except NotFound:
            return None

    async def _abi(self, version: VersionResolution | None) -> AbiCompatibility | None:
        if version is None:
            return None
        record = await self._record(version.pipeline_name, version.pipeline_version)
        meta = self._meta(f"abi:{record.spec_hash[:16]}:{SCHEMA_VERSION}")
        profile = _profile_of(record.spec_hash, record.spec_text or "")
        if profile not in SUPPORTED_PROFILES:
            return AbiCompatibility(
                meta=meta,
                schema_version=SCHEMA_VERSION,
                compatible=False,
                reason=f"profile {profile} is not supported by contract {SCHEMA_VERSION}",
            )
        return AbiCompatibility(meta=meta, schema_version=SCHEMA_VERSION, compatible=True)


#: spec hash -> profile: a published version never changes, so its text is parsed once
_PROFILES: dict[str, str] = {}


def _profile_of(spec_hash: str, spec_text: str) -> str:
    found = _PROFILES.get(spec_hash)
    if found is not None:
        return found
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(spec_text)
    profile = str(doc["profile"]) if isinstance(doc, dict) and isinstance(
        doc.get("profile"), str) else "simple/v1"
    if len(_PROFILES) >= 1024:
        _PROFILES.clear()
    _PROFILES[spec_hash] = profile
    return profile
