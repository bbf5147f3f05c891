"""200 concurrent clients against a real server on real PostgreSQL: config publishes
to one scope and rollouts of one pipeline all succeed, versions stay contiguous and the
audit chain verifies (writes to one scope are serialised per scope). Rollouts use
fewer clients (50) only to keep the suite's time on a loaded 2-core machine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from rspp.controlplane import ControlPlaneServer, ControlPlaneSettings

from .conftest import drop_pg_schema, open_pg_schema, spec_version

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer pg-admin"}
CLIENTS = 200
MOVERS = 50


@pytest.fixture
async def server(pg_url: str) -> AsyncIterator[ControlPlaneServer]:
    schema = await open_pg_schema(pg_url)
    settings = ControlPlaneSettings(db_url=pg_url, db_schema=schema, admin_key="pg-admin")
    srv = ControlPlaneServer(settings)
    await asyncio.to_thread(srv.start)
    try:
        yield srv
    finally:
        await asyncio.to_thread(srv.stop)
        await drop_pg_schema(pg_url, schema)


async def _together(url: str, requests: list[tuple[str, dict[str, object]]]) -> list[int]:
    """Each request from its own client connection, all released at once."""
    gate = asyncio.Event()

    async def one(path: str, body: dict[str, object]) -> int:
        async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=120) as client:
            await gate.wait()
            response = await client.post(path, json=body)
            assert response.status_code < 300, response.text
            return response.status_code

    tasks = [asyncio.create_task(one(path, body)) for path, body in requests]
    gate.set()
    return await asyncio.gather(*tasks)


async def test_200_concurrent_config_publishes_and_rollouts_on_postgresql(
    server: ControlPlaneServer,
) -> None:
    url = server.url
    publishes = [
        ("/v1/configs/provider_config/acme", {"body": {"p": {"client": i}}}) for i in range(CLIENTS)
    ]
    assert set(await _together(url, publishes)) == {201}
    async with httpx.AsyncClient(base_url=url, headers=ADMIN) as client:
        versions = (await client.get("/v1/configs/provider_config/acme")).json()["versions"]
        assert [v["version"] for v in versions] == list(range(1, CLIENTS + 1))
        assert sorted(v["body"]["p"]["client"] for v in versions) == list(range(CLIENTS))
        for version in ("1.0.0", "1.1.0", "1.2.0"):
            published = await client.post("/v1/pipelines", json={"spec": spec_version(version)})
            assert published.status_code == 201, published.text
        pinned = await client.post("/v1/pipelines/voice-assistant/rollback", json={"to": "1.0.0"})
        assert pinned.status_code == 200, pinned.text

    moves: list[tuple[str, dict[str, object]]] = []
    for i in range(MOVERS):
        if i % 4 == 3:
            moves.append(("/v1/pipelines/voice-assistant/rollback", {"to": "1.0.0"}))
        else:
            canary = "1.1.0" if i % 2 else "1.2.0"
            moves.append(
                ("/v1/pipelines/voice-assistant/rollout", {"canary": canary, "percent": i % 100})
            )
    assert set(await _together(url, moves)) == {200}

    async with httpx.AsyncClient(base_url=url, headers=ADMIN) as client:
        state = (await client.get("/v1/pipelines/voice-assistant/rollout")).json()["rollout"]
        # the pin created revision 1; each concurrent move added exactly one revision
        assert state["revision"] == MOVERS + 1 and state["stable_version"] == "1.0.0"
        verdict = (await client.get("/v1/audit/verify")).json()
        entries = (await client.get("/v1/audit?limit=1000")).json()["entries"]
    assert verdict["ok"] is True, verdict
    actions = [e["action"] for e in entries]
    assert actions.count("provider_config.publish") == CLIENTS
    assert actions.count("rollout.canary") + actions.count("rollout.rollback") == MOVERS + 1
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
