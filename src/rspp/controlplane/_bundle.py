"""Turn-start bundle: the six versioned snapshots a runtime freezes into a plan."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import (
    SCHEMA_VERSION,
    AbiCompatibility,
    SnapshotMeta,
    TurnStartBundle,
    VersionResolution,
)
from rspp.controlplane._admission import admission_snapshot
from rspp.controlplane._configs import ConfigKind, active_config
from rspp.controlplane._errors import NotFound
from rspp.controlplane._policy import (
    PolicyDocument,
    SessionAttributes,
    evaluate_policy,
    parse_policy,
)
from rspp.controlplane._service import ControlPlane

SUPPORTED_PROFILES = ("simple/v1",)
logger = logging.getLogger("rspp.controlplane.policy")


async def build_bundle(
    cp: ControlPlane, *, tenant_id: str, session_id: str, pipeline_name: str, runtime_id: str | None
) -> TurnStartBundle:
    """Snapshots for a turn of ``session_id``; a missing piece is left ``None`` (runtime defers)."""
    now = cp.clock()
    ttl = cp.settings.snapshot_ttl_ms
    async with cp.store.tx() as conn:
        try:
            info = await cp.sessions.get_in(conn, session_id)
        except NotFound:
            info = None
        attrs = SessionAttributes(
            **{
                k: v
                for k, v in (info.attributes if info else {}).items()
                if k in ("language", "region", "cost_tier")
            }
        )
        version = await _version(cp, conn, tenant_id, session_id, pipeline_name, info, now, ttl)
        target_runtime = runtime_id or (info.runtime_id if info else None)
        routing = None
        if target_runtime is not None:
            try:
                routing = await cp.routing.view_in(conn, target_runtime, now_ms=now)
            except NotFound:
                routing = None
        admission = admission_snapshot(
            tenant_id,
            await active_config(conn, ConfigKind.ADMISSION, tenant_id),
            now_ms=now,
            ttl_ms=ttl,
        )
        health = await cp.routing.provider_health_in(conn, now_ms=now)
        policy_cfg = await active_config(conn, ConfigKind.POLICY, tenant_id)
        doc = parse_policy(policy_cfg.body) if policy_cfg else PolicyDocument()
        policy_version = policy_cfg.version if policy_cfg else 0
        meta = SnapshotMeta(
            snapshot_id=f"pr:{tenant_id}:v{policy_version}:ph{health.meta.version}",
            version=policy_version,
            issued_at_ms=now,
            expires_at_ms=now + ttl,
        )
        decision = evaluate_policy(doc, attrs, health, meta)
        policy = decision.resolution
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
        abi = await _abi(cp, conn, version, now, ttl)
    return TurnStartBundle(
        version_resolution=version,
        routing_view=routing,
        admission_policy=admission,
        policy_resolution=policy,
        provider_health=health,
        abi_compatibility=abi,
    )


async def _version(
    cp: ControlPlane,
    conn: AsyncConnection,
    tenant_id: str,
    session_id: str,
    pipeline_name: str,
    info: object,
    now: int,
    ttl: int,
) -> VersionResolution | None:
    from rspp.controlplane._sessions import SessionInfo

    if (
        isinstance(info, SessionInfo)
        and info.tenant_id == tenant_id
        and info.pipeline_name == pipeline_name
    ):
        record = await cp.registry.get(pipeline_name, info.pipeline_version, conn=conn)
        return VersionResolution(
            meta=SnapshotMeta(
                snapshot_id=f"vr:{pipeline_name}:pinned:{session_id}:{record.version}",
                version=0,
                issued_at_ms=now,
                expires_at_ms=now + ttl,
            ),
            pipeline_name=pipeline_name,
            pipeline_version=record.version,
            spec_hash=record.spec_hash,
            cohort="pinned",
        )
    try:
        return await cp.rollouts.resolve_in(
            conn, pipeline_name, tenant_id=tenant_id, session_id=session_id, now_ms=now, ttl_ms=ttl
        )
    except NotFound:
        return None


async def _abi(
    cp: ControlPlane, conn: AsyncConnection, version: VersionResolution | None, now: int, ttl: int
) -> AbiCompatibility | None:
    if version is None:
        return None
    record = await cp.registry.get(version.pipeline_name, version.pipeline_version, conn=conn)
    meta = SnapshotMeta(
        snapshot_id=f"abi:{record.spec_hash[:16]}:{SCHEMA_VERSION}",
        version=0,
        issued_at_ms=now,
        expires_at_ms=now + ttl,
    )
    profile = _profile_of(record.spec_text or "")
    if profile not in SUPPORTED_PROFILES:
        return AbiCompatibility(
            meta=meta,
            schema_version=SCHEMA_VERSION,
            compatible=False,
            reason=f"profile {profile} is not supported by contract {SCHEMA_VERSION}",
        )
    return AbiCompatibility(meta=meta, schema_version=SCHEMA_VERSION, compatible=True)


def _profile_of(spec_text: str) -> str:
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(spec_text)
    if isinstance(doc, dict) and isinstance(doc.get("profile"), str):
        return str(doc["profile"])
    return "simple/v1"
