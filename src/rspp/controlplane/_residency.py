"""Tenant placement policy: data residency and failover mode (F-168, NF-034, F-113).

An admin sets, per tenant, the regions its sessions may be processed in and their
artifacts (timelines, recordings) stored in (``regions``, with a ``jurisdiction`` label
for the audit: ``EU``), and how the tenant's in-flight sessions fail over when their
region has an incident (``failover_mode``: ``migrate`` them to another region, or
``drain`` them where they are; unset: the deployment's ``--failover-mode``).

A tenant without ``regions`` is unconstrained. One with ``regions`` is placed, resumed
and migrated only on a runtime whose region is one of them and that stores artifacts in
one of them (or stores none): :func:`runtime_allowed`. When no such runtime is healthy
with room, the route is refused (:class:`ResidencyUnplaceable`) rather than placed
outside; an explicit move outside is refused (:class:`ResidencyViolation`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import ResidencyUnplaceable, ResidencyViolation
from rspp.controlplane._schema import tenant_placement

__all__ = [
    "FailoverMode",
    "ResidencyUnplaceable",
    "ResidencyViolation",
    "TenantPlacement",
    "clear_in",
    "placement_in",
    "placements_in",
    "residency_detail",
    "runtime_allowed",
    "set_in",
]

FailoverMode = Literal["migrate", "drain"]


class TenantPlacement(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's placement policy (module docstring); every field None: none set."""

    tenant_id: str
    #: regions the tenant's sessions and artifacts may use (None: anywhere)
    regions: list[str] | None = None
    #: the jurisdiction those regions stand for (recorded in audit entries)
    jurisdiction: str | None = None
    failover_mode: FailoverMode | None = None
    updated_by: str | None = None
    updated_at_ms: int | None = None


def runtime_allowed(policy: TenantPlacement | None, region: str,
                    artifact_regions: list[str] | None) -> bool:
    """May a session under ``policy`` run on a runtime in ``region`` that stores artifacts
    in ``artifact_regions`` (None or []: it stores none)?"""
    if policy is None or policy.regions is None:
        return True
    allowed = set(policy.regions)
    return region in allowed and (not artifact_regions or bool(allowed & set(artifact_regions)))


def residency_detail(policy: TenantPlacement, **extra: Any) -> dict[str, Any]:
    """The audit detail of a residency decision."""
    return {"regions": policy.regions, "jurisdiction": policy.jurisdiction, **extra}


def _policy(row: Any) -> TenantPlacement:
    return TenantPlacement(
        tenant_id=row.tenant_id,
        regions=None if row.regions_json is None else json.loads(row.regions_json),
        jurisdiction=row.jurisdiction,
        failover_mode=row.failover_mode,
        updated_by=row.updated_by,
        updated_at_ms=row.updated_at_ms,
    )


async def placement_in(conn: AsyncConnection, tenant_id: str) -> TenantPlacement | None:
    """The tenant's policy (None: none set)."""
    row = (await conn.execute(select(tenant_placement).where(
        tenant_placement.c.tenant_id == tenant_id))).first()
    return None if row is None else _policy(row)


async def placements_in(conn: AsyncConnection) -> dict[str, TenantPlacement]:
    """Every tenant's policy."""
    return {r.tenant_id: _policy(r) for r in await conn.execute(select(tenant_placement))}


async def set_in(conn: AsyncConnection, policy: TenantPlacement, *, actor: str,
                 now_ms: int) -> TenantPlacement:
    """Store (replace) ``policy``; the stored one."""
    values: dict[str, Any] = {
        "regions_json": None if policy.regions is None else json.dumps(sorted(policy.regions)),
        "jurisdiction": policy.jurisdiction,
        "failover_mode": policy.failover_mode,
        "updated_by": actor,
        "updated_at_ms": now_ms,
    }
    done = await conn.execute(update(tenant_placement).where(
        tenant_placement.c.tenant_id == policy.tenant_id).values(**values))
    if done.rowcount == 0:
        await conn.execute(insert(tenant_placement).values(tenant_id=policy.tenant_id, **values))
    stored = await placement_in(conn, policy.tenant_id)
    return stored if stored is not None else policy


async def clear_in(conn: AsyncConnection, tenant_id: str) -> bool:
    """Remove the tenant's policy; False when it had none."""
    done = await conn.execute(delete(tenant_placement).where(
        tenant_placement.c.tenant_id == tenant_id))
    return bool(done.rowcount)
