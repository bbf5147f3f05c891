"""Fixtures shared by the runtime-server integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from rspp.controlplane import ControlPlane, ControlPlaneSettings


@pytest.fixture
async def open_cp(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[ControlPlane]]]:
    """``await open_cp(admin_key)``: a real control plane on a SQLite file of the test's
    own; closed at teardown."""
    planes: list[ControlPlane] = []

    async def open_one(admin_key: str) -> ControlPlane:
        plane = await ControlPlane.open(ControlPlaneSettings(
            db_url=f"sqlite+aiosqlite:///{tmp_path / f'cp{len(planes)}.db'}",
            admin_key=admin_key))
        planes.append(plane)
        return plane

    yield open_one
    for plane in planes:
        await plane.close()
