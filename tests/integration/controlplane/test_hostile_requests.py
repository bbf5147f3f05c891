"""Hostile and careless requests get a 4xx naming the field, the same on SQLite and
PostgreSQL, never a 500 or a traceback; authentication comes before the body."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from rspp.controlplane import ControlPlane, create_app

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture
async def http(make_cp: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    cp: ControlPlane = await make_cp(max_body_bytes=256 * 1024, max_spec_bytes=32 * 1024)
    transport = httpx.ASGITransport(app=create_app(cp))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
        yield client
    await cp.close()


async def _state(http: httpx.AsyncClient) -> tuple[int, int, int]:
    audit = (await http.get("/v1/audit", headers=ADMIN)).json()["entries"]
    runtimes = (await http.get("/v1/runtimes", headers=ADMIN)).json()["runtimes"]
    pipelines = (await http.get("/v1/pipelines", headers=ADMIN)).json()["pipelines"]
    return len(audit), len(runtimes), len(pipelines)


def _runtime(**fields: Any) -> dict[str, Any]:
    return {"runtime_id": "rt-1", "endpoint": "ws://127.0.0.1:1/ws", **fields}


# (name, method, url, raw body or JSON, expected status, expected error field)
CASES: list[tuple[str, str, str, bytes | dict[str, Any], int, str]] = [
    ("malformed json", "POST", "/v1/runtimes", b'{"runtime_id": ', 400, "body"),
    ("invalid utf-8", "POST", "/v1/runtimes", b'{"runtime_id": "\xff\xfe"}', 400, "body"),
    ("deep nesting", "POST", "/v1/configs/provider_config/acme",
     b'{"body": {"p": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}}", 422, "body[...][...]"),
    ("deep nesting at the top", "POST", "/v1/runtimes", b"[" * 100_000 + b"]" * 100_000, 422,
     "body"),
    ("int beyond 64 bits in a document", "POST", "/v1/configs/provider_config/acme",
     {"body": {"p": {"n": 2**80}}}, 422, "body[...][...]"),
    ("int beyond a column", "POST", "/v1/runtimes", _runtime(capacity=2**70), 422, "capacity"),
    ("negative count", "POST", "/v1/runtimes", _runtime(capacity=-1), 422, "capacity"),
    ("10k-char name", "POST", "/v1/runtimes", _runtime(runtime_id="r" * 10_000), 422,
     "runtime_id"),
    ("NUL in a name", "POST", "/v1/runtimes", _runtime(runtime_id="rt\x00x"), 422, "runtime_id"),
    ("NUL in a document", "POST", "/v1/configs/provider_config/acme",
     {"body": {"p": {"k": "a\x00b"}}}, 422, "body[...][...]"),
    ("NUL in a policy", "POST", "/v1/configs/policy/acme",
     {"body": {"providers": {"stt": "a\x00"}}}, 422, "body.providers[...]"),
    ("NUL in a spec", "POST", "/v1/pipelines", {"spec": "name: a\x00\nversion: 1"}, 422, "spec"),
    ("unknown field", "POST", "/v1/runtimes", _runtime(colour="red"), 422, "colour"),
    ("wrong type", "POST", "/v1/runtimes", _runtime(capacity="lots"), 422, "capacity"),
    ("bad path param", "GET", "/v1/sessions/" + "s" * 300, b"", 422, "session_id"),
    ("NUL in path param", "GET", "/v1/sessions/a%00b", b"", 422, "session_id"),
    ("bad query", "GET", "/v1/audit?limit=99999999999999999999999", b"", 422, "limit"),
    ("unknown query", "GET", "/v1/audit?colour=red", b"", 422, "colour"),
    ("null for an optional integer", "GET", "/v1/sessions/s1/state?lease_epoch=null", b"",
     422, "lease_epoch"),
    ("body over the limit", "POST", "/v1/runtimes",
     _runtime(region="r" * 300_000), 413, "body"),
    ("5000-deep yaml spec", "POST", "/v1/pipelines",
     {"spec": "name: x\nversion: 1.0.0\nmetadata:\n"
      + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(5000))}, 413, "body"),
    ("deep flow yaml spec", "POST", "/v1/pipelines",
     {"spec": "name: x\nversion: 1.0.0\nmetadata: " + "[" * 5000 + "]" * 5000}, 422, "spec"),
    ("deep yaml within the size limit", "POST", "/v1/pipelines",
     {"spec": "name: x\nversion: 1.0.0\nmetadata:\n"
      + "".join(" " * (i + 1) + "k:\n" for i in range(200))}, 422, "spec"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_bad_input_is_a_4xx_naming_the_field_on_both_stores(
    http: httpx.AsyncClient,
    case: tuple[str, str, str, bytes | dict[str, Any], int, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _name, method, url, body, status, field = case
    before = await _state(http)
    caplog.set_level(logging.INFO, logger="rspp.controlplane.http")
    caplog.clear()
    content = body if isinstance(body, bytes) else None
    payload = body if isinstance(body, dict) else None
    response = await http.request(
        method, url, content=content or None, json=payload,
        headers={**ADMIN, "x-request-id": "req-42"},
    )
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert error["field"] == field, error
    assert response.headers["x-request-id"] == "req-42"
    records = [r for r in caplog.records if r.name == "rspp.controlplane.http"]
    assert len(records) == 1 and "request_id=req-42" in records[0].getMessage()
    assert records[0].exc_info is None and records[0].levelno == logging.INFO
    assert await _state(http) == before


async def test_no_key_is_401_before_the_body_is_read(http: httpx.AsyncClient) -> None:
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for i in range(1_000):
            pulled.append(i)
            yield b"x" * 65_536

    response = await http.post("/v1/pipelines", content=endless())
    assert response.status_code == 401 and response.json()["error"]["field"] == "authorization"
    assert pulled == []
    declared = await http.post(
        "/v1/runtimes", content=endless(), headers={**ADMIN, "content-length": "99999999"}
    )
    assert declared.status_code == 413 and pulled == []


async def test_undeclared_method_is_405_with_allow(http: httpx.AsyncClient) -> None:
    for method, url, allow in (
        ("DELETE", "/v1/pipelines", "GET, POST"),
        ("PUT", "/v1/sessions/s-1", "GET"),
        ("PATCH", "/v1/keys", "POST"),
        ("HEAD", "/v1/audit", "GET"),
    ):
        response = await http.request(method, url, headers=ADMIN)
        assert response.status_code == 405, (method, url)
        assert response.headers["allow"] == allow
