"""Session lifecycle on the control plane: route, status, migration and failover.

Route (F-099): admission (CP-05) -> version resolution (CP-09) -> placement
(CP-08) -> lease epoch 1 for the runtime (CP-07) -> signed token. Migration
(F-157, F-096) keeps the session id and moves authority with a new epoch,
emitting ``migration_start``, ``lease_rotated``, ``session_handoff`` and
``migration_finish``. Status (F-101) is reported by runtimes and read by
operators, scoped to the caller's tenant.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Literal

import msgspec
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import ControlSignal, Emitter, SignalName
from rspp.controlplane._audit import AuditLog
from rspp.controlplane._errors import Conflict, InvalidRequest, NotFound, ResidencyViolation
from rspp.controlplane._leases import LeaseManager
from rspp.controlplane._residency import placement_in, residency_detail, runtime_allowed
from rspp.controlplane._routing import RoutingTable
from rspp.controlplane._schema import leases, sessions
from rspp.controlplane._signals import emit_signal


class SessionStatus(StrEnum):
    ROUTED = "routed"
    CONNECTED = "connected"
    RUNNING = "running"
    DEGRADED = "degraded"
    ENDED = "ended"


MigrationMode = Literal["migrate", "drain"]


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    tenant_id: str
    pipeline_name: str
    pipeline_version: str
    runtime_id: str | None
    status: SessionStatus
    policy_version: int | None
    attributes: dict[str, str]
    lease_epoch: int | None
    created_at_ms: int
    updated_at_ms: int


class MigrationResult(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    from_runtime: str | None
    to_runtime: str
    epoch: int
    signals: tuple[ControlSignal, ...]


class SessionBook:
    def __init__(self, routing: RoutingTable, leases: LeaseManager, audit: AuditLog) -> None:
        self._routing = routing
        self._leases = leases
        self._audit = audit

    async def create_in(
        self,
        conn: AsyncConnection,
        *,
        session_id: str,
        tenant_id: str,
        pipeline_name: str,
        pipeline_version: str,
        runtime_id: str,
        policy_version: int | None,
        attributes: dict[str, str],
        now_ms: int,
    ) -> None:
        existing = (
            await conn.execute(
                select(sessions.c.session_id).where(sessions.c.session_id == session_id)
            )
        ).first()
        if existing is not None:
            raise Conflict(
                f"session {session_id} already exists; use a new session id", field="session_id"
            )
        await conn.execute(
            insert(sessions).values(
                session_id=session_id,
                tenant_id=tenant_id,
                pipeline_name=pipeline_name,
                pipeline_version=pipeline_version,
                runtime_id=runtime_id,
                status=SessionStatus.ROUTED.value,
                policy_version=policy_version,
                attributes_json=json.dumps(attributes, sort_keys=True),
                created_at_ms=now_ms,
                updated_at_ms=now_ms,
            )
        )

    async def get_in(self, conn: AsyncConnection, session_id: str) -> SessionInfo:
        """The session's record with its current lease epoch, in one statement."""
        row = (await conn.execute(_GET_SESSION, {"sid": session_id})).first()
        if row is None:
            raise NotFound(
                f"session {session_id} is unknown to the control plane", field="session_id"
            )
        return _info(row, row.current_epoch)

    async def set_status_in(
        self, conn: AsyncConnection, session_id: str, status: SessionStatus, *, now_ms: int
    ) -> SessionInfo:
        info = await self.get_in(conn, session_id)
        if info.status == SessionStatus.ENDED and status != SessionStatus.ENDED:
            raise Conflict(
                f"session {session_id} has ended; it cannot become {status.value}", field="status"
            )
        if status == SessionStatus.ROUTED:
            raise InvalidRequest("status routed is set by the control plane only", field="status")
        await conn.execute(
            update(sessions)
            .where(sessions.c.session_id == session_id)
            .values(status=status.value, updated_at_ms=now_ms)
        )
        return await self.get_in(conn, session_id)

    async def set_policy_version_in(
        self, conn: AsyncConnection, session_id: str, version: int | None
    ) -> None:
        await conn.execute(
            update(sessions)
            .where(sessions.c.session_id == session_id)
            .values(policy_version=version)
        )

    async def active_on_in(self, conn: AsyncConnection, runtime_id: str) -> list[str]:
        rows = (
            await conn.execute(
                select(sessions.c.session_id)
                .where(
                    sessions.c.runtime_id == runtime_id,
                    sessions.c.status != SessionStatus.ENDED.value,
                )
                .order_by(sessions.c.session_id)
            )
        ).all()
        return [str(r[0]) for r in rows]

    async def migrate_in(
        self,
        conn: AsyncConnection,
        session_id: str,
        *,
        target: str | None,
        ttl_ms: int,
        actor: str,
        now_ms: int,
        expired_from: str | None = None,
    ) -> MigrationResult | None:
        """Move the session to ``target`` (or the best other runtime). ``None``: CAS lost, retry.

        ``expired_from``: only while that runtime's lease of the session is still expired
        (the failover monitor; see :meth:`LeaseManager.rotate_in`).

        The tenant's residency (F-168): the move stays inside its regions; a ``target``
        outside them is refused (:class:`ResidencyViolation`), and with no room inside
        them nothing moves (:class:`ResidencyUnplaceable`)."""
        info = await self.get_in(conn, session_id)
        if info.status == SessionStatus.ENDED:
            raise Conflict(
                f"session {session_id} has ended; nothing to migrate", field="session_id"
            )
        residency = await placement_in(conn, info.tenant_id)
        if target is None:
            chosen = await self._routing.place_in(
                conn, region=None, now_ms=now_ms, exclude=info.runtime_id, exact=False,
                residency=residency)
        else:
            chosen = await self._routing.get_in(conn, target)
            if not runtime_allowed(residency, chosen.region, chosen.artifact_regions):
                raise ResidencyViolation(
                    f"runtime {target} (region {chosen.region}, artifacts in "
                    f"{chosen.artifact_regions or 'none'}) is outside the regions tenant "
                    f"{info.tenant_id} is restricted to "
                    f"({', '.join(residency.regions or ()) if residency else ''})",
                    field="target")
        target = chosen.runtime_id
        if target == info.runtime_id:
            raise Conflict(f"session {session_id} already runs on {target}", field="target")
        old_epoch = info.lease_epoch or 0
        common: dict[str, Any] = {
            "session_id": session_id,
            "pipeline_version": info.pipeline_version,
            "now_ms": now_ms,
        }
        start = await emit_signal(
            conn,
            signal=SignalName.MIGRATION_START,
            emitted_by=Emitter.CP_08,
            epoch=old_epoch,
            reason=f"migrating from {info.runtime_id} to {target}",
            **common,
        )
        change = await self._leases.rotate_in(conn, session_id, target, ttl_ms=ttl_ms, actor=actor,
                                              expired_from=expired_from)
        if change is None:
            return None
        new_epoch = change.lease.epoch
        handoff = await emit_signal(
            conn,
            signal=SignalName.SESSION_HANDOFF,
            emitted_by=Emitter.CP_08,
            epoch=new_epoch,
            reason=f"session {session_id} handed to {target} at epoch {new_epoch}",
            **common,
        )
        await conn.execute(
            update(sessions)
            .where(sessions.c.session_id == session_id)
            .values(runtime_id=target, updated_at_ms=now_ms)
        )
        finish = await emit_signal(
            conn,
            signal=SignalName.MIGRATION_FINISH,
            emitted_by=Emitter.CP_08,
            epoch=new_epoch,
            reason=f"migration to {target} complete",
            **common,
        )
        if residency is not None and residency.regions is not None:
            await self._audit.append_in(
                conn, actor=actor, action="residency.placed", subject=session_id,
                tenant_id=info.tenant_id, detail=residency_detail(
                    residency, runtime_id=target, region=chosen.region,
                    artifact_regions=chosen.artifact_regions, moved_from=info.runtime_id))
        signals = tuple(s for s in (start, change.signal, handoff, finish) if s is not None)
        return MigrationResult(
            session_id=session_id,
            from_runtime=info.runtime_id,
            to_runtime=target,
            epoch=new_epoch,
            signals=signals,
        )


#: a session's record and its lease's epoch (built once: a start reads it on every resume)
_GET_SESSION = (
    select(sessions, leases.c.epoch.label("current_epoch"))
    .select_from(sessions.outerjoin(leases, leases.c.session_id == sessions.c.session_id))
    .where(sessions.c.session_id == bindparam("sid"))
)


def _info(row: Any, epoch: int | None) -> SessionInfo:
    return SessionInfo(
        session_id=row.session_id,
        tenant_id=row.tenant_id,
        pipeline_name=row.pipeline_name,
        pipeline_version=row.pipeline_version,
        runtime_id=row.runtime_id,
        status=SessionStatus(row.status),
        policy_version=row.policy_version,
        attributes=json.loads(row.attributes_json),
        lease_epoch=epoch,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
    )
