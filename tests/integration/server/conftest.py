"""The rig these modules share: a real control plane (SQLite) behind its real HTTP app,
reached over in-process ASGI transports (``rspp serve``'s embedded path), and runtimes
started against it; everything is stopped and closed at teardown (runtimes, then
clients, then control planes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from rspp.controlplane import ControlPlane, ControlPlaneClient, ControlPlaneSettings, create_app
from rspp.server import LinkOptions, Runtime, RuntimeOptions, SessionPolicy


class PlaneRig:
    """Opens control planes and clients and starts runtimes; :meth:`aclose` ends them all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._planes: list[ControlPlane] = []
        self._clients: list[ControlPlaneClient] = []
        self._runtimes: list[Runtime] = []

    async def plane(self, admin_key: str, **settings: Any) -> ControlPlane:
        """A control plane on a fresh SQLite file with ``admin_key``."""
        db = self.directory / f"cp{len(self._planes)}.db"
        cp = await ControlPlane.open(ControlPlaneSettings(
            db_url=f"sqlite+aiosqlite:///{db}", admin_key=admin_key, **settings))
        self._planes.append(cp)
        return cp

    def client(self, target: ControlPlane | ASGIApp, key: str) -> ControlPlaneClient:
        """A client of ``target`` (a control plane's own app, or an app wrapping it)."""
        app = create_app(target) if isinstance(target, ControlPlane) else target
        client = ControlPlaneClient("http://cp", key, transport=httpx.ASGITransport(app=app))
        self._clients.append(client)
        return client

    async def runtime(self, client: ControlPlaneClient, sessions: SessionPolicy,
                      runtime_id: str = "rt-a", heartbeat_interval_s: float = 30) -> Runtime:
        """A started runtime ``runtime_id`` (capacity 4) linked through ``client``."""
        runtime = Runtime(client, RuntimeOptions(
            link=LinkOptions(runtime_id=runtime_id, endpoint="ws://127.0.0.1:1", capacity=4,
                             heartbeat_interval_s=heartbeat_interval_s),
            sessions=sessions))
        await runtime.start()
        self._runtimes.append(runtime)
        return runtime

    async def aclose(self) -> None:
        for runtime in reversed(self._runtimes):
            await runtime.drain()
            await runtime.stop()
        for client in reversed(self._clients):
            await client.aclose()
        for cp in reversed(self._planes):
            await cp.close()


@pytest.fixture
async def plane_rig(tmp_path: Path) -> AsyncIterator[PlaneRig]:
    opened = PlaneRig(tmp_path)
    try:
        yield opened
    finally:
        await opened.aclose()
