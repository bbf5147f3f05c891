"""``rspp cp backup | restore | drill``: disaster recovery of the control plane's artifacts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer

from rspp.cli._cp import cp_app

T = TypeVar("T")

_DB_HELP = "Database URL or SQLite file path (default: ./rspp-controlplane.db)."


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    from rspp.controlplane import CPError

    try:
        return asyncio.run(work())
    except CPError as exc:
        field = f" (field: {exc.field})" if exc.field else ""
        typer.echo(f"error: {exc.code}: {exc.message}{field}", err=True)
        raise typer.Exit(1) from None


async def _open(db: str | None, schema: str | None, *, migrate: bool) -> Any:
    from rspp.controlplane import Store, default_sqlite_url

    return await Store.open(db or default_sqlite_url(), schema=schema, migrate=migrate)


def _read_backup(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        typer.echo(f"error: cannot read the backup {path}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    return _run(lambda: _decoded(data, str(path)))


async def _decoded(data: bytes, source: str) -> Any:
    from rspp.controlplane._backup import load_backup

    return load_backup(data, source=source)


@cp_app.command("backup")
def backup(
    out: Path = typer.Option(..., "--out", help="Backup file to write (JSON)."),
    db: str = typer.Option(None, "--db", envvar="RSPP_DB", help=_DB_HELP),
    db_schema: str = typer.Option(None, "--db-schema", help="PostgreSQL schema."),
) -> None:
    """Copy the control plane's artifacts (pipelines, modules, rollouts, configs, keys,
    audit chain) in one consistent snapshot; safe while `rspp cp serve` runs."""
    from rspp.controlplane._backup import take_backup

    async def work() -> Any:
        store = await _open(db, db_schema, migrate=False)
        try:
            return await take_backup(store)
        finally:
            await store.close()

    taken = _run(work)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_bytes(taken.to_json())
        tmp.replace(out)  # a crash never leaves a half-written backup under the name
    except OSError as exc:
        typer.echo(f"error: cannot write the backup {out}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"backup": str(out), "created_at_ms": taken.created_at_ms,
                           "schema_revision": taken.schema_revision, "digest": taken.digest,
                           "rows": taken.counts}, sort_keys=True))


@cp_app.command("restore")
def restore(
    from_: Path = typer.Option(..., "--from", help="Backup file written by `rspp cp backup`."),
    db: str = typer.Option(None, "--db", envvar="RSPP_DB", help=_DB_HELP),
    db_schema: str = typer.Option(None, "--db-schema", help="PostgreSQL schema."),
) -> None:
    """Restore a backup into an empty control-plane database (created and migrated)."""
    from rspp.controlplane._backup import restore_backup

    loaded = _read_backup(from_)

    async def work() -> Any:
        store = await _open(db, db_schema, migrate=True)
        try:
            return await restore_backup(store, loaded)
        finally:
            await store.close()

    report = _run(work)
    typer.echo(json.dumps({"restored_from": str(from_), "schema_revision": report.schema_revision,
                           "backup_created_at_ms": report.backup_created_at_ms,
                           "rows": report.restored}, sort_keys=True))


@cp_app.command("drill")
def drill(
    scratch_db: str = typer.Option(
        ..., "--scratch-db", help="An empty database to restore into (SQLite path or URL)."),
    db: str = typer.Option(None, "--db", envvar="RSPP_DB", help="The source: " + _DB_HELP),
    db_schema: str = typer.Option(None, "--db-schema", help="PostgreSQL schema of the source."),
    scratch_schema: str = typer.Option(
        None, "--scratch-schema", help="PostgreSQL schema of the scratch database."),
    backup_file: Path = typer.Option(
        None, "--backup", help="Rehearse with this backup (default: take one now)."),
    rto_s: float = typer.Option(
        300.0, "--rto-s", min=0, help="Recovery time objective: restore to admission (s)."),
    rpo_s: float = typer.Option(
        900.0, "--rpo-s", min=0, help="Recovery point objective: data-loss window (s)."),
) -> None:
    """Rehearse a recovery: restore into a scratch database, route probe sessions, measure
    RTO and RPO against the objectives; exit 1 when one is missed."""
    from rspp.controlplane._drill import Objectives, run_drill

    loaded = _read_backup(backup_file) if backup_file is not None else None

    async def work() -> Any:
        source = await _open(db, db_schema, migrate=False)
        try:
            scratch = await _open(scratch_db, scratch_schema, migrate=True)
            try:
                return await run_drill(
                    source, scratch, Objectives(rto_s=rto_s, rpo_s=rpo_s), backup=loaded)
            finally:
                await scratch.close()
        finally:
            await source.close()

    import msgspec

    report = _run(work)
    typer.echo(msgspec.json.encode(report).decode())
    if not report.ok:
        missed = [what for what, met in (
            ("rto", report.rto_met), ("rpo", report.rpo_met),
            ("admission" if report.probes else "admission (no published pipeline to probe)",
             report.admission_resumed), ("audit chain", report.audit_chain_ok),
        ) if not met]
        typer.echo(f"error: drill failed: {', '.join(missed) or 'versions differ'} "
                   f"(rto {report.rto_s}s / {rto_s}s, rpo {report.rpo_s}s / {rpo_s}s, "
                   f"{report.lost_changes} changes lost)", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """The commands joined ``rspp cp`` when this module was imported (``cp_app``)."""
    del app
