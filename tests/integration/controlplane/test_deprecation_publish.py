"""F-163: the control plane judges deprecated spec fields on its own day at publish: a
warning phase publishes, the enforcement phase refuses naming the field, its dates and
the migration (SQLite and PostgreSQL, through the ASGI app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from rspp.controlplane import ControlPlane, create_app

from .conftest import FakeClock, spec_version

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer admin-secret"}
DAY_MS = 86_400_000


def _with_vad_policy(version: str) -> str:
    text = spec_version(version)
    assert "endpointing: silence" in text
    return text.replace("endpointing: silence", "policy: silence")


async def test_publish_warns_then_enforces_a_deprecated_param(
    make_cp: Callable[..., Any], clock: FakeClock,
) -> None:
    cp: ControlPlane = await make_cp()
    try:
        transport = httpx.ASGITransport(app=create_app(cp))
        async with httpx.AsyncClient(transport=transport, base_url="http://cp",
                                     headers=ADMIN) as http:
            # 2027-01-15: the warning phase (deprecated since 2026-11-28): it publishes
            warned = await http.post("/v1/pipelines", json={"spec": _with_vad_policy("1.0.0")})
            assert warned.status_code == 201, warned.text
            clock.advance(140 * DAY_MS)  # 2027-06-04: past the enforcement date
            refused = await http.post("/v1/pipelines", json={"spec": _with_vad_policy("1.0.1")})
            assert refused.status_code == 422, refused.text
            error = refused.json()["error"]
            assert error["field"] == "nodes[0].params.policy"
            assert "refused since 2027-06-01" in error["message"]
            assert "params.endpointing" in error["message"]
            # the migrated spec publishes
            migrated = await http.post("/v1/pipelines", json={"spec": spec_version("1.0.1")})
            assert migrated.status_code == 201, migrated.text
    finally:
        await cp.close()
