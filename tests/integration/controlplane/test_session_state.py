"""Session state checkpoints over HTTP (F-155): lease-fenced, versioned, size-limited, deny by
default (GET/PUT /v1/sessions/{id}/state on a real uvicorn server, SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rspp.controlplane import ControlPlaneClient, ControlPlaneServer, ControlPlaneSettings
from rspp.controlplane._session_state import MAX_STATE_BYTES

from .conftest import spec_version

pytestmark = pytest.mark.integration

ADMIN = "state-admin-key"


@pytest.fixture
def server(store_url: tuple[str, str | None]) -> Iterator[ControlPlaneServer]:
    url, schema = store_url
    settings = ControlPlaneSettings(db_url=url, db_schema=schema, admin_key=ADMIN)
    with ControlPlaneServer(settings) as srv:
        yield srv


def _key(url: str, role: str, tenant: str | None = None) -> str:
    resp = httpx.post(f"{url}/v1/keys", json={"role": role, "tenant_id": tenant},
                      headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 201, resp.text
    key: str = resp.json()["key"]
    return key


def _put(url: str, sid: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.put(f"{url}/v1/sessions/{sid}/state", json=body,
                     headers={"Authorization": f"Bearer {key}"})


def _get(url: str, sid: str, key: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{url}/v1/sessions/{sid}/state", params=params, headers=headers)


def _write(runtime: str, epoch: int, version: int, doc: dict[str, Any]) -> dict[str, Any]:
    return {"runtime_id": runtime, "lease_epoch": epoch, "expected_version": version,
            "document": doc}


async def _sessions(url: str, n: int) -> list[tuple[str, str]]:
    """``n`` routed sessions over runtimes rt-a and rt-b, each lease taken by its runtime
    at epoch 1: (session id, runtime id)."""
    out = []
    async with ControlPlaneClient(url, ADMIN) as client:
        await client.request("POST", "/v1/pipelines", json={"spec": spec_version("1.0.0")})
        for rid in ("rt-a", "rt-b"):
            await client.register_runtime(rid, f"ws://{rid}")
            await client.heartbeat(rid, health="healthy", load=0)
        for _ in range(n):
            route = await client.route("acme", "voice-assistant")
            out.append((route["session_id"], route["runtime_id"]))
            lease = await client.acquire_lease(out[-1][0], out[-1][1], ttl_ms=30_000)
            assert lease.epoch == 1
    return out


def _error(resp: httpx.Response) -> tuple[int, str, str | None]:
    err = resp.json()["error"]
    return resp.status_code, err["code"], err["field"]


async def test_only_the_lease_holder_writes_and_a_failed_over_holder_is_fenced(
    server: ControlPlaneServer, tmp_path: Path
) -> None:
    url = server.url
    [(sid, first)] = await _sessions(url, 1)
    other = "rt-b" if first == "rt-a" else "rt-a"
    operator = _key(url, "operator")
    empty = _get(url, sid, operator)
    assert empty.status_code == 200 and empty.json()["version"] == 0
    assert empty.json()["document"] == {}
    doc = {"schema": "rspp.session_state/v1", "hot": {"llm/history": [["user", "hi"]]}}
    saved = _put(url, sid, operator, _write(first, 1, 0, doc))
    assert saved.status_code == 200 and saved.json() == {"session_id": sid, "version": 1}
    got = _get(url, sid, operator).json()
    assert got["document"] == doc and got["holder"] == first and got["lease_epoch"] == 1
    # a write whose answer the holder never read: its retry is not refused
    assert _put(url, sid, operator, _write(first, 1, 0, doc)).json()["version"] == 2
    # fenced: only the holder at its current epoch writes
    assert _error(_put(url, sid, operator, _write(other, 1, 1, doc))) == (
        409, "stale_epoch", "lease_epoch")
    assert _error(_put(url, sid, operator, _write(first, 2, 1, doc))) == (
        409, "stale_epoch", "lease_epoch")
    # the session moves (epoch 2 at the other runtime)
    async with ControlPlaneClient(url, ADMIN) as client:
        moved = await client.migrate(sid, other)
        assert moved.to_runtime == other and moved.epoch == 2
    # until the new holder takes the state over, the old one's last checkpoint still counts
    last = {"schema": "rspp.session_state/v1", "session": {"last_closed_turn": "t1"}}
    late = _put(url, sid, operator, _write(first, 1, 2, last))
    assert late.status_code == 200 and late.json()["version"] == 3
    assert _error(_put(url, sid, operator, _write("rt-x", 1, 3, last)))[1] == "stale_epoch"
    # the new holder loads it, naming itself and its epoch: the state is taken over
    assert _error(_get(url, sid, operator, runtime_id=first, lease_epoch="1")) == (
        409, "stale_epoch", "lease_epoch")
    half = _get(url, sid, operator, runtime_id=other)
    assert _error(half) == (422, "invalid", "lease_epoch")
    taken = _get(url, sid, operator, runtime_id=other, lease_epoch="2")
    assert taken.status_code == 200, taken.text
    assert taken.json()["document"] == last and taken.json()["taken_epoch"] == 2
    # from now on the old holder (a paused runtime waking up) can no longer write
    stale = _put(url, sid, operator, _write(first, 1, 3, {"hot": {"zombie": True}}))
    assert _error(stale) == (409, "stale_epoch", "lease_epoch")
    assert "took the state over" in stale.json()["error"]["message"]
    assert _get(url, sid, operator).json()["document"] == last
    # versioned: a write against a version another writer moved on from is refused
    assert _error(_put(url, sid, operator, _write(other, 2, 1, {"hot": {}}))) == (
        409, "stale_state", "expected_version")
    ok = _put(url, sid, operator, _write(other, 2, 3, {"hot": {"turns": 2}}))
    assert ok.status_code == 200 and ok.json()["version"] == 4
    assert _get(url, sid, operator).json()["holder"] == other


async def test_state_routes_deny_by_default_and_refuse_bad_input_with_the_field(
    server: ControlPlaneServer,
) -> None:
    url = server.url
    async with ControlPlaneClient(url, ADMIN) as client:
        await client.request("POST", "/v1/pipelines", json={"spec": spec_version("1.0.0")})
        await client.register_runtime("rt-a", "ws://rt-a")
        await client.heartbeat("rt-a", health="healthy", load=0)
        sid = (await client.route("acme", "voice-assistant"))["session_id"]
        await client.acquire_lease(sid, "rt-a", ttl_ms=30_000)
    body = _write("rt-a", 1, 0, {"hot": {}})
    assert _error(_get(url, sid, None)) == (401, "unauthorized", "authorization")
    viewer, mine, theirs = _key(url, "viewer"), _key(url, "operator", "acme"), \
        _key(url, "operator", "globex")
    # conversation history is not for viewers, nor for another tenant's keys
    assert _get(url, sid, viewer).status_code == 403
    assert _put(url, sid, viewer, body).status_code == 403
    assert _get(url, sid, theirs).status_code == 403
    assert _put(url, sid, theirs, body).status_code == 403
    assert _put(url, sid, mine, body).status_code == 200
    assert _get(url, sid, mine).json()["version"] == 1
    assert _error(_get(url, "s-nobody", mine))[0] == 404
    too_big = _write("rt-a", 1, 1, {"hot": {"blob": "x" * MAX_STATE_BYTES}})
    assert _error(_put(url, sid, mine, too_big)) == (413, "too_large", "document")
    assert _put(url, sid, mine, {**body, "colour": "red"}).status_code == 422
    # without expected_version the holder overwrites (still fenced by its lease)
    overwrite = {k: v for k, v in body.items() if k != "expected_version"}
    assert _put(url, sid, mine, overwrite).json() == {"session_id": sid, "version": 2}
    assert _error(_put(url, sid, mine, {**body, "lease_epoch": 0}))[2] == "lease_epoch"
    assert _error(_put(url, sid, mine, {**body, "document": [1]}))[2] == "document"


def _batch(url: str, runtime: str, key: str, writes: list[dict[str, Any]]) -> httpx.Response:
    return httpx.put(f"{url}/v1/runtimes/{runtime}/states", json={"writes": writes},
                     headers={"Authorization": f"Bearer {key}"})


async def test_a_runtime_saves_many_checkpoints_in_one_request_each_fenced_and_versioned(
    server: ControlPlaneServer,
) -> None:
    """PUT /v1/runtimes/{id}/states: the writes of one runtime's sessions together; each
    is checked exactly like PUT /v1/sessions/{id}/state and a refused one leaves the
    others saved."""
    url = server.url
    sids = await _sessions(url, 6)
    mine = [sid for sid, rid in sids if rid == "rt-a"]
    theirs = [sid for sid, rid in sids if rid == "rt-b"]
    assert len(mine) == len(theirs) == 3  # placement spreads six routes over both runtimes
    fleet = _key(url, "operator")
    doc = {"schema": "rspp.session_state/v1", "hot": {"llm/history": [["user", "hi"]]}}

    def w(sid: str, epoch: int, version: int | None, d: dict[str, Any]) -> dict[str, Any]:
        return {"session_id": sid, "lease_epoch": epoch, "expected_version": version,
                "document": d}

    first = _batch(url, "rt-a", fleet, [w(sid, 1, 0, doc) for sid in mine])
    assert first.status_code == 200, first.text
    assert first.json()["results"] == [{"session_id": sid, "version": 1, "code": None,
                                        "message": None} for sid in sorted(mine)]
    # one batch, four verdicts: saved; a session rt-a does not hold; a stale version; too big
    big = {"hot": {"blob": "x" * MAX_STATE_BYTES}}
    second = _batch(url, "rt-a", fleet, [w(mine[0], 1, 1, {"hot": {"turns": 1}}),
                                          w(theirs[0], 1, 0, doc), w(mine[1], 1, 5, doc),
                                          w(mine[2], 1, 1, big)])
    got = {r["session_id"]: (r["version"], r["code"]) for r in second.json()["results"]}
    assert got == {mine[0]: (2, None), theirs[0]: (None, "stale_epoch"),
                   mine[1]: (None, "stale_state"), mine[2]: (None, "too_large")}
    assert _get(url, mine[2], fleet).json()["version"] == 1  # left as it was
    assert _get(url, mine[0], fleet).json()["document"] == {"hot": {"turns": 1}}
    assert _get(url, theirs[0], fleet).json()["version"] == 0  # nothing written for rt-b's
    # a session named twice keeps its last write
    twice = _batch(url, "rt-a", fleet, [w(mine[0], 1, 2, {"hot": {"n": 1}}),
                                         w(mine[0], 1, 2, {"hot": {"n": 2}})])
    assert twice.json()["results"] == [{"session_id": mine[0], "version": 3, "code": None,
                                        "message": None}]
    assert _get(url, mine[0], fleet).json()["document"] == {"hot": {"n": 2}}
    # the session moves to rt-b, which takes the state over: rt-a's batch is fenced out
    async with ControlPlaneClient(url, ADMIN) as client:
        moved = await client.migrate(mine[0], "rt-b")
        assert moved.epoch == 2
    assert _get(url, mine[0], fleet, runtime_id="rt-b", lease_epoch="2").status_code == 200
    zombie = _batch(url, "rt-a", fleet, [w(mine[0], 1, 3, {"hot": {"zombie": True}})])
    assert zombie.json()["results"][0]["code"] == "stale_epoch"
    assert "took the state over" in zombie.json()["results"][0]["message"]
    assert _get(url, mine[0], fleet).json()["document"] == {"hot": {"n": 2}}
    # fleet work: a tenant's key is refused, as is a malformed batch
    assert _batch(url, "rt-a", _key(url, "operator", "acme"), [w(mine[1], 1, 1, doc)]
                  ).status_code == 403
    assert _error(_batch(url, "rt-a", fleet, [])) == (422, "invalid", "writes")
    assert _error(_batch(url, "rt-a", fleet, [{**w(mine[1], 1, 1, doc), "x": 1}]))[0] == 422
