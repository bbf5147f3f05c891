"""Security matrix generated from the route table (F-114, F-115, NF-012).

Every route x {no key, viewer, operator, admin} x {own tenant, other tenant, fleet}
is called through the real ASGI app with a request that succeeds for a caller
allowed to make it; the expected status of each cell follows from the route's
declared role and scope alone. A route without a declared scope is refused when the
table is built, and a route without a request here fails this test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from rspp.controlplane import ControlPlane, ControlPlaneSettings, Role, create_app
from rspp.controlplane._kms import VaultSettings
from rspp.controlplane._routes import ROUTES, Op, Scope, TenantFrom, check_table
from rspp.controlplane._slo import SloConfig
from rspp.testing import VaultProcess

from .conftest import TRANSCRIBE_MODULE, spec_version

pytestmark = pytest.mark.integration

ADMIN = "matrix-admin"
OWN, OTHER = "acme", "globex"
ROLES = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
SCOPES = ("own", "other", "fleet")
_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass
class World:
    http: httpx.AsyncClient
    keys: dict[tuple[Role, str], str] = field(default_factory=dict)
    holder: str = ""
    epoch: int = 0
    #: the holder and epoch of a lease it released in a hand-off (a release is answered
    #: again with what the hand-off did)
    released: tuple[str, int] = ("", 0)
    token: str = ""
    #: change ids for the review routes (each cell consumes one) and one to read
    pending: list[str] = field(default_factory=list)
    approved: list[str] = field(default_factory=list)
    change: str = ""


Request = tuple[str, dict[str, Any] | None, dict[str, str] | None]
SESSION = "s-acme"
#: an Ed25519 public key (base64 of its 32 raw bytes) each permitted caller registers
SIGNER_KEY = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
# (method, path) -> the request (url, json, query) a permitted caller can repeat with success
EXAMPLES: dict[tuple[str, str], Callable[[World], Request]] = {
    ("GET", "/healthz"): lambda w: ("/healthz", None, None),
    ("POST", "/v1/pipelines"): lambda w: ("/v1/pipelines", {"spec": spec_version("1.0.0")}, None),
    ("GET", "/v1/pipelines"): lambda w: ("/v1/pipelines", None, None),
    ("GET", "/v1/pipelines/{name}"): lambda w: ("/v1/pipelines/voice-assistant", None, None),
    ("GET", "/v1/pipelines/{name}/versions/{version}"): lambda w: (
        "/v1/pipelines/voice-assistant/versions/1.0.0", None, None),
    ("GET", "/v1/pipelines/{name}/rollout"): lambda w: (
        "/v1/pipelines/voice-assistant/rollout", None, None),
    ("POST", "/v1/pipelines/{name}/rollout"): lambda w: (
        "/v1/pipelines/voice-assistant/rollout", {"canary": "1.1.0", "percent": 10}, None),
    ("POST", "/v1/pipelines/{name}/rollback"): lambda w: (
        "/v1/pipelines/voice-assistant/rollback", {"to": "1.0.0"}, None),
    ("GET", "/v1/pipelines/{name}/resolve"): lambda w: (
        "/v1/pipelines/voice-assistant/resolve", None, {"tenant_id": OWN}),
    ("POST", "/v1/modules"): lambda w: ("/v1/modules", {"module": TRANSCRIBE_MODULE}, None),
    ("GET", "/v1/modules/{name}/versions/{version}"): lambda w: (
        "/v1/modules/transcribe/versions/1.0.0", None, None),
    ("GET", "/v1/schemas"): lambda w: ("/v1/schemas", None, None),
    ("GET", "/v1/schemas/{schema_version}"): lambda w: ("/v1/schemas/v1.0", None, None),
    ("GET", "/v1/schemas/{schema_version}/{contract_kind}"): lambda w: (
        "/v1/schemas/v1.0/control_signal", None, None),
    ("POST", "/v1/configs/provider_config/{scope}"): lambda w: (
        f"/v1/configs/provider_config/{OWN}", {"body": {"stt": {"model": "small"}}}, None),
    ("POST", "/v1/configs/policy/{scope}"): lambda w: (
        f"/v1/configs/policy/{OWN}", {"body": {"providers": {"stt": "pocketsphinx"}}}, None),
    ("POST", "/v1/configs/admission/{scope}"): lambda w: (
        f"/v1/configs/admission/{OWN}", {"body": {"max_concurrent_sessions": 1000}}, None),
    ("GET", "/v1/configs/policy/{scope}"): lambda w: (f"/v1/configs/policy/{OWN}", None, None),
    ("GET", "/v1/configs/admission/{scope}"): lambda w: (
        f"/v1/configs/admission/{OWN}", None, None),
    ("POST", "/v1/configs/{kind}/{scope}/activate"): lambda w: (
        f"/v1/configs/provider_config/{OWN}/activate", {"version": 1}, None),
    ("GET", "/v1/configs/provider_config/{scope}"): lambda w: (
        f"/v1/configs/provider_config/{OWN}", None, None),
    ("POST", "/v1/runtimes"): lambda w: (
        "/v1/runtimes", {"runtime_id": "rt-a", "endpoint": "ws://a"}, None),
    ("GET", "/v1/runtimes"): lambda w: ("/v1/runtimes", None, None),
    ("POST", "/v1/runtimes/{runtime_id}/heartbeat"): lambda w: (
        "/v1/runtimes/rt-a/heartbeat", {"health": "healthy"}, None),
    ("POST", "/v1/runtimes/{runtime_id}/leases"): lambda w: (
        "/v1/runtimes/rt-a/leases", {"leases": [{"session_id": SESSION, "epoch": 1}]}, None),
    ("POST", "/v1/runtimes/{runtime_id}/notices"): lambda w: (
        "/v1/runtimes/rt-a/notices", {"known": [], "wait_ms": 0}, None),
    ("POST", "/v1/runtimes/{runtime_id}/failover"): lambda w: (
        "/v1/runtimes/rt-a/failover", {"mode": "drain"}, None),
    # deregistering is idempotent; a never-registered id keeps rt-a/rt-b for the other cells
    ("DELETE", "/v1/runtimes/{runtime_id}"): lambda w: ("/v1/runtimes/rt-gone", None, None),
    ("POST", "/v1/providers/{provider_id}/health"): lambda w: (
        "/v1/providers/stt-a/health", {"status": "healthy"}, None),
    ("GET", "/v1/providers/health"): lambda w: ("/v1/providers/health", None, None),
    ("POST", "/v1/sessions/route"): lambda w: (
        "/v1/sessions/route", {"tenant_id": OWN, "pipeline_name": "voice-assistant"}, None),
    ("GET", "/v1/sessions/{session_id}"): lambda w: (f"/v1/sessions/{SESSION}", None, None),
    ("POST", "/v1/sessions/{session_id}/status"): lambda w: (
        f"/v1/sessions/{SESSION}/status", {"status": "running"}, None),
    ("GET", "/v1/sessions/{session_id}/signals"): lambda w: (
        f"/v1/sessions/{SESSION}/signals", None, None),
    ("GET", "/v1/sessions/{session_id}/state"): lambda w: (
        f"/v1/sessions/{SESSION}/state", None, None),
    ("PUT", "/v1/sessions/{session_id}/state"): lambda w: (
        f"/v1/sessions/{SESSION}/state", {"runtime_id": w.holder, "lease_epoch": w.epoch,
                                          "document": {"hot": {}}}, None),
    ("PUT", "/v1/runtimes/{runtime_id}/states"): lambda w: (
        f"/v1/runtimes/{w.holder}/states", {"writes": [{
            "session_id": SESSION, "lease_epoch": w.epoch, "document": {"hot": {}}}]}, None),
    ("POST", "/v1/runtimes/{runtime_id}/bundles"): lambda w: (
        f"/v1/runtimes/{w.holder}/bundles", {"sessions": [{
            "tenant_id": OWN, "session_id": SESSION, "pipeline_name": "voice-assistant"}]},
        None),
    ("POST", "/v1/sessions/{session_id}/debug/authorize"): lambda w: (
        f"/v1/sessions/{SESSION}/debug/authorize", None, None),
    ("POST", "/v1/sessions/{session_id}/migrate"): lambda w: (
        "/v1/sessions/s-move/migrate", {}, None),
    ("POST", "/v1/sessions/{session_id}/start"): lambda w: (
        f"/v1/sessions/{SESSION}/start", {"runtime_id": w.holder, "tenant_id": OWN,
                                          "lease_epoch": w.epoch}, None),
    ("POST", "/v1/sessions/{session_id}/token"): lambda w: (
        f"/v1/sessions/{SESSION}/token", {"tenant_id": OWN}, None),
    ("POST", "/v1/tokens/verify"): lambda w: ("/v1/tokens/verify", {"token": w.token}, None),
    ("GET", "/v1/tokens/keys"): lambda w: ("/v1/tokens/keys", None, None),
    ("POST", "/v1/tokens/keys/rotate"): lambda w: ("/v1/tokens/keys/rotate",
                                                   {"reason": "route matrix"}, None),
    ("GET", "/v1/tokens/keys/status"): lambda w: ("/v1/tokens/keys/status", None, None),
    ("GET", "/v1/kms/keys"): lambda w: ("/v1/kms/keys", None, None),
    ("POST", "/v1/kms/keys/rotate"): lambda w: ("/v1/kms/keys/rotate",
                                                {"reason": "route matrix"}, None),
    ("POST", "/v1/kms/keys/rewrap"): lambda w: ("/v1/kms/keys/rewrap", {}, None),
    ("PUT", "/v1/regions/{region}/incident"): lambda w: (
        "/v1/regions/eu-west/incident", {"reason": "route matrix"}, None),
    ("DELETE", "/v1/regions/{region}/incident"): lambda w: (
        "/v1/regions/eu-west/incident", None, None),
    ("GET", "/v1/regions"): lambda w: ("/v1/regions", None, None),
    ("GET", "/v1/slo"): lambda w: ("/v1/slo", None, None),
    ("GET", "/v1/tenants/{tenant_id}/outcomes"): lambda w: (
        f"/v1/tenants/{OWN}/outcomes", None, None),
    ("PUT", "/v1/tenants/{tenant_id}/placement"): lambda w: (
        f"/v1/tenants/{OWN}/placement", {"failover_mode": "drain"}, None),
    ("GET", "/v1/tenants/{tenant_id}/placement"): lambda w: (
        f"/v1/tenants/{OWN}/placement", None, None),
    ("DELETE", "/v1/tenants/{tenant_id}/placement"): lambda w: (
        f"/v1/tenants/{OWN}/placement", None, None),
    ("POST", "/v1/leases/{session_id}/acquire"): lambda w: (
        f"/v1/leases/{SESSION}/acquire", {"holder": w.holder}, None),
    ("POST", "/v1/leases/{session_id}/renew"): lambda w: (
        f"/v1/leases/{SESSION}/renew", {"holder": w.holder, "epoch": w.epoch}, None),
    ("POST", "/v1/leases/{session_id}/rotate"): lambda w: (
        "/v1/leases/s-move/rotate", None, None),
    ("POST", "/v1/leases/{session_id}/revoke"): lambda w: (
        "/v1/leases/s-move/revoke", None, None),
    ("POST", "/v1/leases/{session_id}/authorize"): lambda w: (
        f"/v1/leases/{SESSION}/authorize", {"holder": w.holder, "epoch": w.epoch}, None),
    ("POST", "/v1/leases/{session_id}/release"): lambda w: (
        "/v1/leases/s-rel/release", {"holder": w.released[0], "epoch": w.released[1]}, None),
    ("GET", "/v1/sessions/{session_id}/summary"): lambda w: (
        "/v1/sessions/s-done/summary", None, None),
    ("GET", "/v1/bundle"): lambda w: ("/v1/bundle", None, {
        "tenant_id": OWN, "session_id": SESSION, "pipeline_name": "voice-assistant"}),
    ("GET", "/v1/audit"): lambda w: ("/v1/audit", None, {"tenant_id": OWN}),
    ("GET", "/v1/audit/verify"): lambda w: ("/v1/audit/verify", None, None),
    ("POST", "/v1/keys"): lambda w: ("/v1/keys", {"role": "viewer"}, None),
    ("GET", "/v1/pipelines/{name}/rollout/status"): lambda w: (
        "/v1/pipelines/voice-assistant/rollout/status", None, None),
    ("POST", "/v1/gates/samples"): lambda w: ("/v1/gates/samples", {
        "runtime_id": "rt-a", "samples": [{
            "pipeline_name": "voice-assistant", "pipeline_version": "1.0.0", "tenant_id": OWN,
            "sample": {"session_id": "s-1", "turn_id": "t-1", "first_output_ms": 10}}]}, None),
    ("GET", "/metrics"): lambda w: ("/metrics", None, None),
    ("POST", "/v1/changes"): lambda w: ("/v1/changes", {
        "action": "rollback", "pipeline_name": "voice-assistant", "rollback_to": "1.0.0"},
        None),
    ("GET", "/v1/changes"): lambda w: ("/v1/changes", None, {"status": "pending"}),
    ("GET", "/v1/changes/{change_id}"): lambda w: (f"/v1/changes/{w.change}", None, None),
    ("POST", "/v1/changes/{change_id}/approve"): lambda w: (
        f"/v1/changes/{w.pending.pop()}/approve", {"note": "ok"}, None),
    ("POST", "/v1/changes/{change_id}/reject"): lambda w: (
        f"/v1/changes/{w.pending.pop()}/reject", {"note": "no"}, None),
    ("POST", "/v1/changes/{change_id}/apply"): lambda w: (
        f"/v1/changes/{w.approved.pop()}/apply", None, None),
    ("POST", "/v1/signer-keys"): lambda w: ("/v1/signer-keys", {"public_key": SIGNER_KEY}, None),
    ("GET", "/v1/signer-keys"): lambda w: ("/v1/signer-keys", None, None),
    ("GET", "/v1/change-provenance"): lambda w: (
        "/v1/change-provenance", None, {"target": "pipeline:voice-assistant"}),
}


def expected(op: Op, role: Role | None, scope: str | None) -> set[int]:
    """The status a cell must answer, from the route's declared role and scope only."""
    ok = {op.status, *op.also}
    if op.role is None:
        return ok
    if role is None:
        return {401}
    if _RANK[role] < _RANK[op.role]:
        return {403}
    if op.scope == Scope.FLEET and scope != "fleet":
        return {403}
    if op.scope == Scope.TENANT and scope == "other":
        return {403}
    return ok


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def vault(tmp_path: Any) -> Iterator[VaultProcess]:
    """Session state is sealed under a KMS key (the /v1/kms routes act on it; F-169)."""
    with VaultProcess(tmp_path, keys={"rspp-state": "aes256-gcm96"}) as v:
        yield v


