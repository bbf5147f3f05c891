"""Append-only audit log with a SHA-256 hash chain (F-097).

Each row's ``hash`` covers its sequence number, time, actor, action, subject,
details, the tenant it concerns (when it names one) and the previous row's hash,
so editing or deleting any row breaks verification from that row on.

Entries that concern one tenant (its sessions, leases, configs, keys, denials of
its keys) carry that ``tenant_id``; fleet-wide changes carry none. A tenant-scoped
key reads only its tenant's entries; a fleet key reads all of them. The chain runs
through every entry, so only a fleet key verifies it.

Appending does not wait for the chain's tail: a change inserts its entry into
``cp_audit_intake`` in its own transaction (they commit together, or neither does),
so concurrent writers (session routes of many tenants, lease rotations of a
failover) never queue on one lock. Linking is done by one sealer at a time (a
PostgreSQL advisory lock; SQLite serialises its writers): it takes the committed
intake entries in id order, gives each the next ``seq`` and its hash, writes them to
``cp_audit`` and deletes them from the intake, in one transaction. The control plane
seals right after each committed transaction that appended, and before every read
and verification, so a reader always sees every committed entry chained.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import msgspec
from sqlalchemy import delete, insert, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._schema import audit, audit_intake
from rspp.controlplane._store import Store
from rspp.controlplane._util import Clock, canonical_json, sha256_hex, wall_ms

GENESIS = "0" * 64
_AUDIT_LOCK = 0x52535050  # "RSPP"
#: intake entries one sealing transaction links
_SEAL_BATCH = 500
_LOG = logging.getLogger("rspp.controlplane")


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    ts_ms: int
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str
    tenant_id: str | None = None


class AuditVerdict(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


def entry_hash(
    seq: int,
    ts_ms: int,
    actor: str,
    action: str,
    subject: str,
    detail_json: str,
    prev: str,
    tenant_id: str | None = None,
) -> str:
    """The digest of one entry; a tenant, when set, is covered (rows without one hash as
    they did before entries named tenants)."""
    fields: list[object] = [seq, ts_ms, actor, action, subject, detail_json, prev]
    if tenant_id is not None:
        fields.append({"tenant_id": tenant_id})
    return sha256_hex(canonical_json(fields))


class AuditLog:
    def __init__(self, store: Store, clock: Clock = wall_ms) -> None:
        self._store = store
        self._clock = clock
        #: transactions (by connection) that appended and have not ended yet
        self._writers: set[int] = set()
        self._sealer: asyncio.Task[None] | None = None
        self._again = False
        store.on_finish.append(self._finished)

    async def append_in(
        self,
        conn: AsyncConnection,
        *,
        actor: str,
        action: str,
        subject: str,
        detail: dict[str, Any],
        tenant_id: str | None = None,
    ) -> None:
        """Append inside an open transaction of the store (the change and its entry commit
        together); the entry is linked into the chain once that transaction committed."""
        await conn.execute(
            insert(audit_intake).values(
                ts_ms=self._clock(),
                actor=actor,
                action=action,
                subject=subject,
                detail_json=canonical_json(detail),
                tenant_id=tenant_id,
            )
        )
        self._writers.add(id(conn))

    async def append(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        detail: dict[str, Any],
        tenant_id: str | None = None,
    ) -> None:
        async with self._store.tx() as conn:
            await self.append_in(
                conn, actor=actor, action=action, subject=subject, detail=detail,
                tenant_id=tenant_id,
            )

    def _finished(self, conn: AsyncConnection, committed: bool) -> None:
        """A store transaction ended: seal what it appended (in the background)."""
        if id(conn) not in self._writers:
            return
        self._writers.discard(id(conn))
        if not committed:
            return
        if self._sealer is not None and not self._sealer.done():
            self._again = True  # the running sealer goes round once more
            return
        self._sealer = asyncio.get_running_loop().create_task(
            self._seal_soon(), name="rspp-cp-audit-sealer"
        )

    async def _seal_soon(self) -> None:
        while True:
            self._again = False
            try:
                await self.seal()
            except (OSError, SQLAlchemyError) as exc:  # the next write or read seals them
                _LOG.warning("audit entries not sealed yet (retried later): %s", exc)
                return
            if not self._again:
                return

    async def close(self) -> None:
        """Wait for the background sealer (the store is closed after this)."""
        task, self._sealer = self._sealer, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def seal(self) -> int:
        """Link every committed intake entry into the chain; returns how many."""
        total = 0
        while True:
            linked = await self._seal_batch()
            total += linked
            if linked < _SEAL_BATCH:
                return total

    async def _seal_batch(self) -> int:
        async with self._store.tx() as conn:
            if not self._store.is_sqlite:  # one sealer at a time, across processes
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK})
            pending = (
                await conn.execute(
                    select(audit_intake).order_by(audit_intake.c.id).limit(_SEAL_BATCH)
                )
            ).all()
            if not pending:
                return 0
            last = (
                await conn.execute(
                    select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
                )
            ).first()
            seq, prev = (int(last[0]), str(last[1])) if last is not None else (0, GENESIS)
            rows: list[dict[str, Any]] = []
            for r in pending:
                seq += 1
                digest = entry_hash(
                    seq, r.ts_ms, r.actor, r.action, r.subject, r.detail_json, prev, r.tenant_id
                )
                rows.append({
                    "seq": seq, "ts_ms": r.ts_ms, "actor": r.actor, "action": r.action,
                    "subject": r.subject, "detail_json": r.detail_json, "prev_hash": prev,
                    "hash": digest, "tenant_id": r.tenant_id,
                })
                prev = digest
            await conn.execute(insert(audit), rows)
            await conn.execute(
                delete(audit_intake).where(audit_intake.c.id.in_([r.id for r in pending]))
            )
            return len(pending)

    async def latest(self, action: str, subject: str) -> AuditEntry | None:
        """The newest entry of ``action`` about ``subject`` (None when there is none)."""
        await self.seal()
        query = (select(audit).where(audit.c.action == action, audit.c.subject == subject)
                 .order_by(audit.c.seq.desc()).limit(1))
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return _entries(rows)[0] if rows else None

    async def entries(
        self, *, limit: int = 1000, after_seq: int = 0, tenant_id: str | None = None
    ) -> list[AuditEntry]:
        """A page of entries after ``after_seq``; only ``tenant_id``'s when it is given."""
        await self.seal()
        query = select(audit).where(audit.c.seq > after_seq)
        if tenant_id is not None:
            query = query.where(audit.c.tenant_id == tenant_id)
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(audit.c.seq).limit(limit))).all()
        return _entries(rows)

    async def verify(self) -> AuditVerdict:
        """Walk the whole chain; report the first row whose hash or link does not hold."""
        await self.seal()
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(select(audit).order_by(audit.c.seq))).all()
        prev = GENESIS
        for index, r in enumerate(rows, start=1):
            if r.seq != index:
                return AuditVerdict(
                    ok=False,
                    checked=index - 1,
                    first_bad_seq=index,
                    reason=f"row seq {index} is missing (found {r.seq}): rows were deleted",
                )
            if r.prev_hash != prev:
                return AuditVerdict(
                    ok=False,
                    checked=index - 1,
                    first_bad_seq=r.seq,
                    reason=f"row {r.seq} does not link to the previous row's hash",
                )
            expected = entry_hash(
                r.seq, r.ts_ms, r.actor, r.action, r.subject, r.detail_json, r.prev_hash,
                r.tenant_id,
            )
            if expected != r.hash:
                return AuditVerdict(
                    ok=False,
                    checked=index - 1,
                    first_bad_seq=r.seq,
                    reason=f"row {r.seq} content does not match its hash: it was modified",
                )
            prev = r.hash
        return AuditVerdict(ok=True, checked=len(rows))


def _entries(rows: Any) -> list[AuditEntry]:
    return [
        AuditEntry(
            seq=r.seq,
            ts_ms=r.ts_ms,
            actor=r.actor,
            action=r.action,
            subject=r.subject,
            detail=json.loads(r.detail_json),
            prev_hash=r.prev_hash,
            hash=r.hash,
            tenant_id=r.tenant_id,
        )
        for r in rows
    ]
