"""Operator migrate / lease rotate / revoke as a two-phase hand-off (CP-07, CP-08, F-095).

See :mod:`rspp.controlplane._handoffs` for the protocol. :meth:`HandoffOps.hand_off`
is what ``POST /v1/sessions/{id}/migrate`` and ``POST /v1/leases/{id}/rotate|revoke``
run: a lease a runtime acquired and holds live is handed off in two phases (the request
answers once the holder released it, or at the lease's expiry when it did not); a lease
nobody acts on (expired, revoked, issued but not taken up yet), a release by the holder
itself (a draining runtime: ``holder``/``epoch`` in the migrate body) or ``force`` (the
operator knows the holder is gone; fencing covers it) moves at once, as one phase.
"""

from __future__ import annotations

import asyncio

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._core import ControlPlaneCore
from rspp.controlplane._errors import Conflict, NotFound
from rspp.controlplane._handoffs import (
    Handoff,
    HandoffAction,
    begin_in,
    finish_in,
    get_in,
    last_in,
    pending_in,
    record_result_in,
)
from rspp.controlplane._leases import LeaseChange
from rspp.controlplane._rbac import Principal
from rspp.controlplane._schema import lease_handoffs, leases
from rspp.controlplane._sessions import MigrationResult, SessionStatus

__all__ = ["REVOKED_HOLDER", "HandoffOps", "HandoffWaiting", "LeaseRelease"]

#: holder of a revoked lease: no runtime may act for the session at that epoch
REVOKED_HOLDER = "(revoked)"

class HandoffWaiting(Conflict):
    """The operator's wait ended before the holder released its lease (409); the hand-off
    goes on."""

    code = "handoff_pending"


#: how long past the deadline a waiting request re-reads the hand-off at most (another
#: control-plane process may complete it)
_RECHECK_S = 1.0


class LeaseRelease(msgspec.Struct, frozen=True, kw_only=True):
    """What a holder's release did: the hand-off's action and where the lease is now
    (``rotate``: the same holder at the next epoch; ``migrate``: the runtime the session
    moved to; ``revoke``: nobody, ``(revoked)``)."""

    session_id: str
    action: str
    epoch: int
    holder: str


Result = MigrationResult | LeaseChange