@pytest.fixture
async def world(tmp_path: Any, vault: VaultProcess) -> AsyncIterator[World]:
    # the runtimes registered here heartbeat once: they stay healthy for the whole matrix
    # however long a loaded machine takes (a migration needs a healthy target)
    settings = ControlPlaneSettings(db_url=f"sqlite+aiosqlite:///{tmp_path / 'm.db'}",
                                    admin_key=ADMIN, heartbeat_timeout_ms=3_600_000,
                                    token_key_dir=str(tmp_path / "keys"),
                                    slo=SloConfig(objective_percent=99.9),
                                    state_key_ref="vault-transit:rspp-state",
                                    vault=VaultSettings(addr=vault.addr, token=vault.token))
    cp = await ControlPlane.open(settings)
    transport = httpx.ASGITransport(app=create_app(cp))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as http:
        w = World(http=http)

        async def admin(method: str, url: str, body: Any = None) -> Any:
            response = await http.request(method, url, json=body, headers=_h(ADMIN))
            assert response.status_code < 300, (url, response.text)
            return response.json()

        for version in ("1.0.0", "1.1.0"):
            await admin("POST", "/v1/pipelines", {"spec": spec_version(version)})
        await admin("POST", "/v1/modules", {"module": TRANSCRIBE_MODULE})
        reviewer = (await admin("POST", "/v1/keys", {"role": "operator"}))["key"]
        await admin("POST", f"/v1/configs/provider_config/{OWN}", {"body": {"stt": {"model": "x"}}})
        activate = {"action": "config.activate", "config_kind": "provider_config",
                    "config_scope": OWN, "config_version": 1}
        for n in range(30):  # 10 cells each: approve, reject, and apply (approved first)
            cid = (await admin("POST", "/v1/changes", activate))["change_id"]
            if n < 20:
                w.pending.append(cid)
                continue
            response = await http.post(f"/v1/changes/{cid}/approve", json={},
                                       headers=_h(reviewer))
            assert response.status_code == 200, response.text
            w.approved.append(cid)
        w.change = w.pending[0]
        for rt in ("rt-a", "rt-b"):
            await admin("POST", "/v1/runtimes", {"runtime_id": rt, "endpoint": f"ws://{rt}"})
        for sid in (SESSION, "s-move", "s-done", "s-rel"):
            routed = await admin("POST", "/v1/sessions/route", {
                "tenant_id": OWN, "pipeline_name": "voice-assistant", "session_id": sid})
        await admin("POST", "/v1/sessions/s-done/status", {"status": "ended", "summary": {
            "session_id": "s-done", "tenant_id": OWN, "turns": 2, "llm_tokens": 40,
            "stt_audio_seconds": 3.5, "tts_characters": 120, "estimated_cost_usd": 0.01,
            "cap_enforcements": 0, "by_provider": {}}})
        w.released = await _released(http, admin, "s-rel")
        routed = await admin("GET", f"/v1/sessions/{SESSION}")
        w.holder, w.epoch = routed["runtime_id"], routed["lease_epoch"]
        w.token = (await admin("POST", f"/v1/sessions/{SESSION}/token", {"tenant_id": OWN}))[
            "token"]
        for role in ROLES:
            for scope, tenant in (("own", OWN), ("other", OTHER), ("fleet", None)):
                made = await admin("POST", "/v1/keys", {"role": role.value, "tenant_id": tenant})
                w.keys[(role, scope)] = made["key"]
        yield w
    await cp.close()


