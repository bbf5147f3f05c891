"""Backup and restore of the control plane's artifacts (F-166, NF-031).

A backup holds what an operator could not rebuild: published pipelines and modules,
rollouts and gated-rollout policies, versioned configs (policy, admission, provider
config) with their active heads, API keys (digests only), the audit chain (sealed
entries and committed intake) and the counters that order publishes and snapshots.
Live state is left out on purpose: runtimes re-register with their next heartbeat,
and sessions, leases, checkpoints, signals and gate samples belong to sessions that
reconnect through a new route after a restore.

The rows are read in one transaction (PostgreSQL: a repeatable-read snapshot;
SQLite: a write transaction, so no writer commits half-way through), so a backup is
a consistent cut even while the control plane serves. The file carries the Alembic
revision it was taken at and a SHA-256 digest of its tables; a restore refuses a
file whose digest does not match, a revision other than the target's, or a target
that already holds artifacts, each with one line naming what to do.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._audit import AuditLog
from rspp.controlplane._errors import Conflict, InvalidRequest
from rspp.controlplane._schema import (
    api_keys,
    audit,
    audit_intake,
    changes,
    config_heads,
    configs,
    counters,
    modules,
    pipelines,
    rollout_policies,
    rollouts,
    signer_keys,
    token_keys,
)
from rspp.controlplane._store import Store
from rspp.controlplane._util import Clock, canonical_json, sha256_hex, wall_ms

FORMAT = "rspp-cp-backup/1"

#: the artifact tables, in restore order; intake ids are given anew on restore
ARTIFACTS: tuple[Table, ...] = (
    pipelines, modules, rollouts, rollout_policies, configs, config_heads, changes, api_keys,
    signer_keys, token_keys, counters, audit, audit_intake,
)
_ORDER: dict[str, tuple[str, ...]] = {
    pipelines.name: ("name", "version"),
    modules.name: ("name", "version"),
    rollouts.name: ("pipeline_name",),
    rollout_policies.name: ("pipeline_name",),
    configs.name: ("kind", "scope", "version"),
    config_heads.name: ("kind", "scope"),
    changes.name: ("change_id",),
    api_keys.name: ("key_id",),
    signer_keys.name: ("key_id", "fingerprint"),
    token_keys.name: ("kid",),
    counters.name: ("name",),
    audit.name: ("seq",),
    audit_intake.name: ("id",),
}


class Backup(msgspec.Struct, frozen=True, kw_only=True):
    """One consistent copy of the control plane's artifacts."""

    format: str
    schema_revision: str
    created_at_ms: int
    tables: dict[str, list[dict[str, Any]]]
    digest: str

    @property
    def counts(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.tables.items()}

    @property
    def audit_entries(self) -> int:
        """Audit entries it holds (sealed and committed intake)."""
        return len(self.tables.get(audit.name, ())) + len(self.tables.get(audit_intake.name, ()))

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)


class RestoreReport(msgspec.Struct, frozen=True, kw_only=True):
    schema_revision: str
    backup_created_at_ms: int
    restored: dict[str, int]
    digest: str


def tables_digest(tables: dict[str, list[dict[str, Any]]]) -> str:
    return sha256_hex(canonical_json(tables))



async def _revision(conn: AsyncConnection) -> str:
    row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
    if row is None:
        raise InvalidRequest(
            "the database has no schema revision; run `rspp cp migrate` first", field="db"
        )
    return str(row[0])


async def take_backup(store: Store, clock: Clock = wall_ms) -> Backup:
    """Read every artifact table in one consistent snapshot."""
    async with store.tx() as conn:
        if store.is_sqlite:
            # a write transaction: no other writer commits until the copy is read
            await conn.execute(update(counters).where(counters.c.name == "").values(value=0))
        else:
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        revision = await _revision(conn)
        tables: dict[str, list[dict[str, Any]]] = {}
        for table in ARTIFACTS:
            order = [table.c[name] for name in _ORDER[table.name]]
            rows = (await conn.execute(select(table).order_by(*order))).mappings().all()
            tables[table.name] = [dict(row) for row in rows]
    return Backup(
        format=FORMAT,
        schema_revision=revision,
        created_at_ms=clock(),
        tables=tables,
        digest=tables_digest(tables),
    )


def load_backup(data: bytes, *, source: str = "backup") -> Backup:
    """Decode and check a backup file (format, digest); errors name the file."""
    try:
        backup = msgspec.json.decode(data, type=Backup)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"{source} is not an rspp control-plane backup: {exc}",
                             field="from") from None
    if backup.format != FORMAT:
        raise InvalidRequest(
            f"{source} has format {backup.format!r}; this release reads {FORMAT!r}", field="from"
        )
    unknown = sorted(set(backup.tables) - {t.name for t in ARTIFACTS})
    if unknown:
        raise InvalidRequest(f"{source} holds unknown tables {unknown}", field="from")
    if tables_digest(backup.tables) != backup.digest:
        raise InvalidRequest(
            f"{source} is damaged: its tables do not match its digest {backup.digest[:12]}...; "
            "restore an intact copy", field="from")
    return backup


async def restore_backup(store: Store, backup: Backup, *, actor: str = "rspp-cp-restore",
                         clock: Clock = wall_ms) -> RestoreReport:
    """Write a backup's artifacts into an empty, migrated control-plane database.

    One transaction: either every artifact is restored or none is. The restore itself
    is appended to the audit chain (``controlplane.restore``) after the restored entries.
    """
    restored: dict[str, int] = {}
    async with store.tx() as conn:
        revision = await _revision(conn)
        if revision != backup.schema_revision:
            raise Conflict(
                f"the backup was taken at schema revision {backup.schema_revision}, the target "
                f"database is at {revision}; restore with the release that took the backup, "
                "then upgrade with `rspp cp migrate`", field="db")
        for table in ARTIFACTS:
            held = (await conn.execute(select(func.count()).select_from(table))).scalar()
            if held:
                raise Conflict(
                    f"the target database already holds {held} rows in {table.name}; restore "
                    "into an empty database (a new SQLite file or PostgreSQL schema)", field="db")
        for table in ARTIFACTS:
            rows = backup.tables.get(table.name, [])
            if table is audit_intake:
                rows = [{k: v for k, v in row.items() if k != "id"} for row in rows]
            if rows:
                await conn.execute(insert(table), rows)
            restored[table.name] = len(rows)
    log = AuditLog(store, clock)
    try:
        await log.append(
            actor=actor,
            action="controlplane.restore",
            subject=backup.digest,
            detail={"backup_created_at_ms": backup.created_at_ms, "restored": restored,
                    "schema_revision": backup.schema_revision},
        )
        await log.seal()
    finally:
        await log.close()
    return RestoreReport(
        schema_revision=backup.schema_revision,
        backup_created_at_ms=backup.created_at_ms,
        restored=restored,
        digest=backup.digest,
    )
