"""A token long poll whose client went away stops waiting (issue 17, F-095).

The control-plane app is served by a real uvicorn server on loopback. A client asks for
its session's token naming where it had the session (``moved_from``) and how long it
will wait (``wait_ms`` 10 s): the session has not moved, so the control plane holds the
answer. The client then closes its connection; the server-side wait ends at once
instead of holding its waiter (and a re-read every 3 s) for the rest of the 10 s.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import uvicorn

from rspp.controlplane import ControlPlane, ControlPlaneClient, ControlPlaneSettings, create_app

pytestmark = pytest.mark.integration

ADMIN = "admin-key-for-token-wait"
VOICE = (Path(__file__).resolve().parents[3] / "pipelines" / "examples"
         / "voice_assistant.yaml").read_text()


async def _waiting(cp: ControlPlane, count: int) -> None:
    while cp.placements.waiting != count:  # noqa: ASYNC110 (the watch offers no event)
        await asyncio.sleep(0.01)


async def test_a_cancelled_token_long_poll_ends_its_wait(tmp_path: Path) -> None:
    cp = await ControlPlane.open(ControlPlaneSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}", admin_key=ADMIN))
    server = uvicorn.Server(uvicorn.Config(create_app(cp), host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with ControlPlaneClient("http://cp", ADMIN,
                                      transport=httpx.ASGITransport(app=create_app(cp))) as a:
            await a.publish(VOICE, "voice_assistant.yaml")
            await a.register_runtime("rt-a", "ws://rt-a")
            await a.heartbeat("rt-a", health="healthy", load=0)
            route = await a.route("acme", "voice-assistant")
        sid = route["session_id"]
        body = json.dumps({"tenant_id": "acme", "wait_ms": 10_000, "moved_from": {
            "runtime_id": route["runtime_id"], "lease_epoch": route["lease_epoch"]}})
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"POST /v1/sessions/{sid}/token HTTP/1.1\r\nHost: cp\r\n"
                      f"Authorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        await writer.drain()
        # the session has not moved: the control plane holds the answer
        await asyncio.wait_for(_waiting(cp, 1), 30)
        writer.close()
        await writer.wait_closed()
        # the client is gone: the wait ends long before its 10 s
        await asyncio.wait_for(_waiting(cp, 0), 6)
        assert await reader.read() == b""
    finally:
        server.should_exit = True
        await serving
        await cp.close()