class HandoffOps(ControlPlaneCore):
    async def hand_off(
        self, principal: Principal, session_id: str, action: HandoffAction, *,
        target: str | None = None, force: bool = False,
        released_by: tuple[str, int] | None = None, wait_ms: int | None = None,
    ) -> Result:
        """Migrate (to ``target`` or the best other runtime), rotate (same holder) or revoke
        the session's lease; two phases while a runtime holds it live (module docstring).
        ``wait_ms``: answer :class:`HandoffWaiting` (409 ``handoff_pending``) when the holder
        has not released by then (the hand-off goes on; the same request again waits on)."""
        sid = session_id

        async def begin(conn: AsyncConnection, now: int) -> Result | Handoff | None:
            info = await self.sessions.get_in(conn, sid)
            principal.require_tenant(info.tenant_id)
            if action == "migrate" and info.status == SessionStatus.ENDED:
                raise Conflict(f"session {sid} has ended; nothing to migrate",
                               field="session_id")
            held = await self.leases.lock_in(conn, [sid])
            if not held:
                raise NotFound(f"session {sid} has no lease", field="session_id")
            lease = held[0]
            pending = (await pending_in(conn, [sid])).get(sid)
            if pending is not None:
                if (pending.action, pending.target) != (action, target):
                    raise Conflict(f"session {sid} is being handed off already "
                                   f"({pending.action}); wait for it", field="session_id")
                return pending  # the same request again: wait for the same hand-off
            acquired = (await conn.execute(select(leases.c.acquired_at_ms).where(
                leases.c.session_id == sid))).scalar()
            live = (lease.expires_at_ms > now and acquired is not None
                    and lease.holder != REVOKED_HOLDER)
            if not live or force or released_by == (lease.holder, lease.epoch):
                return await self._act_in(conn, principal.key_id, sid, action, target,
                                          lease.holder, now)
            return await begin_in(conn, session_id=sid, epoch=lease.epoch, holder=lease.holder,
                                  action=action, target=target, actor=principal.key_id,
                                  now_ms=now, deadline_ms=lease.expires_at_ms)

        got: Result | Handoff = await self._write(begin, f"{action} session")
        if isinstance(got, Handoff):
            self.runtime_watch.changed([got.holder])  # its control channel: drain now
            return await self._until_handed_off(got, wait_ms)
        self.placements.changed([sid])
        return got

    async def release_lease(self, principal: Principal, session_id: str, holder: str,
                            epoch: int) -> LeaseRelease:
        """The holder released its lease being handed off: complete the hand-off now. Again
        after that (the answer was lost), or after it timed out: what it did."""

        async def work(conn: AsyncConnection, now: int) -> LeaseRelease | None:
            info = await self.sessions.get_in(conn, session_id)
            principal.require_tenant(info.tenant_id)
            await self.leases.lock_in(conn, [session_id])
            pending = (await pending_in(conn, [session_id])).get(session_id)
            if pending is None or (pending.holder, pending.epoch) != (holder, epoch):
                # released already (its answer was lost) or timed out: the same answer
                done = await last_in(conn, session_id, holder, epoch)
                if done is None:
                    raise Conflict(f"no hand-off of {session_id}'s lease at epoch {epoch} "
                                   f"held by {holder} is pending", field="epoch")
                return _release(session_id, done.action, await self._result_in(conn, done))
            result = await self._finish_in(conn, pending, "released", now)
            return None if result is None else _release(session_id, pending.action, result)

        released = await self._write(work, "release lease")
        self.placements.changed([session_id])
        return released

    async def finish_expired_handoffs(self) -> int:
        """Complete the hand-offs whose holder did not release by the deadline and whose
        request is gone (the failover monitor's pass); how many."""
        now = self.clock()
        async with self.store.engine.connect() as conn:
            due = [r.handoff_id for r in await conn.execute(
                select(lease_handoffs.c.handoff_id).where(
                    lease_handoffs.c.completed_at_ms.is_(None),
                    lease_handoffs.c.deadline_ms <= now))]
        for hid in due:
            await self._finish_at_deadline(hid)
        return len(due)

    # -- helpers ---------------------------------------------------------------------------
    async def _until_handed_off(self, h: Handoff, wait_ms: int | None) -> Result:
        """Wait for the holder's release (it completes the hand-off) or the deadline."""
        async def read() -> Handoff:
            async with self.store.engine.connect() as conn:
                return await get_in(conn, h.handoff_id)

        def settled(row: Handoff) -> bool:
            return row.completed_at_ms is not None or self.clock() >= row.deadline_ms

        loop = asyncio.get_running_loop()
        until = None if wait_ms is None else loop.time() + wait_ms / 1000
        while True:
            left = max(0.0, (h.deadline_ms - self.clock()) / 1000)
            if until is not None:
                left = min(left, max(0.0, until - loop.time()))
            row = await self.placements.until(h.session_id, read, settled,
                                              min(left, _RECHECK_S))
            if row.completed_at_ms is not None:
                return await self._result_of(row)
            if self.clock() >= row.deadline_ms:
                return await self._finish_at_deadline(h.handoff_id)
            if until is not None and loop.time() >= until:
                raise HandoffWaiting(
                    f"the runtime {h.holder} holding {h.session_id}'s lease (epoch {h.epoch}) "
                    f"has not released it yet; the hand-off ({h.action}) goes on and completes "
                    f"at its release or at the lease's expiry ({h.deadline_ms}); ask again to "
                    "wait for it", field="session_id")

    async def _finish_at_deadline(self, handoff_id: int) -> Result:
        sid: list[str] = []

        async def work(conn: AsyncConnection, now: int) -> Result | None:
            row = await get_in(conn, handoff_id)
            sid[:] = [row.session_id]
            await self.leases.lock_in(conn, [row.session_id])
            if row.completed_at_ms is not None:
                return await self._result_in(conn, row)
            return await self._finish_in(conn, row, "timed_out", now)

        result: Result = await self._write(work, "finish hand-off")
        self.placements.changed(sid)
        return result

    async def _finish_in(self, conn: AsyncConnection, h: Handoff, outcome: str,
                         now: int) -> Result | None:
        """Complete pending ``h`` (compare-and-swap) and move the lease; None: lost, retry."""
        if not await finish_in(conn, h.handoff_id, outcome=outcome, now_ms=now):
            return await self._result_in(conn, await get_in(conn, h.handoff_id))
        result = await self._act_in(conn, h.actor, h.session_id, h.action,  # type: ignore[arg-type]
                                    h.target, h.holder, now)
        if result is None:
            return None
        await record_result_in(conn, h.handoff_id, result)
        await self.audit.append_in(
            conn, actor=h.actor, action=f"lease.handoff_{outcome}", subject=h.session_id,
            detail={"action": h.action, "epoch": h.epoch, "holder": h.holder,
                    "started_at_ms": h.started_at_ms, "completed_at_ms": now})
        return result

    async def _act_in(self, conn: AsyncConnection, actor: str, sid: str, action: HandoffAction,
                      target: str | None, holder: str, now: int) -> Result | None:
        ttl = self.settings.lease_ttl_ms
        if action == "migrate":
            return await self.sessions.migrate_in(conn, sid, target=target, ttl_ms=ttl,
                                                  actor=actor, now_ms=now)
        new_holder = REVOKED_HOLDER if action == "revoke" else holder
        return await self.leases.rotate_in(conn, sid, new_holder, ttl_ms=ttl, actor=actor)

    async def _result_of(self, row: Handoff) -> Result:
        async with self.store.engine.connect() as conn:
            return await self._result_in(conn, row)

    async def _result_in(self, conn: AsyncConnection, row: Handoff) -> Result:
        """What a completed hand-off did (superseded: where the session is now)."""
        kind: type[Result] = MigrationResult if row.action == "migrate" else LeaseChange
        if row.result_json is not None:
            decoded: Result = msgspec.json.decode(row.result_json, type=kind)
            return decoded
        lease = await self.leases.current(row.session_id)
        if lease is None:
            raise NotFound(f"session {row.session_id} has no lease", field="session_id")
        if kind is LeaseChange:
            return LeaseChange(lease=lease)
        info = await self.sessions.get_in(conn, row.session_id)
        return MigrationResult(session_id=row.session_id, from_runtime=row.holder,
                               to_runtime=info.runtime_id or lease.holder, epoch=lease.epoch,
                               signals=())


def _release(sid: str, action: str, result: Result) -> LeaseRelease:
    if isinstance(result, MigrationResult):
        return LeaseRelease(session_id=sid, action=action, epoch=result.epoch,
                            holder=result.to_runtime)
    return LeaseRelease(session_id=sid, action=action, epoch=result.lease.epoch,
                        holder=result.lease.holder)
