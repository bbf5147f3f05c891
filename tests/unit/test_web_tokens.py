"""Who the page's endpoints serve: loopback clients of an embedded server, nobody else.

``/web/session`` issues session tokens and ``/web/pipelines`` lists pipelines only to a
request from a loopback address, without proxy headers, and from the server's own
origin; everything else is 403 with a JSON reason naming ``client``, before the body
is read. A server that is not embedded issues no tokens at all.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from rspp.controlplane._errors import NotFound
from rspp.web import WebOptions, web_routes

pytestmark = pytest.mark.unit


def _app(embedded: bool = True) -> tuple[Starlette, list[tuple[str, str]]]:
    routed: list[tuple[str, str]] = []

    async def route(tenant: str, pipeline: str) -> dict[str, Any]:
        if pipeline == "missing":
            raise NotFound("no pipeline missing", field="pipeline_name")
        routed.append((tenant, pipeline))
        return {"session_id": "s1", "token": "t1", "pipeline_name": pipeline,
                "pipeline_version": "1.0.0", "endpoint": "ws://x", "lease_epoch": 1}

    async def pipelines() -> dict[str, Any]:
        return {"pipelines": [{"name": "voice-assistant", "version": "1.0.0"}]}

    opts = WebOptions(route=route if embedded else None,
                      pipelines=pipelines if embedded else None)
    return Starlette(routes=web_routes(opts)), routed


async def _post(app: Starlette, host: str, body: bytes = b"{}", **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(host, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8800") as c:
        return await c.post("/web/session", content=body,
                            headers={"content-type": "application/json", **headers})


async def test_loopback_client_of_an_embedded_server_gets_a_session_token() -> None:
    app, routed = _app()
    resp = await _post(app, "127.0.0.1", b'{"pipeline_name": "voice-assistant"}',
                       origin="http://127.0.0.1:8800")
    assert resp.status_code == 201
    assert resp.json()["token"] == "t1" and "endpoint" not in resp.json()
    assert routed == [("local", "voice-assistant")]
    ipv6 = await _post(app, "::1")
    assert ipv6.status_code == 201


@pytest.mark.parametrize(("host", "headers", "why"), [
    ("10.1.2.3", {}, "not on this machine"),
    ("127.0.0.1", {"x-forwarded-for": "203.0.113.9"}, "proxy"),
    ("127.0.0.1", {"forwarded": "for=203.0.113.9"}, "proxy"),
    ("127.0.0.1", {"origin": "http://evil.example"}, "cross-origin"),
])
async def test_everyone_else_is_refused_before_the_body_is_read(
    host: str, headers: dict[str, str], why: str
) -> None:
    app, routed = _app()
    resp = await _post(app, host, b"not json at all", **headers)
    assert resp.status_code == 403
    err = resp.json()["error"]
    assert err["field"] == "client" and why in err["message"]
    assert routed == []


async def test_a_server_with_a_remote_control_plane_issues_no_tokens() -> None:
    app, _ = _app(embedded=False)
    resp = await _post(app, "127.0.0.1")
    assert resp.status_code == 403 and "embedded" in resp.json()["error"]["message"]
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8800") as c:
        config = (await c.get("/web/config")).json()
        assert config["tokens"] is False
        assert (await c.get("/web/pipelines")).status_code == 403


async def test_bad_session_requests_are_4xx_naming_the_field() -> None:
    app, _ = _app()
    unknown = await _post(app, "127.0.0.1", b'{"pipeline": 1}')
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "$"
    bad = await _post(app, "127.0.0.1", b'{"pipeline_name": 1}')
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "pipeline_name"
    big = await _post(app, "127.0.0.1", b"x" * 5000)
    assert big.status_code == 413
    missing = await _post(app, "127.0.0.1", b'{"pipeline_name": "missing"}')
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "pipeline_name"


async def test_page_and_static_files_are_served() -> None:
    app, _ = _app()
    transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://h") as c:
        page = await c.get("/")
        assert page.status_code == 200 and 'src="/web/static/app.js"' in page.text
        js = await c.get("/web/static/timeline.js")
        assert js.status_code == 200 and "export class Timeline" in js.text
        assert "http" not in (await c.get("/web/static/app.js")).text.split("fetch(")[0]
        assert (await c.get("/web/config")).json()["tokens"] is False  # not loopback
        assert (await c.get("/timelines")).status_code == 403
