"""A caller cancelled mid-request (an in-process client at drain: ``rspp serve`` talks to its
embedded control plane through the ASGI app) never interrupts the operation's database
transaction: the control plane keeps answering and closes, and no aiosqlite worker thread
is left to keep the process from exiting."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

from rspp.controlplane import ControlPlane, ControlPlaneClient, ControlPlaneSettings, create_app

pytestmark = pytest.mark.integration

KEY = "cancel-test-admin-key-0123456789"


async def test_cancelled_heartbeats_leave_the_control_plane_answering_and_closable(
        tmp_path: Path) -> None:
    cp = await ControlPlane.open(ControlPlaneSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}", admin_key=KEY))
    client = ControlPlaneClient("http://cp", KEY, transport=httpx.ASGITransport(app=create_app(cp)))
    await client.register_runtime("rt-c", "ws://127.0.0.1:1", capacity=4, region="local")
    cancelled = 0
    # the cancellation sweeps the request, 0 to 10 ms after it started, so it lands inside
    # the database transaction (in aiosqlite's worker thread) many times; the outcome
    # asserted does not depend on where it landed
    for k in range(300):
        beat = asyncio.create_task(client.heartbeat("rt-c", health="healthy", load=0,
                                                    mode="migrate"))
        await asyncio.sleep((k % 40) * 0.00025)
        cancelled += beat.cancel()
        async with asyncio.timeout(60):
            await asyncio.gather(beat, return_exceptions=True)
    assert cancelled > 0
    async with asyncio.timeout(60):  # still answering: the heartbeats were recorded
        await client.heartbeat("rt-c", health="healthy", load=1, mode="migrate")
        runtimes = await client.request("GET", "/v1/runtimes")
        await client.aclose()
        await cp.close()
    assert [r["load"] for r in runtimes["runtimes"]] == [1]
    left = [t.name for t in threading.enumerate()
            if not t.daemon and t is not threading.main_thread()]
    assert left == [], left


async def test_a_reader_holding_its_read_lock_does_not_block_the_control_planes_writes(
        tmp_path: Path) -> None:
    """A read left open (a request cancelled mid-read before its statement was reset; here a
    second connection in a read transaction) holds SQLite's read lock: in the rollback
    journal every write then waited out the busy timeout and failed ``database is locked``
    (seen under load in the lease hand-off tests). With write-ahead logging it commits."""
    db = tmp_path / "cp.db"
    cp = await ControlPlane.open(ControlPlaneSettings(db_url=f"sqlite+aiosqlite:///{db}",
                                                      admin_key=KEY))
    client = ControlPlaneClient("http://cp", KEY, transport=httpx.ASGITransport(app=create_app(cp)))
    try:
        await client.register_runtime("rt-r", "ws://127.0.0.1:1", capacity=4, region="local")
        reader = sqlite3.connect(db, isolation_level=None)
        try:
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM cp_runtimes").fetchone() == (1,)
            async with asyncio.timeout(10):  # the busy timeout is 30 s: a blocked write fails here
                await client.heartbeat("rt-r", health="healthy", load=3, mode="migrate")
            assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            reader.close()
        runtimes = await client.request("GET", "/v1/runtimes")
        assert [r["load"] for r in runtimes["runtimes"]] == [3]
    finally:
        await client.aclose()
        await cp.close()
