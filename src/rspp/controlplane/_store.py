"""Database access: async engine for SQLite or PostgreSQL and Alembic migrations in code."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event, insert, make_url, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from rspp.controlplane._errors import InvalidRequest, Unavailable
from rspp.controlplane._schema import counters

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def default_sqlite_url(path: str | Path = "rspp-controlplane.db") -> str:
    return f"sqlite+aiosqlite:///{Path(path).resolve()}"


def _sqlite_wal(dbapi_connection: Any, _record: object) -> None:
    """Write-ahead logging on every SQLite connection: readers never block a writer's
    commit. In the default rollback journal a reader holding its read lock (a request
    cancelled mid-read whose statement was not yet reset) made every write wait out the
    30 s busy timeout and fail ``database is locked``; an in-memory database keeps its
    ``memory`` journal."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def normalise_url(url: str) -> str:
    """Accept plain ``sqlite:///`` / ``postgresql://`` URLs and pick the async drivers.

    A value without ``://`` is a path to a SQLite file (``--db ./cp.db``).
    """
    if url and "://" not in url:
        return default_sqlite_url(url)
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return url
    raise InvalidRequest(
        f"unsupported database URL {url!r}; use sqlite:///PATH or postgresql://USER@HOST/DB",
        field="db",
    )


def _shown_url(url: str) -> str:
    """The URL without its password."""
    return make_url(url).render_as_string(hide_password=True)


def _check_sqlite_dir(url: str) -> None:
    """A SQLite file's directory must exist (aiosqlite leaves a thread behind otherwise)."""
    database = make_url(url).database
    if database and database != ":memory:" and not Path(database).parent.is_dir():
        raise Unavailable(
            f"cannot open the database {url}: directory {Path(database).parent} does not exist",
            field="db",
        )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _upgrade(sync_conn: Connection) -> None:
    # imported here: a process that never migrates (a runtime with a remote control plane,
    # a CLI client) skips Alembic's ~0.2 s CPU import
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


class Store:
    """Owns the engine; every service runs its statements through :meth:`tx`.

    SQLite serialises writers itself; a process-local lock keeps aiosqlite
    connections from tripping over ``database is locked`` under bursts.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        #: told about every transaction of :meth:`tx` once it ended (committed or not)
        self.on_finish: list[Callable[[AsyncConnection, bool], None]] = []

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None, migrate: bool = True) -> Store:
        url = normalise_url(url)
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            _check_sqlite_dir(url)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # at most 30 connections: a burst queues on the pool rather than exhausting a
            # PostgreSQL shared with other services (max_connections is often 100)
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 20
            if schema is not None:
                kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
        engine = create_async_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(engine.sync_engine, "connect", _sqlite_wal)
        store = cls(engine)
        if migrate:
            try:
                await store.migrate()
            except (OSError, SQLAlchemyError) as exc:
                # release the pool's connections (and aiosqlite's worker thread) while the
                # loop still runs, then report one line naming the database
                await engine.dispose()
                raise Unavailable(
                    f"cannot open the database {_shown_url(url)}: {_first_line(exc)}",
                    field="db",
                ) from None
        return store

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; committed on success, rolled back on error."""
        conn: AsyncConnection | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self._write_lock is not None:
                    await stack.enter_async_context(self._write_lock)
                conn = await stack.enter_async_context(self.engine.begin())
                yield conn
        except BaseException:
            self._finished(conn, False)
            raise
        self._finished(conn, True)

    def _finished(self, conn: AsyncConnection | None, committed: bool) -> None:
        if conn is not None:
            for hook in self.on_finish:
                hook(conn, committed)

    async def lock(self, conn: AsyncConnection, key: str) -> None:
        """Serialise writers of one scope (``config:policy:acme``) until the transaction ends.

        PostgreSQL: a transaction-scoped advisory lock on the key's hash, so concurrent
        writers of one scope queue instead of losing a compare-and-swap; writers of
        other scopes proceed. SQLite: its writers are already serialised.
        """
        if not self.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})

    async def next_counter(self, conn: AsyncConnection, name: str) -> int:
        """Atomically increment and return a named counter (starts at 1)."""
        result = await conn.execute(
            update(counters)
            .where(counters.c.name == name)
            .values(value=counters.c.value + 1)
            .returning(counters.c.value)
        )
        row = result.first()
        if row is not None:
            return int(row[0])
        await conn.execute(insert(counters).values(name=name, value=1))
        return 1

    async def read_counter(self, conn: AsyncConnection, name: str) -> int:
        value = (
            await conn.execute(select(counters.c.value).where(counters.c.name == name))
        ).scalar()
        return int(value or 0)
