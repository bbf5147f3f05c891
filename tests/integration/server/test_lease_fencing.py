"""A runtime's lease keeper against the real control-plane app on PostgreSQL (issue 17).

Fencing: a session copy whose lease moved away must never send again. When the session
moves away and later back to the same runtime (epoch e -> e+1 elsewhere -> e+2 here),
the old copy's next renewal is refused; epoch e+2 names this runtime, but it was issued
for a *new* copy of the session (restored from its checkpoint), so the old copy loses
the session: its gate closes for good instead of reopening under e+2 (it used to follow
that epoch as if it were a rotation in place, and its outputs went out on its old
connection next to the new copy's). A rotation in place (the very next epoch, same
holder) is still followed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from rspp.controlplane import ControlPlane, ControlPlaneClient, ControlPlaneSettings, create_app
from rspp.server._lease import LeaseKeeper, LeaseRenewer

pytestmark = pytest.mark.integration

ADMIN = "admin-key-for-lease-fencing"
VOICE = (Path(__file__).resolve().parents[3] / "pipelines" / "examples"
         / "voice_assistant.yaml").read_text()
TTL_MS = 30_000  # the keeper's own bound stays valid: only the control plane's answer counts


async def _schema(pg_url: str, statement: str) -> None:
    engine = create_async_engine(pg_url)
    async with engine.begin() as conn:
        await conn.execute(text(statement))
    await engine.dispose()


@pytest.fixture
async def client(pg_url: str) -> AsyncIterator[ControlPlaneClient]:
    schema = "t_" + secrets.token_hex(6)  # a fresh schema of the test database
    await _schema(pg_url, f"CREATE SCHEMA {schema}")
    plane = await ControlPlane.open(ControlPlaneSettings(db_url=pg_url, db_schema=schema,
                                                         admin_key=ADMIN))
    try:
        async with ControlPlaneClient("http://cp", ADMIN, transport=httpx.ASGITransport(
                app=create_app(plane))) as c:
            await c.publish(VOICE, "voice_assistant.yaml")
            for rid in ("rt-a", "rt-b"):
                await c.register_runtime(rid, f"ws://{rid}")
                await c.heartbeat(rid, health="healthy", load=0)
            yield c
    finally:
        await plane.close()
        await _schema(pg_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


class _Changes:
    """What a keeper told its session (``on_change``), awaitable."""

    def __init__(self) -> None:
        self.seen: list[tuple[int | None, str]] = []
        self.event = asyncio.Event()

    def __call__(self, epoch: int | None, reason: str) -> None:
        self.seen.append((epoch, reason))
        self.event.set()

    async def next(self) -> tuple[int | None, str]:
        await asyncio.wait_for(self.event.wait(), 30)
        self.event.clear()
        return self.seen[-1]


async def _keeper(client: ControlPlaneClient, sid: str, holder: str,
                  changes: _Changes) -> LeaseKeeper:
    keeper = LeaseKeeper(client, sid, holder, ttl_ms=TTL_MS, on_change=changes,
                         renew_ms=50, renewer=LeaseRenewer(client, holder))
    await keeper.acquire()
    return keeper


async def test_a_copy_whose_session_moved_away_and_back_loses_it(
        client: ControlPlaneClient) -> None:
    route = await client.route("acme", "voice-assistant")
    sid, here = route["session_id"], route["runtime_id"]
    other = "rt-b" if here == "rt-a" else "rt-a"
    changes = _Changes()
    old = await _keeper(client, sid, here, changes)
    assert old.epoch == 1 and old.output_gate() is True
    # the session moves away and back while the old copy has not renewed yet (forced: the
    # old copy does not answer a hand-off here; fencing by epoch is what is tested)
    assert (await client.migrate(sid, other, force=True)).epoch == 2
    assert (await client.migrate(sid, here, force=True)).epoch == 3
    task = asyncio.create_task(old.run())
    try:
        assert await changes.next() == (None, "lease_moved")
        assert old.output_gate() is None  # nothing of the old copy may leave any more
        assert old.epoch == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # the control plane's lease is the new copy's, untouched by the old one
    fresh = _Changes()
    new = await _keeper(client, sid, here, fresh)
    assert new.epoch == 3 and new.output_gate() is True


async def test_a_rotation_in_place_is_still_followed(client: ControlPlaneClient) -> None:
    route = await client.route("acme", "voice-assistant")
    sid, here = route["session_id"], route["runtime_id"]
    changes = _Changes()
    keeper = await _keeper(client, sid, here, changes)
    task = asyncio.create_task(keeper.run())
    try:
        # the keeper is told of the hand-off at its next renewal and releases the lease
        assert (await client.rotate_lease(sid)).epoch == 2
        assert await changes.next() == (2, "lease_rotated")
        assert keeper.released == 1
        assert keeper.epoch == 2 and keeper.output_gate() is True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
