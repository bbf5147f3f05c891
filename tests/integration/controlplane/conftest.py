"""Control-plane fixtures: a ControlPlane on SQLite (temp file) and on real PostgreSQL.

Each PostgreSQL test gets a fresh schema (``CREATE SCHEMA t_<random>``) reached
through ``search_path``, so parallel runs and reruns never collide; it is dropped
afterwards.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from rspp.controlplane import ControlPlane, ControlPlaneSettings, Principal, Role, create_app

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


ADMIN_HEADERS = {"Authorization": "Bearer admin-secret"}


class ChangeApi:
    """A control plane's HTTP API through its ASGI app, as the change tests call it
    (admin key ``admin-secret``)."""

    def __init__(self, http: httpx.AsyncClient, cp: ControlPlane) -> None:
        self.http, self.cp = http, cp

    async def call(self, method: str, url: str, key: dict[str, str], body: Any = None,
                   *, want: int = 200, params: dict[str, str] | None = None) -> Any:
        """The JSON answer; fails the test unless the status is ``want``."""
        response = await self.http.request(method, url, json=body, headers=key, params=params)
        assert response.status_code == want, (url, response.text)
        return response.json()

    async def key(self, role: str) -> dict[str, str]:
        """The headers of a new API key with ``role``."""
        made = await self.call("POST", "/v1/keys", ADMIN_HEADERS, {"role": role}, want=201)
        return {"Authorization": f"Bearer {made['key']}"}

    async def audit(self, action: str) -> list[dict[str, Any]]:
        entries = (await self.call("GET", "/v1/audit", ADMIN_HEADERS))["entries"]
        return [e for e in entries if e["action"] == action]


@pytest.fixture
def change_api(
    make_cp: Callable[..., Any],
) -> Callable[..., AbstractAsyncContextManager[ChangeApi]]:
    """``async with change_api(**settings) as api``: a :class:`ChangeApi` on a control plane
    with ``settings`` (the same store each time), voice-assistant 1.0.0 and 1.1.0 published
    unless ``publish=False``; closed on exit."""

    @asynccontextmanager
    async def open_api(*, publish: bool = True, **settings: Any) -> AsyncIterator[ChangeApi]:
        plane: ControlPlane = await make_cp(**settings)
        try:
            transport = httpx.ASGITransport(app=create_app(plane))
            async with httpx.AsyncClient(transport=transport, base_url="http://cp") as http:
                api = ChangeApi(http, plane)
                for version in ("1.0.0", "1.1.0") if publish else ():
                    await api.call("POST", "/v1/pipelines", ADMIN_HEADERS,
                                   {"spec": spec_version(version)}, want=201)
                yield api
        finally:
            await plane.close()

    return open_api
