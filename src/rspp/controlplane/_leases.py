"""Session leases and authority epochs (CP-07, F-095).

One lease row per session; its ``epoch`` only grows and is the fencing token.
Every change is a compare-and-swap on the current epoch (``UPDATE ... WHERE
epoch = :seen``) plus an insert into ``cp_lease_epochs`` whose primary key
``(session_id, epoch)`` makes two holders of one epoch impossible on any store.
Issuing emits ``lease_issued``; taking over (expiry, failover, migration) emits
``lease_rotated``. A holder is authorised only while it holds the current epoch
and the lease has not expired.

The epoch changes whenever authority could have been held by someone else, and only
then. A holder whose lease lapsed (a late renewal: a loaded or briefly paused runtime)
while no other epoch was issued re-acquires it at the same epoch: the lease row still
names it at that epoch, so nobody else held the session meanwhile, and its route token
stays valid. Taking over someone else's lease, a failover and a migration always issue
a new epoch; the failover monitor's take-over is itself a compare-and-swap on "still
this epoch and still expired", so a renewal that wins the race keeps the lease and the
take-over is skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from sqlalchemy import insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import ControlSignal, Emitter, SignalName
from rspp.controlplane._audit import AuditLog
from rspp.controlplane._errors import Conflict, InvalidRequest, NotFound
from rspp.controlplane._handoffs import Handoff, HandoffPending, pending_in, supersede_in
from rspp.controlplane._schema import lease_epochs, leases, sessions
from rspp.controlplane._signals import emit_signal
from rspp.controlplane._store import Store
from rspp.controlplane._util import Clock, wall_ms

_MAX_CAS_ATTEMPTS = 200


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    epoch: int
    holder: str
    expires_at_ms: int


class LeaseChange(msgspec.Struct, frozen=True, kw_only=True):
    lease: Lease
    signal: ControlSignal | None = None


class LeaseRenewal(msgspec.Struct, frozen=True, kw_only=True):
    """One lease of a batch renewal: ``renewed``, or where the lease is now (``epoch`` and
    ``holder`` None: the session has no lease)."""

    session_id: str
    renewed: bool
    epoch: int | None
    holder: str | None
    expires_at_ms: int | None
    #: the lease is being handed off (``migrate``, ``rotate``, ``revoke``): not renewed; the
    #: holder fences its output, ends the active turn and releases it
    handoff: str | None = None


class Authorization(msgspec.Struct, frozen=True, kw_only=True):
    authorized: bool
    current_epoch: int | None
    reason: str


class LeaseManager:
    def __init__(self, store: Store, audit: AuditLog, clock: Clock = wall_ms) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    async def current(self, session_id: str) -> Lease | None:
        async with self._store.engine.connect() as conn:
            return await _read(conn, session_id)

    async def lock_in(self, conn: AsyncConnection, session_ids: list[str]) -> list[Lease]:
        """The leases of ``session_ids``, locked until the transaction ends (PostgreSQL;
        SQLite serialises its writers anyway)."""
        if not session_ids:
            return []
        query = select(leases).where(leases.c.session_id.in_(session_ids))
        if not self._store.is_sqlite:
            query = query.order_by(leases.c.session_id).with_for_update()
        rows = (await conn.execute(query)).all()
        return [
            Lease(session_id=r.session_id, epoch=r.epoch, holder=r.holder,
                  expires_at_ms=r.expires_at_ms)
            for r in rows
        ]

    async def acquire(
        self, session_id: str, holder: str, *, ttl_ms: int, actor: str
    ) -> LeaseChange:
        """Claim the session for ``holder``: issue epoch 1, renew if ``holder`` holds the
        current epoch (even when its lease lapsed: nobody else held it since), or take over
        another holder's expired lease (new epoch). Refused while another holder's lease is
        live."""
        _check_ttl(ttl_ms)
        return await self._with_cas(
            session_id,
            lambda conn: self.acquire_in(conn, session_id, holder, ttl_ms=ttl_ms, actor=actor),
        )

    async def acquire_in(
        self, conn: AsyncConnection, session_id: str, holder: str, *, ttl_ms: int, actor: str
    ) -> LeaseChange | None:
        """One attempt; ``None`` means the compare-and-swap lost and the caller retries."""
        now = self._clock()
        row = await _read(conn, session_id)
        if row is None:
            return await self._write(conn, session_id, holder, 1, None, now, ttl_ms, actor,
                                     acquired=True)
        if row.holder == holder:
            # the current epoch is this holder's: no one else held the session since it was
            # issued (any other holder would have a newer epoch), so the epoch stays; not
            # while it is being handed off (the lease runs out, it is not extended)
            pending = (await pending_in(conn, [session_id])).get(session_id)
            if pending is not None:
                raise _handing_off(pending)
            result = await conn.execute(
                update(leases)
                .where(leases.c.session_id == session_id, leases.c.epoch == row.epoch)
                .values(expires_at_ms=now + ttl_ms, acquired_at_ms=now)
            )
            if result.rowcount != 1:
                return None
            return LeaseChange(
                lease=Lease(
                    session_id=session_id,
                    epoch=row.epoch,
                    holder=holder,
                    expires_at_ms=now + ttl_ms,
                )
            )
        if row.expires_at_ms > now:
            raise Conflict(
                f"session {session_id} is held by {row.holder} at epoch {row.epoch} until "
                f"{row.expires_at_ms}; wait for expiry or ask the control plane to migrate it",
                field="session_id",
            )
        if row.holder != holder:
            routed = (
                await conn.execute(
                    select(sessions.c.runtime_id).where(sessions.c.session_id == session_id)
                )
            ).scalar()
            if routed is not None and routed != holder:
                # a runtime that lost the session (it was paused while the control plane
                # failed it over) must not take it back once the new holder's lease lapses
                raise Conflict(
                    f"session {session_id} is routed to {routed}, not {holder}; only the "
                    "runtime it is routed to may take over its expired lease",
                    field="session_id",
                )
        return await self._write(
            conn, session_id, holder, row.epoch + 1, row.epoch, now, ttl_ms, actor,
            acquired=True,
        )

    async def rotate_in(
        self,
        conn: AsyncConnection,
        session_id: str,
        new_holder: str,
        *,
        ttl_ms: int,
        actor: str,
        emitted_by: Emitter = Emitter.CP_07,
        expired_from: str | None = None,
    ) -> LeaseChange | None:
        """Force a new epoch for ``new_holder`` (failover/migration). ``None``: CAS lost.

        ``expired_from``: take over only if ``expired_from`` still holds the lease and it is
        still expired when the new epoch is written (the failover monitor's condition, checked
        in the same statement); otherwise :class:`Conflict` (the holder renewed meanwhile)."""
        now = self._clock()
        row = await _read(conn, session_id)
        if row is None:
            return await self._write(
                conn, session_id, new_holder, 1, None, now, ttl_ms, actor, emitted_by
            )
        if expired_from is not None and (row.holder != expired_from or row.expires_at_ms > now):
            raise Conflict(
                f"session {session_id}'s lease is live (epoch {row.epoch} held by "
                f"{row.holder}); not taken over",
                field="session_id",
            )
        return await self._write(
            conn, session_id, new_holder, row.epoch + 1, row.epoch, now, ttl_ms, actor, emitted_by,
            expired_before=now + 1 if expired_from is not None else None,
        )

    async def _with_cas(
        self, session_id: str, attempt: Callable[[AsyncConnection], Awaitable[LeaseChange | None]]
    ) -> LeaseChange:
        """Run ``attempt`` in a transaction until its compare-and-swap wins (bounded)."""
        for _ in range(_MAX_CAS_ATTEMPTS):
            try:
                async with self._store.tx() as conn:
                    change = await attempt(conn)
                if change is not None:
                    return change
            except IntegrityError:
                continue
        raise Conflict(
            f"lease for {session_id} is under heavy contention; retry", field="session_id"
        )

    async def rotate(
        self, session_id: str, new_holder: str, *, ttl_ms: int, actor: str
    ) -> LeaseChange:
        _check_ttl(ttl_ms)
        return await self._with_cas(
            session_id,
            lambda conn: self.rotate_in(conn, session_id, new_holder, ttl_ms=ttl_ms, actor=actor),
        )

    async def renew(self, session_id: str, holder: str, epoch: int, *, ttl_ms: int) -> Lease:
        """Extend ``holder``'s lease at ``epoch``; also a lapsed one while that epoch is
        still current (nobody else held the session since); refused once it moved on."""
        _check_ttl(ttl_ms)
        async with self._store.tx() as conn:
            now = self._clock()
            pending = (await pending_in(conn, [session_id])).get(session_id)
            if pending is not None and (pending.holder, pending.epoch) == (holder, epoch):
                raise _handing_off(pending)
            result = await conn.execute(
                update(leases)
                .where(
                    leases.c.session_id == session_id,
                    leases.c.epoch == epoch,
                    leases.c.holder == holder,
                )
                .values(expires_at_ms=now + ttl_ms)
            )
            if result.rowcount != 1:
                current = await _read(conn, session_id)
                if current is None:
                    raise NotFound(f"session {session_id} has no lease", field="session_id")
                raise Conflict(
                    f"cannot renew epoch {epoch} for {holder}: current epoch is {current.epoch} "
                    f"held by {current.holder}; a deauthorised holder must stop and drain",
                    field="epoch",
                )
        return Lease(session_id=session_id, epoch=epoch, holder=holder, expires_at_ms=now + ttl_ms)

    async def renew_all(
        self, holder: str, held: list[tuple[str, int]], *, ttl_ms: int
    ) -> list[LeaseRenewal]:
        """:meth:`renew` for every ``(session, epoch)`` of ``holder`` in one statement; the
        ones that moved on are reported where they are now."""
        _check_ttl(ttl_ms)
        if not held:
            return []
        async with self._store.tx() as conn:
            now = self._clock()
            # lock in session order, as the failover monitor does: never a deadlock with it
            await self.lock_in(conn, [sid for sid, _ in held])
            # leases being handed off are not extended: their holder is told to release
            handing = await pending_in(conn, [sid for sid, _ in held])
            renewable = [(sid, e) for sid, e in held if sid not in handing]
            done = {
                str(r[0])
                for r in await conn.execute(
                    update(leases)
                    .where(
                        leases.c.holder == holder,
                        tuple_(leases.c.session_id, leases.c.epoch).in_(renewable),
                    )
                    .values(expires_at_ms=now + ttl_ms)
                    .returning(leases.c.session_id)
                )
            } if renewable else set()
            missed = [sid for sid, _ in held if sid not in done]
            current = {}
            if missed:
                rows = await conn.execute(select(leases).where(leases.c.session_id.in_(missed)))
                current = {r.session_id: r for r in rows}
        out = []
        for sid, epoch in held:
            row = current.get(sid)
            if sid in done:
                out.append(LeaseRenewal(session_id=sid, renewed=True, epoch=epoch, holder=holder,
                                        expires_at_ms=now + ttl_ms))
            else:
                h = handing.get(sid)
                out.append(LeaseRenewal(
                    session_id=sid, renewed=False, epoch=row.epoch if row else None,
                    holder=row.holder if row else None,
                    expires_at_ms=row.expires_at_ms if row else None,
                    handoff=h.action if h is not None and (h.holder, h.epoch) == (holder, epoch)
                    else None))
        return out

    async def authorize(self, session_id: str, holder: str, epoch: int) -> Authorization:
        """May ``holder`` act for the session with ``epoch`` now? (expired/superseded: no)."""
        current = await self.current(session_id)
        now = self._clock()
        if current is None:
            return Authorization(authorized=False, current_epoch=None, reason="no lease issued")
        if current.epoch != epoch or current.holder != holder:
            return Authorization(
                authorized=False,
                current_epoch=current.epoch,
                reason=f"superseded: current epoch {current.epoch} held by {current.holder}",
            )
        if current.expires_at_ms <= now:
            return Authorization(
                authorized=False, current_epoch=current.epoch, reason="lease expired"
            )
        return Authorization(authorized=True, current_epoch=current.epoch, reason="current holder")

    async def _write(
        self,
        conn: AsyncConnection,
        session_id: str,
        holder: str,
        epoch: int,
        seen: int | None,
        now: int,
        ttl_ms: int,
        actor: str,
        emitted_by: Emitter = Emitter.CP_07,
        expired_before: int | None = None,
        acquired: bool = False,
    ) -> LeaseChange | None:
        """Write epoch ``epoch`` (compare-and-swap on ``seen``; with ``expired_before``, also
        on the lease still being expired then). ``acquired``: by the runtime that will act
        on it (else issued by the control plane, not taken up yet)."""
        expires = now + ttl_ms
        taken = now if acquired else None
        if seen is None:
            await conn.execute(
                insert(leases).values(
                    session_id=session_id, epoch=epoch, holder=holder, expires_at_ms=expires,
                    acquired_at_ms=taken,
                )
            )
        else:
            cas = update(leases).where(leases.c.session_id == session_id, leases.c.epoch == seen)
            if expired_before is not None:
                cas = cas.where(leases.c.expires_at_ms < expired_before)
            result = await conn.execute(cas.values(epoch=epoch, holder=holder,
                                                   expires_at_ms=expires, acquired_at_ms=taken))
            if result.rowcount != 1:
                return None
            await supersede_in(conn, session_id, now)  # a pending hand-off is over
        await conn.execute(
            insert(lease_epochs).values(
                session_id=session_id, epoch=epoch, holder=holder, issued_at_ms=now
            )
        )
        owner = (
            await conn.execute(
                select(sessions.c.pipeline_version, sessions.c.tenant_id).where(
                    sessions.c.session_id == session_id
                )
            )
        ).first()
        version, tenant_id = (owner[0], owner[1]) if owner is not None else (None, None)
        name = SignalName.LEASE_ISSUED if seen is None else SignalName.LEASE_ROTATED
        signal = await emit_signal(
            conn,
            session_id=session_id,
            pipeline_version=str(version or "unbound"),
            signal=name,
            emitted_by=emitted_by,
            epoch=epoch,
            now_ms=now,
            reason=f"lease epoch {epoch} to {holder}" + (f" (was {seen})" if seen else ""),
        )
        await self._audit.append_in(
            conn,
            actor=actor,
            action=f"lease.{name.value.split('_')[1]}",
            subject=session_id,
            detail={
                "epoch": epoch,
                "holder": holder,
                "previous_epoch": seen,
                "expires_at_ms": expires,
            },
            tenant_id=tenant_id,
        )
        return LeaseChange(
            lease=Lease(session_id=session_id, epoch=epoch, holder=holder, expires_at_ms=expires),
            signal=signal,
        )


def _handing_off(h: Handoff) -> HandoffPending:
    return HandoffPending(
        f"the lease of {h.session_id} (epoch {h.epoch}, {h.holder}) is being handed off "
        f"({h.action}): it is not renewed; the holder fences its output, ends the active turn "
        "and releases it (POST /v1/leases/{session_id}/release)", field=h.action)


async def _read(conn: AsyncConnection, session_id: str) -> Lease | None:
    row = (await conn.execute(select(leases).where(leases.c.session_id == session_id))).first()
    if row is None:
        return None
    return Lease(
        session_id=session_id, epoch=row.epoch, holder=row.holder, expires_at_ms=row.expires_at_ms
    )


def _check_ttl(ttl_ms: int) -> None:
    if not 100 <= ttl_ms <= 86_400_000:
        raise InvalidRequest(f"ttl_ms must be 100..86400000, got {ttl_ms}", field="ttl_ms")
