"""Routing view (CP-08) and provider health aggregation (CP-10).

Runtime instances register and heartbeat (health, capacity, load). A runtime
whose heartbeat is older than ``heartbeat_timeout_ms`` counts as unhealthy.
Placement picks a healthy instance with free capacity, preferring the
requested region, then the lowest load ratio (F-094).

A runtime's load for placement is the larger of what it reported in its last
heartbeat and what the control plane placed there itself: its sessions that have
not ended (a routed session whose client has not connected counts for
``placement_grace_ms`` after it was placed). A heartbeat only records the reported
figure, so sessions placed between two heartbeats are never forgotten by the next
one (they count until the runtime's own figure covers them), and placements need no
shared counter row (concurrent routes do not queue on the runtime's row). Every change to the
fleet bumps the ``routing`` counter, which is the version of routing snapshots;
snapshots expire after ``snapshot_ttl_ms`` (staleness bound, F-159).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from sqlalchemy import bindparam, delete, func, insert, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import (
    ProviderHealth,
    ProviderHealthEntry,
    ProviderStatus,
    RoutingView,
    RuntimeHealth,
    SnapshotMeta,
)
from rspp.controlplane._errors import (
    InvalidRequest,
    NoCapacity,
    NotFound,
    ResidencyUnplaceable,
)
from rspp.controlplane._residency import TenantPlacement, runtime_allowed
from rspp.controlplane._schema import (
    counters,
    provider_health,
    region_incidents,
    region_provider_health,
    runtimes,
    sessions,
)
from rspp.controlplane._store import Store

ROUTING_COUNTER = "routing"
PROVIDER_COUNTER = "provider_health"


def _counter(name: str) -> Any:
    return (select(counters.c.value).where(counters.c.name == name).scalar_subquery()
            .label("counter_value"))


#: a runtime's record with the routing version
_VIEW = select(runtimes, _counter(ROUTING_COUNTER)).where(
    runtimes.c.runtime_id == bindparam("rid"))
#: the provider-health version with every provider's row (none: one row of NULLs)
_HEALTH = (
    select(counters.c.value.label("counter_value"), provider_health)
    .select_from(counters.outerjoin(provider_health, true()))
    .where(counters.c.name == PROVIDER_COUNTER)
    .order_by(provider_health.c.provider_id)
)


class RuntimeInstance(msgspec.Struct, frozen=True, kw_only=True):
    runtime_id: str
    endpoint: str
    transport_kind: str
    region: str
    health: RuntimeHealth
    capacity: int
    #: sessions the runtime reported in its last heartbeat
    load: int
    last_heartbeat_ms: int
    #: sessions the control plane placed there that have not ended (see the module docstring)
    placed: int = 0
    #: regions where the runtime stores session artifacts (None: it declared none)
    artifact_regions: list[str] | None = None

    @property
    def placement_load(self) -> int:
        """What placement counts: the larger of the reported and the placed figure."""
        return max(self.load, self.placed)

    def effective_health(self, now_ms: int, timeout_ms: int) -> RuntimeHealth:
        if now_ms - self.last_heartbeat_ms > timeout_ms:
            return RuntimeHealth.UNHEALTHY
        return self.health


class RoutingTable:
    def __init__(self, store: Store, *, heartbeat_timeout_ms: int, snapshot_ttl_ms: int,
                 placement_grace_ms: int = 60_000) -> None:
        self._store = store
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.snapshot_ttl_ms = snapshot_ttl_ms
        self.placement_grace_ms = placement_grace_ms
        #: placements of this process's open transactions (by connection), until they end
        self._pending: dict[int, dict[str, int]] = {}
        store.on_finish.append(self._finished)

    async def register_in(
        self,
        conn: AsyncConnection,
        *,
        runtime_id: str,
        endpoint: str,
        transport_kind: str,
        region: str,
        capacity: int,
        now_ms: int,
        artifact_regions: list[str] | None = None,
    ) -> int:
        if capacity < 1:
            raise InvalidRequest(f"capacity must be >= 1, got {capacity}", field="capacity")
        values: dict[str, Any] = {
            "endpoint": endpoint,
            "transport_kind": transport_kind,
            "region": region,
            "health": RuntimeHealth.HEALTHY.value,
            "capacity": capacity,
            "last_heartbeat_ms": now_ms,
            "artifact_regions_json": (None if artifact_regions is None
                                      else json.dumps(sorted(set(artifact_regions)))),
        }
        result = await conn.execute(
            update(runtimes).where(runtimes.c.runtime_id == runtime_id).values(**values)
        )
        if result.rowcount == 0:
            await conn.execute(insert(runtimes).values(runtime_id=runtime_id, load=0, **values))
        return await self._store.next_counter(conn, ROUTING_COUNTER)

    async def heartbeat_in(
        self,
        conn: AsyncConnection,
        *,
        runtime_id: str,
        health: RuntimeHealth,
        load: int | None,
        now_ms: int,
    ) -> tuple[RuntimeInstance, bool]:
        """Record a heartbeat; returns the instance and whether its health changed."""
        before = await self.get_in(conn, runtime_id)
        values: dict[str, Any] = {"health": health.value, "last_heartbeat_ms": now_ms}
        if load is not None:
            values["load"] = max(0, load)
        await conn.execute(
            update(runtimes).where(runtimes.c.runtime_id == runtime_id).values(**values)
        )
        changed = before.effective_health(now_ms, self.heartbeat_timeout_ms) != health
        if changed:
            await self._store.next_counter(conn, ROUTING_COUNTER)
        return await self.get_in(conn, runtime_id), changed

    async def mark_silent_in(self, conn: AsyncConnection, *, now_ms: int) -> list[str]:
        """Store ``unhealthy`` for every runtime whose heartbeat is older than the timeout
        (and not yet marked); returns their ids. A later heartbeat heals the runtime."""
        silent = [
            r.runtime_id
            for r in await self.all_in(conn)
            if r.health != RuntimeHealth.UNHEALTHY
            and r.effective_health(now_ms, self.heartbeat_timeout_ms) == RuntimeHealth.UNHEALTHY
        ]
        for runtime_id in silent:
            await conn.execute(
                update(runtimes)
                .where(runtimes.c.runtime_id == runtime_id)
                .values(health=RuntimeHealth.UNHEALTHY.value)
            )
        if silent:
            await self._store.next_counter(conn, ROUTING_COUNTER)
        return silent

    async def get_in(self, conn: AsyncConnection, runtime_id: str) -> RuntimeInstance:
        row = (
            await conn.execute(select(runtimes).where(runtimes.c.runtime_id == runtime_id))
        ).first()
        if row is None:
            raise NotFound(f"runtime {runtime_id} is not registered", field="runtime_id")
        return _instance(row)

    async def remove_in(self, conn: AsyncConnection, runtime_id: str) -> bool:
        """Delete the instance; False when it was not registered."""
        result = await conn.execute(delete(runtimes).where(runtimes.c.runtime_id == runtime_id))
        if result.rowcount == 0:
            return False
        await self._store.next_counter(conn, ROUTING_COUNTER)
        return True

    async def all_in(self, conn: AsyncConnection) -> list[RuntimeInstance]:
        rows = (await conn.execute(select(runtimes).order_by(runtimes.c.runtime_id))).all()
        return [_instance(r) for r in rows]

    async def placed_in(
        self, conn: AsyncConnection, *, now_ms: int, runtime_id: str | None = None
    ) -> dict[str, int]:
        """Per runtime (or only ``runtime_id``): its sessions that have not ended (routed
        ones only within the placement grace: a client that never connected stops counting)."""
        which = (
            sessions.c.runtime_id.is_not(None)
            if runtime_id is None
            else sessions.c.runtime_id == runtime_id
        )
        rows = (
            await conn.execute(
                select(sessions.c.runtime_id, func.count())
                .where(
                    which,
                    sessions.c.status != "ended",
                    or_(
                        sessions.c.status != "routed",
                        sessions.c.updated_at_ms > now_ms - self.placement_grace_ms,
                    ),
                )
                .group_by(sessions.c.runtime_id)
            )
        ).all()
        return {str(r[0]): int(r[1]) for r in rows}

    async def all_placed_in(self, conn: AsyncConnection, *, now_ms: int) -> list[RuntimeInstance]:
        """Every runtime with its ``placed`` figure filled in."""
        placed = await self.placed_in(conn, now_ms=now_ms)
        return [
            msgspec.structs.replace(r, placed=placed.get(r.runtime_id, 0))
            for r in await self.all_in(conn)
        ]

    async def place_in(
        self,
        conn: AsyncConnection,
        *,
        region: str | None,
        now_ms: int,
        exclude: str | None = None,
        exact: bool = True,
        latency_ms: dict[str, int] | None = None,
        residency: TenantPlacement | None = None,
    ) -> RuntimeInstance:
        """A healthy runtime with room: the requested region first, then the lowest load.

        ``exact`` (new sessions): the chosen runtime is locked until the transaction ends
        and its room counted again under the lock, so concurrent routes never fill it past
        its capacity. Moves of live sessions (failover, drain) are not held up by that lock:
        many may land at once, and a session moved is better than one dropped. While
        choosing, placements that other open transactions of this process made count too,
        so a burst spreads evenly.

        Regions (F-110, F-112): a region an operator declared in an incident, or where a
        provider is reported unhealthy, is used only when no other region has a healthy
        runtime with room; with ``latency_ms`` (the
        client's measured latency per region) the lowest-latency region with room comes
        first (a region without a figure after every one with), else the requested region.

        ``residency`` (F-168): only runtimes inside the tenant's regions (processing and
        artifact storage) are candidates; none with room: :class:`ResidencyUnplaceable`."""
        fleet = [r for r in await self.all_placed_in(conn, now_ms=now_ms)
                 if runtime_allowed(residency, r.region, r.artifact_regions)]
        # a region in an incident, or where a provider is reported unhealthy (F-112)
        incidents = set(await self.incidents_in(conn)) | set(await self.impaired_in(conn))
        others: dict[str, int] = {}
        for cid, counts in self._pending.items():
            if cid != id(conn):
                for rid, n in counts.items():
                    others[rid] = others.get(rid, 0) + n

        def load(r: RuntimeInstance) -> int:
            return max(r.load, r.placed + others.get(r.runtime_id, 0))

        tried: set[str] = set()
        while True:
            candidates = [
                r
                for r in fleet
                if r.runtime_id != exclude
                and r.runtime_id not in tried
                and r.effective_health(now_ms, self.heartbeat_timeout_ms) == RuntimeHealth.HEALTHY
                and r.placement_load < r.capacity  # room: what is committed (others' open
                # placements only rank: they may still be refused by admission)
            ]
            if not candidates and residency is not None and residency.regions is not None:
                raise ResidencyUnplaceable(
                    f"no healthy runtime with free capacity in the regions tenant "
                    f"{residency.tenant_id} is restricted to ({', '.join(residency.regions)}); "
                    "nothing is placed outside them", field="tenant_id")
            if not candidates:
                raise NoCapacity(
                    "no healthy runtime instance with free capacity; register or heal a runtime",
                    field="runtime_id",
                )
            candidates.sort(
                key=lambda r: (
                    r.region in incidents,
                    (latency_ms.get(r.region, 1 << 30) if latency_ms else 0),
                    region is not None and r.region != region,
                    load(r) / r.capacity,
                    r.runtime_id,
                )
            )
            best = candidates[0]
            # counted for the others from the moment it is chosen (a burst spreads out
            # instead of queueing on one runtime's lock)
            counts = self._pending.setdefault(id(conn), {})
            counts[best.runtime_id] = counts.get(best.runtime_id, 0) + 1
            if not exact:
                return best
            await self._store.lock(conn, f"placement:{best.runtime_id}")
            placed = (await self.placed_in(conn, now_ms=now_ms, runtime_id=best.runtime_id)).get(
                best.runtime_id, 0
            )
            if max(best.load, placed) < best.capacity:
                return msgspec.structs.replace(best, placed=placed)
            counts[best.runtime_id] -= 1
            tried.add(best.runtime_id)  # filled meanwhile: the next best

    async def incidents_in(self, conn: AsyncConnection) -> dict[str, dict[str, Any]]:
        """Regions in an incident: region -> reason, who opened it, when."""
        rows = (await conn.execute(select(region_incidents))).all()
        return {r.region: {"reason": r.reason, "opened_by": r.opened_by,
                           "opened_at_ms": r.opened_at_ms} for r in rows}

    async def impaired_in(self, conn: AsyncConnection) -> dict[str, list[str]]:
        """Regions where a provider is reported unhealthy: region -> those providers."""
        rows = (await conn.execute(
            select(region_provider_health.c.region, region_provider_health.c.provider_id)
            .where(region_provider_health.c.status == ProviderStatus.UNHEALTHY.value)
            .order_by(region_provider_health.c.region, region_provider_health.c.provider_id)
        )).all()
        out: dict[str, list[str]] = {}
        for region, provider_id in rows:
            out.setdefault(str(region), []).append(str(provider_id))
        return out

    async def report_region_provider_in(
        self, conn: AsyncConnection, *, region: str, provider_id: str, status: ProviderStatus,
        actor: str, now_ms: int,
    ) -> str | None:
        """Record ``provider_id``'s health in ``region``; the status it had (None: none)."""
        where = ((region_provider_health.c.region == region)
                 & (region_provider_health.c.provider_id == provider_id))
        before = (await conn.execute(
            select(region_provider_health.c.status).where(where))).scalar()
        values = {"status": status.value, "reported_by": actor, "updated_at_ms": now_ms}
        if before is None:
            await conn.execute(insert(region_provider_health).values(
                region=region, provider_id=provider_id, **values))
        else:
            await conn.execute(update(region_provider_health).where(where).values(**values))
        if before != status.value:
            await self._store.next_counter(conn, ROUTING_COUNTER)
        return None if before is None else str(before)

    async def set_incident_in(self, conn: AsyncConnection, region: str, *, reason: str | None,
                              actor: str, now_ms: int) -> bool:
        """Open (``reason``) or close (None) a region's incident; True when it changed."""
        current = (await self.incidents_in(conn)).get(region)
        if reason is None:
            if current is None:
                return False
            await conn.execute(delete(region_incidents)
                               .where(region_incidents.c.region == region))
        elif current is not None:
            await conn.execute(update(region_incidents)
                               .where(region_incidents.c.region == region)
                               .values(reason=reason))
        else:
            await conn.execute(insert(region_incidents).values(
                region=region, reason=reason, opened_by=actor, opened_at_ms=now_ms))
        await self._store.next_counter(conn, ROUTING_COUNTER)
        return True

    def _finished(self, conn: AsyncConnection, committed: bool) -> None:
        self._pending.pop(id(conn), None)

    async def view_in(self, conn: AsyncConnection, runtime_id: str, *, now_ms: int) -> RoutingView:
        """The runtime's routing view (its record and the routing version: one statement)."""
        row = (await conn.execute(_VIEW, {"rid": runtime_id})).first()
        if row is None:
            raise NotFound(f"runtime {runtime_id} is not registered", field="runtime_id")
        instance, version = _instance(row), int(row.counter_value or 0)
        meta = SnapshotMeta(
            snapshot_id=f"rv:{runtime_id}:v{version}",
            version=version,
            issued_at_ms=now_ms,
            expires_at_ms=now_ms + self.snapshot_ttl_ms,
        )
        return RoutingView(
            meta=meta,
            runtime_id=runtime_id,
            health=instance.effective_health(now_ms, self.heartbeat_timeout_ms),
            endpoint=instance.endpoint,
        )

    async def report_provider_in(
        self,
        conn: AsyncConnection,
        *,
        provider_id: str,
        status: ProviderStatus,
        error_rate: float,
        latency_p95_ms: int | None,
        now_ms: int,
        price_usd: float | None = None,
    ) -> int:
        values: dict[str, Any] = {
            "status": status.value,
            "error_rate": error_rate,
            "latency_p95_ms": latency_p95_ms,
            "updated_at_ms": now_ms,
        }
        if price_usd is not None:  # a price signal (F-066); else the last one stands
            values.update(price_usd=price_usd, price_at_ms=now_ms)
        result = await conn.execute(
            update(provider_health)
            .where(provider_health.c.provider_id == provider_id)
            .values(**values)
        )
        if result.rowcount == 0:
            await conn.execute(insert(provider_health).values(provider_id=provider_id, **values))
        return await self._store.next_counter(conn, PROVIDER_COUNTER)

    async def provider_health_in(self, conn: AsyncConnection, *, now_ms: int) -> ProviderHealth:
        """Every provider's health and the health version (one statement)."""
        found = (await conn.execute(_HEALTH)).all()
        version = int(found[0].counter_value or 0) if found else 0
        rows = [r for r in found if r.provider_id is not None]
        meta = SnapshotMeta(
            snapshot_id=f"ph:v{version}",
            version=version,
            issued_at_ms=now_ms,
            expires_at_ms=now_ms + self.snapshot_ttl_ms,
        )
        return ProviderHealth(
            meta=meta,
            providers={
                r.provider_id: ProviderHealthEntry(
                    status=ProviderStatus(r.status),
                    error_rate=r.error_rate,
                    latency_p95_ms=r.latency_p95_ms,
                    price_usd=r.price_usd,
                    price_at_ms=r.price_at_ms,
                )
                for r in rows
            },
        )


def _instance(row: Any) -> RuntimeInstance:
    return RuntimeInstance(
        runtime_id=row.runtime_id,
        endpoint=row.endpoint,
        transport_kind=row.transport_kind,
        region=row.region,
        health=RuntimeHealth(row.health),
        capacity=row.capacity,
        load=row.load,
        last_heartbeat_ms=row.last_heartbeat_ms,
        artifact_regions=(None if row.artifact_regions_json is None
                          else json.loads(row.artifact_regions_json)),
    )
