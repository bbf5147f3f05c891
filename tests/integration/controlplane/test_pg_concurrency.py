"""200 concurrent clients against a real server on real PostgreSQL: config publishes
to one scope and rollouts of one pipeline all succeed, versions stay contiguous and the
audit chain verifies (writes to one scope are serialised per scope). Rollouts use
fewer clients (50) only to keep the suite's time on a loaded 2-core machine.

Session routes of two tenants race too: admission stays exact per tenant (its quota is
never exceeded however many routes arrive at once), placement fills no runtime past its
capacity although no runtime heartbeats a load, every session gets lease epoch 1, and
the audit chain (appended without a global lock, linked by one sealer) verifies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from rspp.controlplane import ControlPlaneServer, ControlPlaneSettings

from .conftest import drop_pg_schema, open_pg_schema, spec_version

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer pg-admin"}
CLIENTS = 200
MOVERS = 50


@contextlib.asynccontextmanager
async def _serving(pg_url: str, **settings: int) -> AsyncIterator[ControlPlaneServer]:
    """A control plane server on a fresh schema (dropped afterwards)."""
    schema = await open_pg_schema(pg_url)
    srv = ControlPlaneServer(ControlPlaneSettings(db_url=pg_url, db_schema=schema,
                                                  admin_key="pg-admin", **settings))
    await asyncio.to_thread(srv.start)
    try:
        yield srv
    finally:
        await asyncio.to_thread(srv.stop)
        await drop_pg_schema(pg_url, schema)


@pytest.fixture
async def server(pg_url: str) -> AsyncIterator[ControlPlaneServer]:
    async with _serving(pg_url) as srv:
        yield srv


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


ROUTES = 120


@pytest.fixture
async def patient_server(pg_url: str) -> AsyncIterator[ControlPlaneServer]:
    """Runtimes stay healthy for 10 minutes after a heartbeat (a loaded machine may take
    long to answer 120 routes at once; health is not what is tested here)."""
    async with _serving(pg_url, heartbeat_timeout_ms=600_000) as srv:
        yield srv


async def test_concurrent_routes_keep_quotas_capacity_and_the_audit_chain(
    patient_server: ControlPlaneServer,
) -> None:
    url = patient_server.url
    async with httpx.AsyncClient(base_url=url, headers=ADMIN) as client:
        published = await client.post("/v1/pipelines", json={"spec": spec_version("1.0.0")})
        assert published.status_code == 201, published.text
        for rid in ("rt-a", "rt-b", "rt-c"):
            reg = await client.post("/v1/runtimes", json={
                "runtime_id": rid, "endpoint": f"ws://{rid}", "capacity": 35})
            assert reg.status_code == 201, reg.text
            beat = await client.post(f"/v1/runtimes/{rid}/heartbeat",
                                     json={"health": "healthy", "load": 0})  # nobody connects
            assert beat.status_code == 200, beat.text
        quota = await client.post("/v1/configs/admission/small",
                                  json={"body": {"max_concurrent_sessions": 20}})
        assert quota.status_code == 201, quota.text
    gate = asyncio.Event()

    async def route(tenant: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=120) as client:
            await gate.wait()
            body = {"tenant_id": tenant, "pipeline_name": "voice-assistant"}
            return await client.post("/v1/sessions/route", json=body)

    tenants = ["small" if i % 3 == 0 else "big" for i in range(ROUTES)]
    tasks = [asyncio.create_task(route(t)) for t in tenants]
    gate.set()
    replies = await asyncio.gather(*tasks)
    by_tenant: dict[str, list[int]] = {}
    for tenant, reply in zip(tenants, replies, strict=True):
        by_tenant.setdefault(tenant, []).append(reply.status_code)
    # small: exactly its quota admitted, the rest rejected
    assert by_tenant["small"].count(201) == 20 and by_tenant["small"].count(429) == 20
    assert set(by_tenant["big"]) == {201}  # 80 + 20 sessions fit the fleet's 105
    admitted = [r.json() for r in replies if r.status_code == 201]
    placed: dict[str, int] = {}
    for route_ in admitted:
        placed[route_["runtime_id"]] = placed.get(route_["runtime_id"], 0) + 1
        assert route_["lease_epoch"] == 1
    assert all(n <= 35 for n in placed.values()), placed
    async with httpx.AsyncClient(base_url=url, headers=ADMIN) as client:
        verdict = (await client.get("/v1/audit/verify")).json()
        entries = (await client.get("/v1/audit?limit=1000")).json()["entries"]
    assert verdict["ok"] is True, verdict
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    issued = [e for e in entries if e["action"] == "lease.issued"]
    assert sorted(e["subject"] for e in issued) == sorted(r["session_id"] for r in admitted)
