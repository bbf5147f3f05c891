"""Control-plane fixtures: a ControlPlane on SQLite (temp file) and on real PostgreSQL.

Each PostgreSQL test gets a fresh schema (``CREATE SCHEMA t_<random>``) reached
through ``search_path``, so parallel runs and reruns never collide; it is dropped
afterwards.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from rspp.controlplane import ControlPlane, ControlPlaneSettings, Principal, Role

REPO = Path(__file__).resolve().parents[3]
VOICE_SPEC = (REPO / "pipelines" / "examples" / "voice_assistant.yaml").read_text()
SHOWCASE_SPEC = (REPO / "pipelines" / "examples" / "showcase.yaml").read_text()
TRANSCRIBE_MODULE = (REPO / "pipelines" / "subgraphs" / "transcribe@1.0.0.yaml").read_text()

ADMIN = Principal(key_id="test-admin", role=Role.ADMIN)
OPERATOR = Principal(key_id="test-operator", role=Role.OPERATOR)
VIEWER = Principal(key_id="test-viewer", role=Role.VIEWER)


def spec_version(version: str, text: str = VOICE_SPEC, *, description: str | None = None) -> str:
    """The example spec re-versioned (and optionally re-described to change its hash)."""
    out = re.sub(r"(?m)^version: .*$", f"version: {version}", text, count=1)
    if description is not None:
        out = re.sub(r"(?m)^description: .*$", f"description: {description}", out, count=1)
    return out


class FakeClock:
    """A settable millisecond clock (starts at a realistic epoch time)."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


async def open_pg_schema(pg_url: str) -> str:
    schema = "t_" + secrets.token_hex(6)
    engine = create_async_engine(pg_url)
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    await engine.dispose()
    return schema


async def drop_pg_schema(pg_url: str, schema: str) -> None:
    engine = create_async_engine(pg_url)
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    await engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, str | None]]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}", None
        return
    pg_url: str = request.getfixturevalue("pg_url")
    schema = await open_pg_schema(pg_url)
    try:
        yield pg_url, schema
    finally:
        await drop_pg_schema(pg_url, schema)


@pytest.fixture
def make_cp(store_url: tuple[str, str | None], clock: FakeClock) -> Callable[..., object]:
    url, schema = store_url

    async def factory(**overrides: object) -> ControlPlane:
        settings = ControlPlaneSettings(
            db_url=url, db_schema=schema, admin_key="admin-secret", **overrides
        )  # type: ignore[arg-type]
        return await ControlPlane.open(settings, clock=clock)

    return factory


@pytest.fixture
async def cp(make_cp: Callable[..., object]) -> AsyncIterator[ControlPlane]:
    plane: ControlPlane = await make_cp()  # type: ignore[misc]
    try:
        yield plane
    finally:
        await plane.close()
