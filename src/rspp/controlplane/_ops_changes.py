"""Change review operations (F-165): submit, approve or reject, apply, read.

Applying runs the change's request through the mutation's own operation (the same
checks, locks and audit entry as the direct route), with the change marked applied in
that transaction; with ``require_approval`` set, that is the only way the mutation runs.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._changes import (
    ChangeRecord,
    get_in,
    list_in,
    review_in,
    submit_in,
)
from rspp.controlplane._configs import ConfigKind, scope_tenant
from rspp.controlplane._errors import Conflict
from rspp.controlplane._ops_gates import GateOps
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._requests import ChangeSubmitRequest


class ChangeOps(GateOps):
    async def submit_change(
        self, principal: Principal, request: ChangeSubmitRequest
    ) -> ChangeRecord:
        await self.authorize(principal, Role.OPERATOR, "submit change")

        async def work(conn: AsyncConnection, now: int) -> ChangeRecord:
            record = await submit_in(conn, request, actor=principal.key_id, now_ms=now)
            await self.audit.append_in(
                conn, actor=principal.key_id, action="change.submitted", subject=record.target,
                detail=record.decision(), tenant_id=_tenant(record))
            return record

        return await self._write(work, "submit change")

    async def review_change(
        self, principal: Principal, change_id: str, *, approve: bool, note: str
    ) -> ChangeRecord:
        await self.authorize(principal, Role.OPERATOR, "review change")

        async def work(conn: AsyncConnection, now: int) -> ChangeRecord:
            record = await review_in(conn, change_id, approve=approve,
                                     reviewer=principal.key_id, note=note, now_ms=now)
            await self.audit.append_in(
                conn, actor=principal.key_id,
                action="change.approved" if approve else "change.rejected",
                subject=record.target, detail=record.decision(), tenant_id=_tenant(record))
            return record

        return await self._write(work, "review change")

    async def apply_change(self, principal: Principal, change_id: str) -> ChangeRecord:
        """Run an approved change's mutation; the change is applied with it, once."""
        await self.authorize(principal, Role.OPERATOR, "apply change")
        record = await self.get_change(principal, change_id)
        if record.status != "approved":
            raise Conflict(f"change {change_id} is {record.status}; only an approved change "
                           "applies, and only once", field="change_id")
        req = record.request
        if req.action == "config.activate":
            if req.config_kind is None or req.config_scope is None or req.config_version is None:
                raise Conflict(f"change {change_id} names no config", field="change_id")
            await self.activate_config(principal, ConfigKind(req.config_kind), req.config_scope,
                                       req.config_version, change=record)
        elif req.pipeline_name is None:
            raise Conflict(f"change {change_id} names no pipeline", field="change_id")
        elif req.action == "rollback" and req.rollback_to is not None:
            await self.rollback(principal, req.pipeline_name, to=req.rollback_to, change=record)
        elif req.rollout is not None and req.rollout.gated:
            r = req.rollout
            await self.gated_rollout(
                principal, req.pipeline_name, canary=r.canary, percent=r.percent,
                tenants=r.tenants, promote_after=r.promote_after,
                rollback_on_gates=r.rollback_on_gates, steps=r.steps, window_size=r.window,
                min_samples=r.min_samples, change=record)
        elif req.rollout is not None:
            r = req.rollout
            await self.rollout(principal, req.pipeline_name, canary=r.canary, percent=r.percent,
                               tenants=r.tenants, change=record)
        else:
            raise Conflict(f"change {change_id} has no request to apply", field="change_id")
        return await self.get_change(principal, change_id)

    async def get_change(self, principal: Principal, change_id: str) -> ChangeRecord:
        await self.authorize(principal, Role.VIEWER, "read change")
        async with self.store.engine.connect() as conn:
            return await get_in(conn, change_id)

    async def list_changes(self, principal: Principal, status: str | None) -> list[ChangeRecord]:
        await self.authorize(principal, Role.VIEWER, "list changes")
        async with self.store.engine.connect() as conn:
            return await list_in(conn, status)


def _tenant(record: ChangeRecord) -> str | None:
    """A config change of one tenant's scope concerns that tenant (its audit view)."""
    scope = record.request.config_scope
    return scope_tenant(scope) if record.action == "config.activate" and scope else None
