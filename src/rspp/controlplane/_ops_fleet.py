"""Runtime fleet and provider-health operations (CP-08, CP-10)."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import (
    ProviderHealth,
    ProviderStatus,
    RuntimeHealth,
)
from rspp.controlplane._errors import Conflict, CPError, NoCapacity, NotFound
from rspp.controlplane._ops_handoffs import HandoffOps
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._region_failover import fail_region_over
from rspp.controlplane._residency import placements_in
from rspp.controlplane._routing import ROUTING_COUNTER, RuntimeInstance
from rspp.controlplane._schema import sessions
from rspp.controlplane._sessions import (
    MigrationMode,
    MigrationResult,
    SessionStatus,
)
from rspp.controlplane._signing_keys import KeyStatus
from rspp.controlplane._skew import check_skew


class Deregistered(msgspec.Struct, frozen=True, kw_only=True):
    runtime_id: str
    #: False when the runtime was not registered (deregistering is idempotent)
    removed: bool


#: sessions the failover monitor moves in one transaction
_SWEEP_BATCH = 50

#: how often the failover monitor looks for hand-offs past their deadline
_HANDOFF_SWEEP_MS = 1_000

#: the failover monitor acts as this principal (its audit entries name it)
FAILOVER_ACTOR = Principal(key_id="cp:failover-monitor", role=Role.OPERATOR)


class FailoverSweep(msgspec.Struct, frozen=True, kw_only=True):
    """One pass of the failover monitor."""

    #: runtimes whose heartbeats stopped, marked unhealthy by this pass
    marked: tuple[str, ...] = ()
    migrated: tuple[MigrationResult, ...] = ()
    #: sessions left where they are this pass (lease not yet expired, or no capacity)
    waiting: int = 0


class FleetOps(HandoffOps):
    # -- failover monitor (F-095, F-096, F-113) --------------------------------------------
    async def sweep_failover(self) -> FailoverSweep:
        """Mark silent runtimes unhealthy; in ``migrate`` mode move each session of an
        unhealthy runtime whose lease has expired to a healthy runtime (epoch + 1).

        A session is moved only after its holder's lease expired: the holder stops its own
        output when its lease lapses (it cannot renew), so the old and the new epoch never
        produce at once, even when the silent runtime was only paused.
        """

        async def mark(conn: AsyncConnection, now: int) -> list[str]:
            silent = await self.routing.mark_silent_in(conn, now_ms=now)
            for runtime_id in silent:
                await self.audit.append_in(
                    conn, actor=FAILOVER_ACTOR.key_id, action="runtime.unhealthy",
                    subject=runtime_id,
                    detail={"reason": "heartbeat_timeout",
                            "timeout_ms": self.settings.heartbeat_timeout_ms},
                )
            return silent

        marked = await self._write(mark, "mark silent runtimes")
        async with self.store.engine.connect() as conn:
            modes = {t: p.failover_mode for t, p in (await placements_in(conn)).items()
                     if p.failover_mode is not None}
        # operator hand-offs whose holder never released (and whose request is gone): at
        # most once a second (the sweep runs every 100 ms in a busy fleet)
        now = self.clock()
        if now - getattr(self, "_handoffs_swept_ms", 0) >= _HANDOFF_SWEEP_MS:
            self._handoffs_swept_ms = now
            await self.finish_expired_handoffs()
        default = self.settings.failover_mode
        if default != "migrate" and "migrate" not in modes.values():
            return FailoverSweep(marked=tuple(marked))
        now = self.clock()
        async with self.store.engine.connect() as conn:
            down = [r.runtime_id for r in await self.routing.all_in(conn)
                    if r.effective_health(now, self.routing.heartbeat_timeout_ms)
                    == RuntimeHealth.UNHEALTHY]
            todo = [(str(row.runtime_id), str(row.session_id))
                    for row in await self._live_on(conn, down)
                    if modes.get(row.tenant_id, default) == "migrate"]
        moved: list[MigrationResult] = []
        waiting = 0
        for start in range(0, len(todo), _SWEEP_BATCH):
            batch = todo[start:start + _SWEEP_BATCH]

            async def move(conn: AsyncConnection, now: int,
                           b: list[tuple[str, str]] = batch) -> tuple[list[MigrationResult], int]:
                return await self._move_expired(conn, b, now)

            done, left = await self._write(move, "fail sessions over")
            self.placements.changed(m.session_id for m in done)
            moved += done
            waiting += left
        return FailoverSweep(marked=tuple(marked), migrated=tuple(moved), waiting=waiting)

    async def _live_on(self, conn: AsyncConnection, runtime_ids: list[str]) -> list[Any]:
        """The live sessions (id, tenant, runtime) on ``runtime_ids``."""
        if not runtime_ids:
            return []
        return list(await conn.execute(
            select(sessions.c.session_id, sessions.c.tenant_id, sessions.c.runtime_id)
            .where(sessions.c.runtime_id.in_(runtime_ids),
                   sessions.c.status != SessionStatus.ENDED.value)
            .order_by(sessions.c.runtime_id, sessions.c.session_id)))

    async def _move_expired(
        self, conn: AsyncConnection, batch: list[tuple[str, str]], now: int
    ) -> tuple[list[MigrationResult], int]:
        """One transaction: move each session of ``batch`` (``(runtime, session)``) that is
        still placed on that silent runtime and whose lease nobody holds live any more;
        returns the moves and how many stay.

        The lease rows are locked first (PostgreSQL), so a renewal racing with the take-over
        either lands before it (the session stays) or finds the new epoch (refused); each
        placement sees the sessions this transaction already moved. A live lease is never
        rotated here, whoever holds it: its holder believes it may send until its own bound
        on the lease lapses (the batch was read before this transaction; the session may
        have moved since, and its new holder is live)."""
        ids = [sid for _, sid in batch]
        held = {lease.session_id: lease for lease in await self.leases.lock_in(conn, ids)}
        placed = {str(r.session_id): r.runtime_id for r in await conn.execute(
            select(sessions.c.session_id, sessions.c.runtime_id).where(
                sessions.c.session_id.in_(ids),
                sessions.c.status != SessionStatus.ENDED.value))}
        moved: list[MigrationResult] = []
        waiting = 0
        for index, (runtime_id, sid) in enumerate(batch):
            if placed.get(sid) != runtime_id:
                continue  # moved (or ended) since the batch was read: not this pass's
            lease = held.get(sid)
            if lease is not None and lease.expires_at_ms > now:
                waiting += 1  # its holder may only be slow: it stops itself at expiry
                continue
            try:
                result = await self.sessions.migrate_in(
                    conn, sid, target=None, ttl_ms=self.settings.lease_ttl_ms,
                    actor=FAILOVER_ACTOR.key_id, now_ms=now,
                    expired_from=lease.holder if lease is not None else None)
            except NoCapacity:
                waiting += len(batch) - index  # no healthy runtime has room: next pass
                break
            except (Conflict, NotFound):
                continue  # ended meanwhile
            if result is None:
                raise Conflict(f"lease of {sid} changed under the failover", field="session_id")
            moved.append(result)
        return moved, waiting


    # -- runtimes and provider health (CP-08, CP-10) ----------------------------------------
    async def register_runtime(
        self,
        principal: Principal,
        *,
        runtime_id: str,
        endpoint: str,
        transport_kind: str = "websocket",
        region: str = "default",
        capacity: int = 100,
        runtime_version: str | None = None,
        artifact_regions: list[str] | None = None,
        schema_version: str | None = None,
    ) -> RuntimeInstance:
        await self.authorize(principal, Role.OPERATOR, "register runtime")
        check_skew(runtime_version, schema_version)

        async def work(conn: AsyncConnection, now: int) -> RuntimeInstance:
            await self.routing.register_in(
                conn,
                runtime_id=runtime_id,
                endpoint=endpoint,
                transport_kind=transport_kind,
                region=region,
                capacity=capacity,
                now_ms=now,
                artifact_regions=artifact_regions,
            )
            return await self.routing.get_in(conn, runtime_id)

        return await self._write(work, "register runtime")

    async def heartbeat(
        self,
        principal: Principal,
        runtime_id: str,
        *,
        health: RuntimeHealth,
        load: int | None = None,
        mode: MigrationMode = "migrate",
    ) -> tuple[RuntimeInstance, list[MigrationResult]]:
        """Record health; an instance turning unhealthy has its sessions reassigned (F-096)."""
        await self.authorize(principal, Role.OPERATOR, "runtime heartbeat")

        async def work(conn: AsyncConnection, now: int) -> tuple[RuntimeInstance, bool]:
            return await self.routing.heartbeat_in(
                conn, runtime_id=runtime_id, health=health, load=load, now_ms=now
            )

        instance, changed = await self._write(work, "heartbeat")
        moved: list[MigrationResult] = []
        if changed and health == RuntimeHealth.UNHEALTHY:
            moved = await self.failover(principal, runtime_id, mode=mode)
        return instance, moved

    async def failover(
        self, principal: Principal, runtime_id: str, *, mode: MigrationMode
    ) -> list[MigrationResult]:
        """``drain``: leave sessions to finish where they are; ``migrate``: move each one."""
        await self.authorize(principal, Role.OPERATOR, "failover")
        if mode == "drain":
            return []
        async with self.store.engine.connect() as conn:
            ids = await self.sessions.active_on_in(conn, runtime_id)
        return [await self.migrate(principal, sid, target=None) for sid in ids]

    async def migrate(
        self, principal: Principal, session_id: str, *, target: str | None,
        force: bool = False, released_by: tuple[str, int] | None = None,
        wait_ms: int | None = None,
    ) -> MigrationResult:
        """Move the session to ``target`` (or the best other runtime). A lease its runtime
        holds live is handed off in two phases (:mod:`rspp.controlplane._ops_handoffs`);
        ``released_by`` (holder, epoch): the holder itself hands it over (a draining
        runtime that fenced its output), at once; ``force``: at once; ``wait_ms``: how long
        to wait for the release (then ``409 handoff_pending``; None: to the end)."""
        await self.authorize(principal, Role.OPERATOR, "migrate session")
        result = await self.hand_off(principal, session_id, "migrate", target=target,
                                     force=force, released_by=released_by, wait_ms=wait_ms)
        if not isinstance(result, MigrationResult):
            raise CPError("migration produced no result", code="internal")
        return result

    async def deregister_runtime(self, principal: Principal, runtime_id: str) -> Deregistered:
        """Remove a runtime from the routing view (it exits); idempotent."""
        await self.authorize(principal, Role.OPERATOR, "deregister runtime")

        async def work(conn: AsyncConnection, now: int) -> Deregistered:
            removed = await self.routing.remove_in(conn, runtime_id)
            if removed:
                await self.audit.append_in(
                    conn, actor=principal.key_id, action="runtime.deregister",
                    subject=runtime_id, detail={},
                )
            return Deregistered(runtime_id=runtime_id, removed=removed)

        return await self._write(work, "deregister runtime")

    async def runtime_endpoint(self, runtime_id: str) -> str | None:
        """The transport endpoint of a registered runtime (None: not registered)."""
        async with self.store.engine.connect() as conn:
            try:
                return (await self.routing.get_in(conn, runtime_id)).endpoint
            except NotFound:
                return None

    async def rotate_signing_key(self, principal: Principal, *, key_ref: str | None,
                                 reason: str) -> dict[str, Any]:
        """Rotate the token signing key online (F-169): admin only; audited."""
        await self.authorize(principal, Role.ADMIN, "rotate the token signing key")
        return await self.signing.rotate(actor=principal.key_id, key_ref=key_ref,
                                         reason=reason)

    async def signing_key_status(self, principal: Principal) -> KeyStatus:
        """Ages of the signing keys against the documented maximum (NF-035)."""
        await self.authorize(principal, Role.VIEWER, "read the signing-key status")
        await self.signing.load()
        return self.signing.status()

    async def set_region_incident(self, principal: Principal, region: str, *,
                                  reason: str | None) -> dict[str, Any]:
        """Open (``reason``) or close (None) a region-level incident (F-110, F-112): new
        sessions and failover moves avoid the region while another has room; audited.
        Opening it applies each in-flight session's failover mode there (F-113,
        :mod:`rspp.controlplane._region_failover`): listed in ``sessions``."""
        await self.authorize(principal, Role.OPERATOR, "set a region incident")

        async def work(conn: AsyncConnection, now: int) -> dict[str, Any]:
            changed = await self.routing.set_incident_in(conn, region, reason=reason,
                                                         actor=principal.key_id, now_ms=now)
            if changed:
                await self.audit.append_in(
                    conn, actor=principal.key_id,
                    action="region.incident_opened" if reason else "region.incident_closed",
                    subject=region, detail={"reason": reason})
            return {"region": region, "incident": reason is not None, "changed": changed}

        result: dict[str, Any] = await self._write(work, "set region incident")
        if reason is not None:
            moves = await fail_region_over(self, principal, region)
            result["sessions"] = msgspec.to_builtins(moves.sessions)
        return result

    async def regions(self, principal: Principal) -> list[dict[str, Any]]:
        """Per region: runtimes, healthy ones, free capacity, and its incident if any."""
        await self.authorize(principal, Role.VIEWER, "list regions")
        async with self.store.engine.connect() as conn:
            now = self.clock()
            fleet = await self.routing.all_placed_in(conn, now_ms=now)
            incidents = await self.routing.incidents_in(conn)
            impaired = await self.routing.impaired_in(conn)
        out: dict[str, dict[str, Any]] = {
            name: {"region": name, "runtimes": 0, "healthy": 0, "free": 0,
                   "incident": incidents.get(name)}
            for name in {*incidents, *impaired}}
        timeout = self.settings.heartbeat_timeout_ms
        for r in fleet:
            row = out.setdefault(r.region, {"region": r.region, "runtimes": 0, "healthy": 0,
                                            "free": 0, "incident": incidents.get(r.region)})
            row["runtimes"] += 1
            if r.effective_health(now, timeout) == RuntimeHealth.HEALTHY:
                row["healthy"] += 1
                row["free"] += max(0, r.capacity - r.placement_load)
        for name, providers in impaired.items():
            out[name]["providers_unhealthy"] = providers
        return [out[k] for k in sorted(out)]

    async def _report_in_region(self, principal: Principal, provider_id: str, region: str,
                                status: ProviderStatus, error_rate: float) -> int:
        async def work(conn: AsyncConnection, now: int) -> int:
            before = await self.routing.report_region_provider_in(
                conn, region=region, provider_id=provider_id, status=status,
                actor=principal.key_id, now_ms=now)
            if before != status.value:
                await self.audit.append_in(
                    conn, actor=principal.key_id, action="provider.region_health",
                    subject=region, detail={"provider_id": provider_id, "status": status.value,
                                            "before": before, "error_rate": error_rate})
            return await self.store.read_counter(conn, ROUTING_COUNTER)

        return await self._write(work, "regional provider health")

    async def runtimes(self, principal: Principal) -> list[RuntimeInstance]:
        await self.authorize(principal, Role.VIEWER, "list runtimes")
        async with self.store.engine.connect() as conn:
            return await self.routing.all_placed_in(conn, now_ms=self.clock())

    async def provider_health(self, principal: Principal) -> ProviderHealth:
        await self.authorize(principal, Role.VIEWER, "read provider health")
        async with self.store.engine.connect() as conn:
            return await self.routing.provider_health_in(conn, now_ms=self.clock())

    async def report_provider_health(
        self,
        principal: Principal,
        provider_id: str,
        *,
        status: ProviderStatus,
        error_rate: float = 0.0,
        latency_p95_ms: int | None = None,
        price_usd: float | None = None,
        region: str | None = None,
    ) -> int:
        """Record a provider's health: fleet-wide (policy provider selection), or as seen in
        one ``region`` (F-112: placement avoids a region where a provider is unhealthy;
        a change is audited ``provider.region_health``)."""
        await self.authorize(principal, Role.OPERATOR, "report provider health")

        if region is not None:
            return await self._report_in_region(principal, provider_id, region, status,
                                                error_rate)

        async def work(conn: AsyncConnection, now: int) -> int:
            return await self.routing.report_provider_in(
                conn,
                provider_id=provider_id,
                status=status,
                error_rate=error_rate,
                latency_p95_ms=latency_p95_ms,
                price_usd=price_usd,
                now_ms=now,
            )

        return await self._write(work, "provider health")
