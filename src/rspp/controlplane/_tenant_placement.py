"""Setting a tenant's placement policy over HTTP (F-168, NF-034, F-113).

``PUT /v1/tenants/{tenant_id}/placement`` (admin, fleet key) replaces the tenant's policy
(:mod:`rspp.controlplane._residency`: regions, jurisdiction, failover mode),
``DELETE`` removes it (admin, fleet key), ``GET`` reads it (viewer; a tenant key reads its
own). Changes are audited ``tenant.placement_set`` / ``tenant.placement_cleared`` with the
policy before and after. The policy applies from the next placement decision on: new
routes, failover moves, migrations and session starts; sessions already placed outside
new regions are not moved by the change (``rspp cp session migrate`` moves them).
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import InvalidRequest
from rspp.controlplane._handlers import Call
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._requests import PlacementRequest
from rspp.controlplane._residency import (
    TenantPlacement,
    clear_in,
    placement_in,
    set_in,
)
from rspp.controlplane._service import ControlPlane

__all__ = ["PlacementCleared", "clear_placement", "get_placement", "put_placement"]


class PlacementCleared(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    #: False when the tenant had no policy
    cleared: bool


def _plain(policy: TenantPlacement | None) -> dict[str, Any] | None:
    return None if policy is None else {
        "regions": policy.regions, "jurisdiction": policy.jurisdiction,
        "failover_mode": policy.failover_mode}


async def set_placement(cp: ControlPlane, principal: Principal, tenant_id: str,
                        body: PlacementRequest) -> TenantPlacement:
    """Replace ``tenant_id``'s placement policy (admin; audited)."""
    await cp.authorize(principal, Role.ADMIN, "set a tenant placement policy")
    if body.regions is None and body.jurisdiction is not None:
        raise InvalidRequest("jurisdiction names the regions it stands for: give regions too",
                             field="regions")
    if body.regions is None and body.failover_mode is None:
        raise InvalidRequest("set regions (data residency) and/or failover_mode; remove a "
                             "policy with DELETE", field="regions")
    policy = TenantPlacement(tenant_id=tenant_id, regions=body.regions,
                             jurisdiction=body.jurisdiction, failover_mode=body.failover_mode)

    async def work(conn: AsyncConnection, now: int) -> TenantPlacement:
        before = await placement_in(conn, tenant_id)
        stored = await set_in(conn, policy, actor=principal.key_id, now_ms=now)
        await cp.audit.append_in(conn, actor=principal.key_id, action="tenant.placement_set",
                                 subject=tenant_id, tenant_id=tenant_id,
                                 detail={"before": _plain(before), "after": _plain(stored)})
        return stored

    stored: TenantPlacement = await cp._write(work, "set tenant placement")
    return stored


async def read_placement(cp: ControlPlane, principal: Principal,
                         tenant_id: str) -> TenantPlacement:
    """The tenant's policy (every field None: none set)."""
    await cp.authorize(principal, Role.VIEWER, "read a tenant placement policy")
    principal.require_tenant(tenant_id)
    async with cp.store.engine.connect() as conn:
        found = await placement_in(conn, tenant_id)
    return found if found is not None else TenantPlacement(tenant_id=tenant_id)


async def remove_placement(cp: ControlPlane, principal: Principal,
                           tenant_id: str) -> PlacementCleared:
    """Remove the tenant's policy (admin; audited when there was one)."""
    await cp.authorize(principal, Role.ADMIN, "clear a tenant placement policy")

    async def work(conn: AsyncConnection, now: int) -> PlacementCleared:
        before = await placement_in(conn, tenant_id)
        cleared = await clear_in(conn, tenant_id)
        if cleared:
            await cp.audit.append_in(conn, actor=principal.key_id,
                                     action="tenant.placement_cleared", subject=tenant_id,
                                     tenant_id=tenant_id, detail={"before": _plain(before)})
        return PlacementCleared(tenant_id=tenant_id, cleared=cleared)

    done: PlacementCleared = await cp._write(work, "clear tenant placement")
    return done


# ---- HTTP handlers (route table: /v1/tenants/{tenant_id}/placement) ------------------------
async def put_placement(c: Call) -> TenantPlacement:
    return await set_placement(c.cp, c.principal, c.path["tenant_id"], c.body)


async def get_placement(c: Call) -> TenantPlacement:
    return await read_placement(c.cp, c.principal, c.path["tenant_id"])


async def clear_placement(c: Call) -> PlacementCleared:
    return await remove_placement(c.cp, c.principal, c.path["tenant_id"])
