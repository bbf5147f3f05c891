"""Session state sealed at rest under a Vault transit key, rotated online (F-169).

A real control plane (uvicorn, SQLite and PostgreSQL) with ``state_key_ref`` and the fake
Vault as its own process speaking the Transit HTTP API: checkpoints are stored sealed
(no plaintext in the row), rotation over ``POST /v1/kms/keys/rotate`` seals new writes
under the new version while old rows still open, rewrap moves old rows to the latest
version (then old versions can be retired in Vault), a Vault outage leaves cached data
keys working and answers 503 naming the reference for the rest, and a sealed document
moved to another session's row or a forged key version is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from rspp.controlplane import ControlPlaneClient, ControlPlaneServer, ControlPlaneSettings
from rspp.controlplane._kms import VaultSettings
from rspp.controlplane._schema import session_state
from rspp.controlplane._store import Store
from rspp.testing import VaultProcess

from .conftest import spec_version

pytestmark = pytest.mark.integration

ADMIN = "kms-admin-key"
REF = "vault-transit:rspp-state"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[VaultProcess]:
    with VaultProcess(tmp_path, keys={"rspp-state": "aes256-gcm96"}) as v:
        yield v


def _settings(store_url: tuple[str, str | None], vault: VaultProcess) -> ControlPlaneSettings:
    url, schema = store_url
    return ControlPlaneSettings(db_url=url, db_schema=schema, admin_key=ADMIN,
                                state_key_ref=REF,
                                vault=VaultSettings(addr=vault.addr, token=vault.token))


@pytest.fixture
def server(store_url: tuple[str, str | None], vault: VaultProcess
           ) -> Iterator[ControlPlaneServer]:
    with ControlPlaneServer(_settings(store_url, vault)) as srv:
        yield srv


async def _sessions(url: str, n: int) -> list[tuple[str, str]]:
    out = []
    async with ControlPlaneClient(url, ADMIN) as client:
        await client.request("POST", "/v1/pipelines", json={"spec": spec_version("1.0.0")})
        await client.register_runtime("rt-a", "ws://rt-a")
        await client.heartbeat("rt-a", health="healthy", load=0)
        for _ in range(n):
            route = await client.route("acme", "voice-assistant")
            await client.acquire_lease(route["session_id"], "rt-a", ttl_ms=60_000)
            out.append((route["session_id"], "rt-a"))
    return out


async def _api(method: str, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        return await http.request(method, url, json=body)


async def _put(url: str, sid: str, version: int, doc: dict[str, Any]) -> httpx.Response:
    return await _api("PUT", f"{url}/v1/sessions/{sid}/state", {
        "runtime_id": "rt-a", "lease_epoch": 1, "expected_version": version,
        "document": doc})


async def _get(url: str, sid: str) -> httpx.Response:
    return await _api("GET", f"{url}/v1/sessions/{sid}/state")


async def _rows(store_url: tuple[str, str | None]) -> dict[str, str]:
    store = await Store.open(store_url[0], schema=store_url[1], migrate=False)
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(select(session_state.c.session_id,
                                              session_state.c.doc_json))).all()
    finally:
        await store.close()
    return {r.session_id: r.doc_json for r in rows}


async def _set_row(store_url: tuple[str, str | None], sid: str, doc_json: str) -> None:
    store = await Store.open(store_url[0], schema=store_url[1], migrate=False)
    try:
        async with store.tx() as conn:
            await conn.execute(update(session_state).where(
                session_state.c.session_id == sid).values(doc_json=doc_json))
    finally:
        await store.close()


def _wrapped_version(doc_json: str) -> str:
    assert doc_json.startswith("sealed:"), doc_json[:40]
    return doc_json.split('"wrapped":"', 1)[1].split(":", 2)[1]


async def test_state_is_sealed_and_survives_rotation_and_rewrap(
    server: ControlPlaneServer, vault: VaultProcess, store_url: tuple[str, str | None],
) -> None:
    url = server.url
    (old, _), (new, _) = await _sessions(url, 2)
    history = {"hot": {"llm/history": [["user", "my card number is 4111"]]}}
    assert (await _put(url, old, 0, history)).status_code == 200
    rows = await _rows(store_url)
    assert "4111" not in rows[old] and _wrapped_version(rows[old]) == "v1"
    assert (await _get(url, old)).json()["document"] == history
    status = (await _api("GET", f"{url}/v1/kms/keys")).json()["keys"][0]
    assert status["key_ref"] == REF and status["sealing_version"] == 1
    assert status["latest_version"] == 1 and status["vault_reachable"] is True

    rotated = await _api("POST", f"{url}/v1/kms/keys/rotate", {"reason": "quarterly"})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json() == {"purpose": "session_state", "key_ref": REF,
                              "previous_version": 1, "latest_version": 2,
                              "sealing_version": 2}
    assert (await _put(url, new, 0, {"turn": 2})).status_code == 200
    rows = await _rows(store_url)
    assert _wrapped_version(rows[new]) == "v2" and _wrapped_version(rows[old]) == "v1"
    assert (await _get(url, old)).json()["document"] == history  # the old version still opens

    rewrap = await _api("POST", f"{url}/v1/kms/keys/rewrap", {})
    assert rewrap.status_code == 200, rewrap.text
    assert rewrap.json()["rewrapped"] == 1 and rewrap.json()["unchanged"] == 1
    assert _wrapped_version((await _rows(store_url))[old]) == "v2"
    # the old version retired in Vault: every row still opens (all under v2 now)
    retire = await asyncio.to_thread(vault.call, "POST", "keys/rspp-state/config",
                                     {"min_decryption_version": 2})
    assert retire.status_code == 200, retire.text
    assert (await _get(url, old)).json()["document"] == history
    assert (await _get(url, new)).json()["document"] == {"turn": 2}
    audit = (await _api("GET", f"{url}/v1/audit")).json()["entries"]
    kms = [e for e in audit if e["action"].startswith("kms_key.")]
    assert [(e["action"], e["subject"]) for e in kms] == [
        ("kms_key.rotated", REF), ("kms_key.rewrapped", REF)]
    assert kms[0]["detail"]["reason"] == "quarterly"
    assert vault.token not in str(audit) and "plaintext" not in str(audit)


async def test_vault_down_cached_keys_work_the_rest_is_a_clear_503(
    server: ControlPlaneServer, vault: VaultProcess, store_url: tuple[str, str | None],
) -> None:
    url = server.url
    (mine, _), (theirs, _) = await _sessions(url, 2)
    with ControlPlaneServer(_settings(store_url, vault)) as replica:
        assert (await _put(replica.url, theirs, 0, {"by": "replica"})).status_code == 200
    assert (await _put(url, mine, 0, {"n": 1})).status_code == 200
    await asyncio.to_thread(vault.stop)
    # the data key in use and the ones this process unwrapped stay in memory
    assert (await _put(url, mine, 1, {"n": 2})).status_code == 200
    assert (await _get(url, mine)).json()["document"] == {"n": 2}
    # a row sealed under a data key this process never unwrapped: 503 naming the key
    refused = await _get(url, theirs)
    assert refused.status_code == 503, refused.text
    err = refused.json()["error"]
    assert err["field"] == "state_key" and REF in err["message"]
    assert "unreachable" in err["message"] and vault.token not in err["message"]
    down = (await _api("GET", f"{url}/v1/kms/keys")).json()["keys"][0]
    assert down["vault_reachable"] is False and REF in down["error"]
    no_rotation = await _api("POST", f"{url}/v1/kms/keys/rotate", {})
    assert no_rotation.status_code == 503 and REF in no_rotation.json()["error"]["message"]
    await asyncio.to_thread(vault.start)  # recovery: same address, same keys
    assert (await _get(url, theirs)).json()["document"] == {"by": "replica"}


async def test_moved_or_forged_sealed_rows_are_refused(
    server: ControlPlaneServer, store_url: tuple[str, str | None],
) -> None:
    url = server.url
    (a, _), (b, _), (c, _) = await _sessions(url, 3)
    for sid in (a, b, c):
        assert (await _put(url, sid, 0, {"who": sid})).status_code == 200
    rows = await _rows(store_url)
    await _set_row(store_url, b, rows[a])  # a's sealed state copied into b's row
    moved = await _get(url, b)
    assert moved.status_code == 409 and moved.json()["error"]["code"] == "state_damaged"
    forged = rows[c].replace('"wrapped":"vault:v1:', '"wrapped":"vault:v7:')
    await _set_row(store_url, c, forged)
    refused = await _get(url, c)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "state_key_refused"
    assert "invalid key version" in refused.json()["error"]["message"]
    assert (await _get(url, a)).json()["document"] == {"who": a}


def test_a_control_plane_without_vault_refuses_to_start_naming_the_key(
    store_url: tuple[str, str | None], tmp_path: Path,
) -> None:
    url, schema = store_url
    settings = ControlPlaneSettings(
        db_url=url, db_schema=schema, admin_key=ADMIN, state_key_ref=REF,
        vault=VaultSettings(addr="http://127.0.0.1:9", token="t", timeout_s=2))
    with pytest.raises(Exception, match=r"KMS key vault-transit:rspp-state: Vault at "
                                        r"http://127.0.0.1:9 is unreachable"):
        with ControlPlaneServer(settings):
            pass
