"""Append-only audit log with a SHA-256 hash chain (F-097).

Each row's ``hash`` covers its sequence number, time, actor, action, subject,
details, the tenant it concerns (when it names one) and the previous row's hash,
so editing or deleting any row breaks verification from that row on.

Entries that concern one tenant (its sessions, leases, configs, keys, denials of
its keys) carry that ``tenant_id``; fleet-wide changes carry none. A tenant-scoped
key reads only its tenant's entries; a fleet key reads all of them. The chain runs
through every entry, so only a fleet key verifies it. Appends are serialised by the primary key on
``seq``: two concurrent appends cannot both extend the same tail.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._schema import audit
from rspp.controlplane._store import Store
from rspp.controlplane._util import Clock, canonical_json, sha256_hex, wall_ms

GENESIS = "0" * 64
_AUDIT_LOCK = 0x52535050  # "RSPP"


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
        """Append inside an open transaction (the change and its audit row commit together).

        Call it last in the transaction: on PostgreSQL it takes a transaction-scoped
        advisory lock so concurrent appenders extend the chain one after another.
        """
        if not self._store.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK})
        last = (
            await conn.execute(
                select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
            )
        ).first()
        seq, prev = (int(last[0]) + 1, str(last[1])) if last is not None else (1, GENESIS)
        ts = self._clock()
        detail_json = canonical_json(detail)
        digest = entry_hash(seq, ts, actor, action, subject, detail_json, prev, tenant_id)
        await conn.execute(
            insert(audit).values(
                seq=seq,
                ts_ms=ts,
                actor=actor,
                action=action,
                subject=subject,
                detail_json=detail_json,
                prev_hash=prev,
                hash=digest,
                tenant_id=tenant_id,
            )
        )

    async def append(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        detail: dict[str, Any],
        tenant_id: str | None = None,
    ) -> None:
        for _ in range(50):
            try:
                async with self._store.tx() as conn:
                    await self.append_in(
                        conn,
                        actor=actor,
                        action=action,
                        subject=subject,
                        detail=detail,
                        tenant_id=tenant_id,
                    )
                return
            except IntegrityError:
                continue  # another writer took this seq; retry on the new tail

    async def entries(
        self, *, limit: int = 1000, after_seq: int = 0, tenant_id: str | None = None
    ) -> list[AuditEntry]:
        """A page of entries after ``after_seq``; only ``tenant_id``'s when it is given."""
        query = select(audit).where(audit.c.seq > after_seq)
        if tenant_id is not None:
            query = query.where(audit.c.tenant_id == tenant_id)
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(audit.c.seq).limit(limit))).all()
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

    async def verify(self) -> AuditVerdict:
        """Walk the whole chain; report the first row whose hash or link does not hold."""
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
