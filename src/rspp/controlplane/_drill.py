"""Recovery drill: restore a backup into a scratch database and measure RTO and RPO (NF-031).

The drill rehearses the runbook (docs/disaster-recovery.md) against a live source
without touching it:

1. take a backup of the source now, or use a scheduled backup file;
2. restore it into an empty scratch database (the clock for RTO starts here);
3. open a control plane on the scratch database, verify the audit chain, register
   a probe runtime and route one probe session per published pipeline, for the
   probe tenant and for every tenant with its own policy: admission has resumed
   when every probe is admitted (the RTO clock stops here);
4. compare each probe's pipeline version and policy version with what the source
   gives the same session now, and count the source's audit entries the backup
   does not hold: the changes a real loss at this moment would have lost. The
   data-loss window (RPO) runs from the backup to the newest of those changes.

The report says whether the measured values meet the objectives it was given.
"""

from __future__ import annotations

import time

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._backup import Backup, restore_backup, take_backup
from rspp.controlplane._config import ControlPlaneSettings
from rspp.controlplane._configs import DEFAULT_SCOPE, ConfigKind, active_config
from rspp.controlplane._errors import CPError
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._registry import Registry
from rspp.controlplane._rollout import Rollouts
from rspp.controlplane._schema import audit, audit_intake, config_heads, pipelines
from rspp.controlplane._service import ControlPlane
from rspp.controlplane._store import Store
from rspp.controlplane._util import wall_ms

PROBE_TENANT = "rspp-drill"
_PROBE = Principal(key_id="rspp-cp-drill", role=Role.ADMIN)


class Objectives(msgspec.Struct, frozen=True, kw_only=True):
    rto_s: float
    rpo_s: float


class Probe(msgspec.Struct, frozen=True, kw_only=True):
    pipeline_name: str
    tenant_id: str
    session_id: str
    admitted: bool
    pipeline_version: str | None = None
    policy_version: int | None = None
    source_pipeline_version: str | None = None
    source_policy_version: int | None = None
    error: str | None = None

    @property
    def matches_source(self) -> bool:
        return (self.pipeline_version == self.source_pipeline_version
                and self.policy_version == self.source_policy_version)


class DrillReport(msgspec.Struct, frozen=True, kw_only=True):
    objectives: Objectives
    rto_s: float
    rpo_s: float
    lost_changes: int
    backup_created_at_ms: int
    backup_age_s: float
    restored: dict[str, int]
    audit_chain_ok: bool
    probes: list[Probe]
    rto_met: bool
    rpo_met: bool
    admission_resumed: bool
    versions_match_source: bool
    ok: bool


async def _audit_tail(conn: AsyncConnection) -> tuple[int, int]:
    """(entries, newest ts_ms) of a control plane's audit log, sealed or not."""
    total, newest = 0, 0
    for table in (audit, audit_intake):
        count, ts = (await conn.execute(
            select(func.count(), func.max(table.c.ts_ms)).select_from(table))).one()
        total += int(count or 0)
        newest = max(newest, int(ts or 0))
    return total, newest


async def _probe_targets(conn: AsyncConnection) -> list[tuple[str, str]]:
    names = sorted({str(r[0]) for r in (await conn.execute(select(pipelines.c.name))).all()})
    tenants = sorted({
        str(r[0]) for r in (await conn.execute(
            select(config_heads.c.scope).where(config_heads.c.kind == ConfigKind.POLICY.value)
        )).all() if r[0] != DEFAULT_SCOPE
    })
    return [(name, tenant) for name in names for tenant in (PROBE_TENANT, *tenants)]


async def _source_view(
    source: Store, name: str, tenant: str, session_id: str, now: int
) -> tuple[str | None, int | None]:
    async with source.engine.connect() as conn:
        try:
            resolution = await Rollouts(Registry(source)).resolve_in(
                conn, name, tenant_id=tenant, session_id=session_id, now_ms=now, ttl_ms=1)
            version: str | None = resolution.pipeline_version
        except CPError:  # the pipeline is gone from the source
            version = None
        policy = await active_config(conn, ConfigKind.POLICY, tenant)
    return version, policy.version if policy is not None else None


async def run_drill(
    source: Store, scratch: Store, objectives: Objectives, *, backup: Backup | None = None
) -> DrillReport:
    """Rehearse a restore of ``backup`` (or of a backup taken now) into ``scratch``."""
    if backup is None:
        backup = await take_backup(source)
    started = time.monotonic()
    restore = await restore_backup(scratch, backup, actor=_PROBE.key_id)
    cp = ControlPlane(scratch, ControlPlaneSettings(db_url=str(scratch.engine.url)))
    probes: list[Probe] = []
    try:
        chain = await cp.audit.verify()
        await cp.register_runtime(_PROBE, runtime_id="rspp-drill-probe",
                                  endpoint="ws://drill.invalid/", capacity=1_000_000)
        async with scratch.engine.connect() as conn:
            targets = await _probe_targets(conn)
        for index, (name, tenant) in enumerate(targets):
            sid = f"drill_{backup.digest[:12]}_{index}"
            try:
                route = await cp.route_session(
                    _PROBE, tenant_id=tenant, pipeline_name=name, session_id=sid)
                probes.append(Probe(pipeline_name=name, tenant_id=tenant, session_id=sid,
                                    admitted=True, pipeline_version=route.pipeline_version,
                                    policy_version=route.policy_version))
            except CPError as exc:
                probes.append(Probe(pipeline_name=name, tenant_id=tenant, session_id=sid,
                                    admitted=False, error=f"{exc.code}: {exc.message}"))
        rto_s = time.monotonic() - started
    finally:
        await cp.audit.close()
    now = wall_ms()
    compared = []
    for probe in probes:
        version, policy = await _source_view(
            source, probe.pipeline_name, probe.tenant_id, probe.session_id, now)
        compared.append(msgspec.structs.replace(
            probe, source_pipeline_version=version, source_policy_version=policy))
    async with source.engine.connect() as conn:
        entries, newest = await _audit_tail(conn)
    lost = max(0, entries - backup.audit_entries)
    rpo_s = max(0, newest - backup.created_at_ms) / 1000 if lost else 0.0
    admitted = bool(compared) and all(p.admitted for p in compared)
    versions_match = all(p.matches_source for p in compared)
    rto_met, rpo_met = rto_s <= objectives.rto_s, rpo_s <= objectives.rpo_s
    return DrillReport(
        objectives=objectives,
        rto_s=round(rto_s, 3),
        rpo_s=round(rpo_s, 3),
        lost_changes=lost,
        backup_created_at_ms=backup.created_at_ms,
        backup_age_s=round((now - backup.created_at_ms) / 1000, 3),
        restored=restore.restored,
        audit_chain_ok=chain.ok,
        probes=compared,
        rto_met=rto_met,
        rpo_met=rpo_met,
        admission_resumed=admitted,
        versions_match_source=versions_match,
        # a version that differs from the source is lost data: the RPO says how much
        ok=chain.ok and admitted and rto_met and rpo_met and (versions_match or lost > 0),
    )
