"""Alembic migrations produce exactly the schema the code uses, on both stores."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from rspp.controlplane import ControlPlane
from rspp.controlplane._schema import metadata

pytestmark = pytest.mark.integration


def _diff(sync_conn: Connection) -> list[Any]:
    context = MigrationContext.configure(sync_conn)
    return list(compare_metadata(context, metadata))


def _tables(sync_conn: Connection) -> set[str]:
    return set(inspect(sync_conn).get_table_names())


async def test_migrated_schema_matches_metadata_and_is_idempotent(cp: ControlPlane) -> None:
    async with cp.store.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
        tables = await conn.run_sync(_tables)
    assert {t.name for t in metadata.sorted_tables} | {"alembic_version"} <= tables
    await cp.store.migrate()  # re-running at head is a no-op
    async with cp.store.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
