"""What a region incident does to the sessions in flight there (F-112, F-113).

When an operator opens an incident in a region (``rspp cp region incident``), new
sessions go elsewhere (placement ranks the region last). Each live session on a runtime
of the region then follows its tenant's failover mode (``rspp cp placement set
--failover-mode``; unset: the deployment's ``rspp cp serve --failover-mode``):

- ``drain``: it stays where it is and finishes there (its runtime is alive);
- ``migrate``: it is handed off to a runtime in another region, chosen like a new
  placement (healthy, with room, outside any incident, inside the tenant's residency
  regions): the two-phase hand-off of ``rspp cp session migrate`` (the runtime fences its
  output, ends the running turn and releases the lease; the client reconnects to the new
  runtime with the same session id). A session with no such runtime (no room elsewhere,
  or its residency keeps it in the region) stays, and says so.

Every decision is audited ``region.failover`` (session, mode, outcome, target).
"""

from __future__ import annotations

from typing import Literal

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import Conflict, NoCapacity, NotFound
from rspp.controlplane._ops_handoffs import HandoffOps, HandoffWaiting
from rspp.controlplane._rbac import Principal
from rspp.controlplane._residency import placements_in
from rspp.controlplane._schema import runtimes, sessions
from rspp.controlplane._sessions import SessionStatus

__all__ = ["RegionFailover", "SessionFailover", "fail_region_over"]


class SessionFailover(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    tenant_id: str
    mode: Literal["migrate", "drain"]
    #: ``migrating`` (hand-off begun), ``draining`` (stays, finishes there) or ``staying``
    #: (migrate wanted, but no runtime outside the region may take it)
    outcome: Literal["migrating", "draining", "staying"]
    from_runtime: str
    to_runtime: str | None = None
    reason: str | None = None


class RegionFailover(msgspec.Struct, frozen=True, kw_only=True):
    region: str
    sessions: list[SessionFailover] = []


async def fail_region_over(ops: HandoffOps, principal: Principal, region: str) -> RegionFailover:
    """Apply each in-flight session's failover mode for an incident in ``region``."""

    async def decide(conn: AsyncConnection, now: int) -> list[SessionFailover]:
        policies = await placements_in(conn)
        rows = list(await conn.execute(
            select(sessions.c.session_id, sessions.c.tenant_id, sessions.c.runtime_id)
            .join(runtimes, runtimes.c.runtime_id == sessions.c.runtime_id)
            .where(runtimes.c.region == region,
                   sessions.c.status != SessionStatus.ENDED.value)
            .order_by(sessions.c.session_id)))
        out: list[SessionFailover] = []
        for row in rows:
            policy = policies.get(row.tenant_id)
            mode = (policy.failover_mode if policy is not None and policy.failover_mode
                    else ops.settings.failover_mode)
            common = {"session_id": row.session_id, "tenant_id": row.tenant_id,
                      "from_runtime": row.runtime_id}
            if mode != "migrate":
                out.append(SessionFailover(mode="drain", outcome="draining", **common))
                continue
            try:
                target = await ops.routing.place_in(conn, region=None, now_ms=now,
                                                    exclude=row.runtime_id, exact=False,
                                                    residency=policy)
            except NoCapacity as exc:
                out.append(SessionFailover(mode="migrate", outcome="staying",
                                           reason=exc.message, **common))
                continue
            if target.region == region:
                out.append(SessionFailover(
                    mode="migrate", outcome="staying", reason="no runtime with room outside "
                    f"{region} that the tenant's regions allow", **common))
                continue
            out.append(SessionFailover(mode="migrate", outcome="migrating",
                                       to_runtime=target.runtime_id, **common))
        for d in out:
            await ops.audit.append_in(
                conn, actor=principal.key_id, action="region.failover", subject=d.session_id,
                tenant_id=d.tenant_id, detail={"region": region, **msgspec.to_builtins(d)})
        return out

    decided: list[SessionFailover] = await ops._write(decide, "region failover")
    for d in decided:
        if d.outcome != "migrating":
            continue
        try:  # begun here; completes at the holder's release (or its lease's expiry)
            await ops.hand_off(principal, d.session_id, "migrate", target=d.to_runtime,
                               wait_ms=0)
        except HandoffWaiting:
            pass
        except (Conflict, NotFound):
            pass  # ended (or handed off by someone else) meanwhile
    return RegionFailover(region=region, sessions=decided)
