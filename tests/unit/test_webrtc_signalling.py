"""WebRTC signalling edges: the ICE-server lookup needs the session token, bad bodies are
refused before any peer connection exists, and ``--ice-server`` parses STUN/TURN servers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import typer
from starlette.applications import Starlette

from rspp.cli._serve import _ice_servers
from rspp.transports import (
    CLOSE_UNAUTHORIZED,
    IceServer,
    SessionGrant,
    SessionHub,
    TokenRefused,
    WebRTCOptions,
    webrtc_route,
)

pytestmark = pytest.mark.unit


class _NoSessions:
    async def open(self, *_: Any) -> Any:
        raise AssertionError("no session may open in these tests")


async def _verify(token: str, session_id: str) -> SessionGrant:
    if token != "good":
        raise TokenRefused("tampered token", CLOSE_UNAUTHORIZED)
    return SessionGrant(session_id="s1", tenant_id="acme")


def _client() -> httpx.AsyncClient:
    ice = (IceServer(urls=("stun:stun.example.org:3478",)),
           IceServer(urls=("turn:turn.example.org:3478",), username="u", credential="p"))
    app = Starlette(routes=[webrtc_route(SessionHub(_NoSessions()), _verify,
                                         options=WebRTCOptions(ice_servers=ice))])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h")


async def test_ice_servers_go_only_to_the_session_token_holder() -> None:
    async with _client() as c:
        assert (await c.get("/v1/sessions/s1/webrtc")).status_code == 401
        bad = await c.get("/v1/sessions/s1/webrtc", headers={"Authorization": "Bearer x"})
        assert bad.status_code == 401 and bad.json()["error"]["field"] == "token"
        other = await c.get("/v1/sessions/s2/webrtc?token=good")
        assert other.status_code == 403
        ok = await c.get("/v1/sessions/s1/webrtc", headers={"Authorization": "Bearer good"})
        assert ok.status_code == 200
        servers = ok.json()["ice_servers"]
        assert servers[1] == {"urls": ["turn:turn.example.org:3478"], "username": "u",
                              "credential": "p"}


async def test_bad_offers_are_refused_naming_the_field() -> None:
    async with _client() as c:
        auth = {"Authorization": "Bearer good"}
        big = await c.post("/v1/sessions/s1/webrtc", content=b"x" * 70_000, headers=auth)
        assert big.status_code == 413 and big.json()["error"]["field"] == "sdp"
        extra = await c.post("/v1/sessions/s1/webrtc", headers=auth,
                             json={"type": "offer", "sdp": "v=0", "codec": "opus"})
        assert extra.status_code == 400 and extra.json()["error"]["field"] == "codec"
        bad_id = await c.post("/v1/sessions/bad%20id/webrtc", headers=auth, json={})
        assert bad_id.status_code == 400 and bad_id.json()["error"]["field"] == "session_id"


def test_ice_server_option_parses_stun_and_turn() -> None:
    stun, turn = _ice_servers(["stun:stun.example.org:3478",
                               "turn:alice:s3cret@turn.example.org:3478?transport=udp"])
    assert stun == IceServer(urls=("stun:stun.example.org:3478",))
    assert turn == IceServer(urls=("turn:turn.example.org:3478?transport=udp",),
                             username="alice", credential="s3cret")
    for bad in ("stun.example.org", "http://x", "turn:turn.example.org:3478"):
        with pytest.raises(typer.BadParameter):
            _ice_servers([bad])
