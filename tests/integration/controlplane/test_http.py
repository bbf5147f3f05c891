"""HTTP API on a real uvicorn server: OpenAPI, JSON errors, RBAC, clients and bundles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from rspp.controlplane import (
    Conflict,
    ControlPlaneClient,
    ControlPlaneServer,
    ControlPlaneSettings,
    Forbidden,
    InProcessControlPlane,
    TokenKeys,
    Unavailable,
    openapi_document,
)
from rspp.controlplane._util import wall_ms

from .conftest import FakeClock, spec_version

pytestmark = pytest.mark.integration

ADMIN = "http-admin-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneServer]:
    db = Path(tmp_path_factory.mktemp("cp")) / "cp.db"
    settings = ControlPlaneSettings(
        db_url=f"sqlite+aiosqlite:///{db}", admin_key=ADMIN, token_keys=TokenKeys.hs256("h" * 40)
    )
    with ControlPlaneServer(settings) as srv:
        yield srv


def _key(server: ControlPlaneServer, role: str, tenant: str | None = None) -> str:
    response = httpx.post(
        f"{server.url}/v1/keys",
        json={"role": role, "tenant_id": tenant},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _routed(client: ControlPlaneClient, runtime_id: str, **route: Any) -> dict[str, Any]:
    """Publish the voice assistant, register ``runtime_id`` (``ws://<id>``), route a session."""
    await client.publish(spec_version("1.0.0"))
    await client.request("POST", "/v1/runtimes",
                         json={"runtime_id": runtime_id, "endpoint": f"ws://{runtime_id}"})
    routed: dict[str, Any] = await client.route("acme", "voice-assistant", **route)
    return routed


def test_openapi_lists_every_route_with_roles(server: ControlPlaneServer) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    assert doc == openapi_document() and doc["openapi"].startswith("3.")
    publish = doc["paths"]["/v1/pipelines"]["post"]
    assert publish["x-rspp-role"] == "operator" and publish["security"] == [{"bearer": []}]
    assert doc["paths"]["/v1/keys"]["post"]["x-rspp-role"] == "admin"
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    missing = httpx.get(f"{server.url}/v1/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.delete(f"{server.url}/v1/pipelines")
    assert wrong.status_code == 405 and "/openapi.json" in wrong.json()["error"]["message"]


def test_errors_are_json_with_code_message_field_and_rbac_least_privilege_nf012(
    server: ControlPlaneServer,
) -> None:
    url = server.url
    viewer, operator = _key(server, "viewer"), _key(server, "operator")
    unauth = httpx.get(f"{url}/v1/pipelines")
    assert unauth.status_code == 401
    assert unauth.json() == {
        "error": {
            "code": "unauthorized",
            "message": unauth.json()["error"]["message"],
            "field": "authorization",
        }
    }
    spec = {"spec": spec_version("1.0.0")}
    denied = httpx.post(f"{url}/v1/pipelines", json=spec, headers=_h(viewer))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert (
        httpx.post(f"{url}/v1/keys", json={"role": "admin"}, headers=_h(operator)).status_code
        == 403
    )
    ok = httpx.post(f"{url}/v1/pipelines", json=spec, headers=_h(operator))
    assert ok.status_code in (200, 201), ok.text
    assert httpx.get(f"{url}/v1/pipelines", headers=_h(viewer)).status_code == 200
    bad = httpx.post(
        f"{url}/v1/pipelines/voice-assistant/rollout",
        json={"canary": "1.0.0"},
        headers=_h(operator),
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "percent"
    extra = httpx.post(
        f"{url}/v1/keys", json={"role": "viewer", "colour": "red"}, headers=_h(ADMIN)
    )
    assert extra.status_code == 422 and "colour" in extra.json()["error"]["message"]
    bad_query = httpx.get(f"{url}/v1/audit?limit=lots", headers=_h(viewer))
    assert bad_query.status_code == 422 and bad_query.json()["error"]["field"] == "limit"
    audit = httpx.get(f"{url}/v1/audit", headers=_h(viewer)).json()["entries"]
    denials = [e for e in audit if e["action"] == "rbac.denied"]
    assert {d["subject"] for d in denials} >= {"POST /v1/pipelines", "POST /v1/keys"}


async def test_client_bundle_cache_staleness_and_in_process_parity(
    server: ControlPlaneServer, reference_schema: dict[str, Any]
) -> None:
    operator = _key(server, "operator")
    clock = FakeClock(wall_ms())
    async with ControlPlaneClient(
        server.url, operator, clock=clock, max_staleness_ms=60_000
    ) as client:
        await client.publish(spec_version("1.0.0"))
        await client.request(
            "POST", "/v1/runtimes", json={"runtime_id": "rt-h", "endpoint": "ws://h"}
        )
        route = await client.route("acme", "voice-assistant")
        args = {
            "tenant_id": "acme",
            "session_id": route["session_id"],
            "pipeline_name": "voice-assistant",
            "runtime_id": "rt-h",
        }
        first = await client.turn_start_bundle(**args)
        assert first.version_resolution is not None and first.routing_view is not None
        assert first.version_resolution.pipeline_version == "1.0.0"
        assert first.routing_view.endpoint == "ws://h" and first.admission_policy is not None
        assert first.abi_compatibility is not None and first.abi_compatibility.compatible
        again = await client.turn_start_bundle(**args)
        assert again is first and client.cache.hits == 1
        clock.advance(3 * server.settings.snapshot_ttl_ms)  # past the earliest snapshot expiry
        refreshed = await client.turn_start_bundle(**args)
        assert refreshed is not first and client.cache.misses == 2
        forced = await client.turn_start_bundle(**args, refresh=True)  # before a migration
        assert forced is not refreshed and client.cache.hits == 1
        verified = await client.request("POST", "/v1/tokens/verify", json={"token": route["token"]})
        assert verified["claims"]["session_id"] == route["session_id"]
        signals = await client.request("GET", f"/v1/sessions/{route['session_id']}/signals")
        for signal in signals["signals"]:
            jsonschema.validate(signal, reference_schema)
    assert server.control_plane is not None
    local = await InProcessControlPlane(server.control_plane).turn_start_bundle(**args)
    assert local.version_resolution is not None
    assert local.version_resolution.spec_hash == first.version_resolution.spec_hash
    # Tenant-scoped keys cannot read another tenant's bundle.
    scoped = _key(server, "viewer", tenant="globex")
    async with ControlPlaneClient(server.url, scoped) as other:
        with pytest.raises(Forbidden):
            await other.turn_start_bundle(**args)
    async with ControlPlaneClient("http://127.0.0.1:9", operator) as dead:
        with pytest.raises(Unavailable) as err:
            await dead.turn_start_bundle(**args)
    assert "unreachable" in err.value.message


async def test_transport_verifies_tokens_with_the_published_key_f088(
    server: ControlPlaneServer,
) -> None:
    """A transport fetches the verification key once and checks tokens locally."""
    from rspp.controlplane import TokenInvalid, TokenKeys, TokenVerifier

    operator = _key(server, "operator")
    async with ControlPlaneClient(server.url, operator) as client:
        route = await _routed(client, "rt-t", attributes={"language": "en"})
        keys = await client.request("GET", "/v1/tokens/keys")
    assert keys["algorithm"] == "HS256" and keys["public_pem"] is None  # HS256: shared secret
    verifier = TokenVerifier(TokenKeys.hs256("h" * 40))
    claims = verifier.verify(route["token"])
    assert (claims.tenant_id, claims.pipeline_version, claims.session_id) == (
        "acme",
        route["pipeline_version"],
        route["session_id"],
    )
    with pytest.raises(TokenInvalid):
        TokenVerifier(TokenKeys.hs256("x" * 40)).verify(route["token"])


async def test_runtime_side_client_operations(server: ControlPlaneServer) -> None:
    operator = _key(server, "operator")
    async with ControlPlaneClient(server.url, operator) as client:
        runtime = await client.register_runtime("rt-c", "ws://c", region="eu", capacity=3)
        assert runtime.runtime_id == "rt-c" and runtime.capacity == 3
        lease = await client.acquire_lease("client-sess", "rt-c", ttl_ms=10_000)
        assert lease.epoch == 1 and lease.holder == "rt-c"
        assert (await client.authorize_lease("client-sess", "rt-c", 1)).authorized
        assert (await client.renew_lease("client-sess", "rt-c", 1)).epoch == 1
        denied = await client.authorize_lease("client-sess", "rt-x", 1)
        assert not denied.authorized and denied.current_epoch == 1
        with pytest.raises(Conflict) as stolen:
            await client.acquire_lease("client-sess", "rt-x")
        assert stolen.value.status == 409 and stolen.value.field == "session_id"
        beat = await client.heartbeat("rt-c", health="degraded", load=1)
        assert beat["runtime"]["health"] == "degraded"


async def test_token_long_poll_fields_are_checked_and_a_moved_session_answers_at_once(
    server: ControlPlaneServer,
) -> None:
    operator = _key(server, "operator")
    async with ControlPlaneClient(server.url, operator) as client:
        route = await _routed(client, "rt-lp")
    url = f"{server.url}/v1/sessions/{route['session_id']}/token"
    async with httpx.AsyncClient(headers=_h(operator), timeout=30) as http:
        for body, field in (
            ({"tenant_id": "acme", "wait_ms": 500}, "wait_ms"),
            ({"tenant_id": "acme", "wait_ms": 10_001,
              "moved_from": {"runtime_id": "rt-lp", "lease_epoch": 1}}, "wait_ms"),
            ({"tenant_id": "acme", "wait_ms": 10,
              "moved_from": {"runtime_id": "rt-lp", "lease_epoch": 0}}, "moved_from.lease_epoch"),
        ):
            bad = await http.post(url, json=body)
            assert bad.status_code == 422, bad.text
            assert bad.json()["error"]["field"] == field, bad.text
        # the session is not where the caller last had it: the answer does not wait
        moved = await http.post(url, json={
            "tenant_id": "acme", "wait_ms": 10_000,
            "moved_from": {"runtime_id": route["runtime_id"], "lease_epoch": 7}})
        assert moved.status_code == 201, moved.text
        claims = moved.json()["claims"]
        assert (claims["runtime_id"], claims["lease_epoch"]) == (route["runtime_id"], 1)
        assert moved.json()["endpoint"] == "ws://rt-lp"