async def _released(http: httpx.AsyncClient, admin: Callable[..., Awaitable[Any]],
                    sid: str) -> tuple[str, int]:
    """``sid``'s holder takes its lease up, an operator rotates it (a two-phase hand-off)
    and the holder releases it: the (holder, epoch) it released."""
    routed = await admin("GET", f"/v1/sessions/{sid}")
    held = {"holder": routed["runtime_id"], "epoch": routed["lease_epoch"]}
    await admin("POST", f"/v1/leases/{sid}/acquire", {"holder": held["holder"]})
    rotating = asyncio.create_task(http.post(f"/v1/leases/{sid}/rotate", headers=_h(ADMIN)))
    while True:  # the hand-off is recorded once the holder's renewal is refused
        renewal = await http.post(f"/v1/leases/{sid}/renew", json=held, headers=_h(ADMIN))
        if renewal.status_code == 409:
            assert renewal.json()["error"]["code"] == "lease_handoff", renewal.text
            break
        await asyncio.sleep(0.01)
    await admin("POST", f"/v1/leases/{sid}/release", held)
    assert (await rotating).status_code == 200
    return held["holder"], held["epoch"]


# what the security review requires of the table (a weakened declaration fails here)
MUST_BE_FLEET = {
    ("POST", "/v1/pipelines"),
    ("POST", "/v1/pipelines/{name}/rollout"),
    ("POST", "/v1/pipelines/{name}/rollback"),
    ("POST", "/v1/modules"),
    ("POST", "/v1/configs/policy/{scope}"),
    ("POST", "/v1/configs/admission/{scope}"),
    ("POST", "/v1/configs/provider_config/{scope}"),
    ("POST", "/v1/configs/{kind}/{scope}/activate"),
    ("POST", "/v1/runtimes"),
    ("GET", "/v1/runtimes"),
    ("POST", "/v1/runtimes/{runtime_id}/heartbeat"),
    ("POST", "/v1/runtimes/{runtime_id}/leases"),
    ("POST", "/v1/runtimes/{runtime_id}/notices"),
    ("PUT", "/v1/runtimes/{runtime_id}/states"),
    ("POST", "/v1/runtimes/{runtime_id}/bundles"),
    ("POST", "/v1/runtimes/{runtime_id}/failover"),
    ("POST", "/v1/providers/{provider_id}/health"),
    ("POST", "/v1/sessions/{session_id}/migrate"),
    ("DELETE", "/v1/runtimes/{runtime_id}"),
    ("POST", "/v1/leases/{session_id}/rotate"),
    ("POST", "/v1/leases/{session_id}/revoke"),
    ("GET", "/v1/audit/verify"),
    ("POST", "/v1/keys"),
    ("POST", "/v1/tokens/keys/rotate"),
    ("GET", "/v1/tokens/keys/status"),
    ("PUT", "/v1/regions/{region}/incident"),
    ("DELETE", "/v1/regions/{region}/incident"),
    ("GET", "/v1/regions"),
    ("PUT", "/v1/tenants/{tenant_id}/placement"),
    ("DELETE", "/v1/tenants/{tenant_id}/placement"),
    ("GET", "/v1/slo"),
    ("POST", "/v1/changes"),
    ("POST", "/v1/changes/{change_id}/approve"),
    ("POST", "/v1/changes/{change_id}/reject"),
    ("POST", "/v1/changes/{change_id}/apply"),
    ("POST", "/v1/kms/keys/rotate"),
    ("POST", "/v1/kms/keys/rewrap"),
}
MUST_BE_TENANT = {
    ("POST", "/v1/sessions/route"),
    ("GET", "/v1/sessions/{session_id}"),
    ("GET", "/v1/sessions/{session_id}/state"),
    ("PUT", "/v1/sessions/{session_id}/state"),
    ("POST", "/v1/leases/{session_id}/acquire"),
    ("POST", "/v1/leases/{session_id}/renew"),
    ("POST", "/v1/leases/{session_id}/authorize"),
    ("POST", "/v1/leases/{session_id}/release"),
    ("GET", "/v1/tenants/{tenant_id}/outcomes"),
    ("GET", "/v1/tenants/{tenant_id}/placement"),
    ("GET", "/v1/configs/policy/{scope}"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/sessions/{session_id}/summary"),
}


def test_every_route_declares_scope_and_has_a_matrix_request() -> None:
    by_scope = {(op.method, op.path): op.scope for op in ROUTES}
    assert {by_scope[k] for k in MUST_BE_FLEET} == {Scope.FLEET}
    assert {by_scope[k] for k in MUST_BE_TENANT} == {Scope.TENANT}
    declared = {(op.method, op.path) for op in ROUTES}
    assert declared == set(EXAMPLES), (
        "every route needs a request in EXAMPLES (and nothing else may be there): "
        f"missing {sorted(declared - set(EXAMPLES))}, stale {sorted(set(EXAMPLES) - declared)}"
    )
    undeclared = Op("POST", "/v1/x/{session_id}", ROUTES[1].handler, Role.OPERATOR,
                    Scope.TENANT, "no tenant source")
    with pytest.raises(ValueError, match="names where its tenant comes from"):
        check_table((*ROUTES, undeclared))
    public_with_role = Op("GET", "/v1/y", ROUTES[0].handler, Role.VIEWER, Scope.PUBLIC, "x")
    with pytest.raises(ValueError, match="only public routes have no role"):
        check_table((public_with_role,))
    stray = Op("GET", "/v1/z", ROUTES[0].handler, Role.VIEWER, Scope.FLEET, "x",
               tenant=TenantFrom("path", "z"))
    with pytest.raises(ValueError, match="tenant"):
        check_table((stray,))


async def test_route_matrix_role_by_tenant_scope_f114_nf012(world: World) -> None:
    cells: list[tuple[Role | None, str | None]] = [(None, None)]
    cells += [(role, scope) for role in ROLES for scope in SCOPES]
    wrong: list[str] = []
    checked = 0
    for op in ROUTES:
        for role, scope in cells:
            url, body, query = EXAMPLES[(op.method, op.path)](world)
            headers = _h(world.keys[(role, scope)]) if role is not None and scope else {}
            response = await world.http.request(
                op.method, url, json=body, params=query, headers=headers
            )
            checked += 1
            want = expected(op, role, scope)
            if response.status_code not in want:
                wrong.append(
                    f"{op.method} {op.path} {role} {scope}: {response.status_code} "
                    f"(want {sorted(want)}) {response.text[:200]}"
                )
            elif response.status_code >= 400:
                error = response.json()["error"]
                assert error["field"] in {"authorization", "tenant_id", "scope", "token"}, error
    assert checked == len(ROUTES) * 10
    assert not wrong, "\n".join(wrong)


async def test_audit_view_follows_the_key_tenant(world: World) -> None:
    """Left unfiltered, a tenant key reads its own tenant's entries and a fleet key all."""

    async def read(role: Role, scope: str, query: dict[str, str] | None = None) -> Any:
        response = await world.http.get("/v1/audit", params=query,
                                        headers=_h(world.keys[(role, scope)]))
        return response.status_code, response.json()

    denied = await world.http.post("/v1/sessions/route", headers=_h(world.keys[(Role.VIEWER,
                                   "own")]), json={"tenant_id": OWN, "pipeline_name": "x"})
    assert denied.status_code == 403  # audited as the key's tenant's entry
    status, fleet = await read(Role.VIEWER, "fleet")
    assert status == 200
    entries = fleet["entries"]
    assert {e["tenant_id"] for e in entries} == {None, OWN, OTHER}
    for scope, tenant in (("own", OWN), ("other", OTHER)):
        status, mine = await read(Role.VIEWER, scope)
        assert status == 200
        assert mine["entries"] == [e for e in entries if e["tenant_id"] == tenant]
    status, own = await read(Role.VIEWER, "own")
    assert {"lease.issued", "provider_config.publish", "key.create", "rbac.denied"} <= {
        e["action"] for e in own["entries"]}
    status, other = await read(Role.VIEWER, "other", {"tenant_id": OWN})
    assert status == 403 and other["error"]["field"] == "tenant_id"
    verify = await world.http.get("/v1/audit/verify", headers=_h(world.keys[(Role.VIEWER,
                                                                             "fleet")]))
    assert verify.status_code == 200 and verify.json()["ok"]
    assert verify.json()["checked"] == len(entries)
