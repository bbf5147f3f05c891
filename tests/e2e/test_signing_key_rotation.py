"""Online rotation of the session-token signing key (F-169, NF-035), real processes.

``rspp cp serve --token-key-dir`` (SQLite and PostgreSQL) and a runtime
``rspp serve --control-plane``: a live session keeps talking across two rotations
(``rspp cp signing-keys rotate``: a generated key, then a ``file:`` reference), a token
signed by the rotated-out key still opens its session (overlap window), a token of the
new key opens one on the runtime that had fetched only the old key (it fetches the keys
again on the unknown ``kid``), a token naming a key nobody published is refused, and the
rotations are audited with references, never key material. With
``--token-key-max-age-s`` the control plane rotates by itself before the maximum age.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest

from rspp.client import LiveClient, SessionRefusedError, session_url
from rspp.controlplane import TokenKeys
from rspp.testing import TEXT_CHAT_SPEC

if TYPE_CHECKING:
    from tests.e2e.conftest import ControlPlaneServer, ServeProcess

pytestmark = pytest.mark.e2e

ADMIN = "signing-admin-key-0123456789"
RSPP = [sys.executable, "-c", "from rspp.cli import main; main()"]


async def _route(http: httpx.AsyncClient) -> dict[str, Any]:
    resp = await http.post("/v1/sessions/route",
                           json={"tenant_id": "acme", "pipeline_name": "text-chat"})
    assert resp.status_code == 201, resp.text
    route: dict[str, Any] = resp.json()
    return route


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_live_session_and_old_tokens_survive_rotations_and_new_kids_are_fetched(
    store: str, cp_serve: Callable[..., ControlPlaneServer],
    serve_process: Callable[..., ServeProcess], tmp_path: Path,
    cp_json: Callable[..., dict[str, Any]], text_turn: Callable[..., Any],
) -> None:
    async def _turn(client: LiveClient, question: str) -> str:
        text: str = await text_turn(client, question)
        return text

    async def _one_turn(route: dict[str, Any], question: str,
                        token: str | None = None) -> str:
        url = session_url(route["endpoint"], route["session_id"])
        async with await LiveClient.connect(url, token=token or route["token"]) as client:
            answer = await _turn(client, question)
            await client.end()
        return answer

    keys_dir = tmp_path / "keys"
    cp = cp_serve(store, ADMIN, "--token-key-dir", str(keys_dir))
    auth = {"Authorization": f"Bearer {ADMIN}"}
    published = httpx.post(f"{cp.url}/v1/pipelines", headers=auth, timeout=60,
                           json={"spec": TEXT_CHAT_SPEC, "filename": "chat.yaml"})
    assert published.status_code == 201, published.text
    first = cp_json(cp.url, ADMIN, "signing-keys", "status")
    k1 = first["active_kid"]
    assert first["max_age_s"] == 7_776_000 and first["overdue"] is False
    assert first["automated"] is True and first["keys"][0]["key_ref"].startswith("file:")
    runtime = serve_process("--control-plane", cp.url, "--api-key", ADMIN,
                            "--heartbeat-interval", "0.3").wait_ready()
    other_key = tmp_path / "k3.pem"
    other_key.write_text(TokenKeys.generate_ed25519().private_pem or "")

    async def scenario() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=cp.url, headers=auth, timeout=60) as http:
            live = await _route(http)
            pending = await _route(http)  # routed now, connected after the rotation
            assert _kid(live["token"]) == _kid(pending["token"]) == k1
            url = session_url(live["endpoint"], live["session_id"])
            async with await LiveClient.connect(url, token=live["token"]) as client:
                assert "name is" in await _turn(client, "what is your name")
                rotated = await asyncio.to_thread(
                    cp_json, cp.url, ADMIN, "signing-keys", "rotate", "--reason",
                    "e2e rotation")
                assert rotated["previous_kid"] == k1 and rotated["kid"] != k1
                # the live session keeps answering across the rotation
                assert "name is" in await _turn(client, "what is your name")
                # a token of the old key opens its session in the overlap window
                assert "name is" in await _one_turn(pending, "what is your name")
                # a token of the new key: the runtime fetched only k1 at start
                fresh = await _route(http)
                assert _kid(fresh["token"]) == rotated["kid"]
                assert "name is" in await _one_turn(fresh, "what is your name")
                # a second rotation, to a key by reference
                again = await asyncio.to_thread(
                    cp_json, cp.url, ADMIN, "signing-keys", "rotate", "--key-ref",
                    f"file:{other_key}")
                assert again["previous_kid"] == rotated["kid"]
                assert "name is" in await _turn(client, "what is your name")
                latest = await _route(http)
                assert _kid(latest["token"]) == again["kid"]
                assert "name is" in await _one_turn(latest, "what is your name")
                await client.end()
            # a token naming a key nobody published: refused, naming the reason
            forged_key = TokenKeys.generate_ed25519()
            claims = jwt.decode(latest["token"], options={"verify_signature": False})
            forged = jwt.encode(claims, forged_key._signing_key(), algorithm="EdDSA",
                                headers={"kid": "not-a-key-of-ours"})
            refused = await _route(http)
            with pytest.raises(SessionRefusedError, match="token_key_unknown"):
                await _one_turn(refused, "hello", token=forged)
            audit = (await http.get("/v1/audit")).json()
            keys = (await http.get("/v1/tokens/keys")).json()
        return {"rotated": rotated, "again": again, "audit": audit, "keys": keys}

    got = asyncio.run(asyncio.wait_for(scenario(), 300))
    rotated, again = got["rotated"], got["again"]
    # every key that still verifies is published; the active one signs
    assert got["keys"]["kid"] == again["kid"]
    assert {k["kid"]: k["state"] for k in got["keys"]["keys"]} == {
        k1: "previous", rotated["kid"]: "previous", again["kid"]: "active"}
    status = cp_json(cp.url, ADMIN, "signing-keys", "status")
    assert status["active_kid"] == again["kid"] and status["rotations"] == 2
    assert [k["reason"] for k in status["keys"]] == ["bootstrap", "e2e rotation", "manual"]
    # rotation evidence: who, which keys, why, the references; never the key material
    entries = [e for e in got["audit"]["entries"] if e["action"] == "token_key.rotated"]
    assert [(e["detail"]["previous_kid"], e["detail"]["kid"]) for e in entries] == [
        (k1, rotated["kid"]), (rotated["kid"], again["kid"])]
    assert entries[1]["detail"]["key_ref"] == f"file:{other_key}"
    assert "PRIVATE KEY" not in json.dumps(got["audit"]) + json.dumps(status)
    bad = subprocess.run([*RSPP, "cp", "signing-keys", "rotate", "--key-ref", "s3:bucket/k"],
                         env=dict(os.environ, RSPP_SERVER=cp.url, RSPP_API_KEY=ADMIN),
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1 and "key_ref" in bad.stderr and "Traceback" not in bad.stderr
    assert runtime.proc.poll() is None


def test_the_control_plane_rotates_its_key_before_the_maximum_age(
    cp_serve: Callable[..., ControlPlaneServer], tmp_path: Path,
    cp_json: Callable[..., dict[str, Any]],
) -> None:
    """NF-035: with a key directory the key is rotated at 75% of the maximum age."""
    max_age = 12
    cp = cp_serve("sqlite", ADMIN, "--token-key-dir", str(tmp_path / "keys"),
                  "--token-key-max-age-s", str(max_age))
    first = cp_json(cp.url, ADMIN, "signing-keys", "status")
    assert first["max_age_s"] == max_age and first["overdue"] is False
    assert first["rotate_by_ms"] - first["rotate_after_ms"] == max_age * 250
    deadline = time.monotonic() + 120
    while (status := cp_json(cp.url, ADMIN, "signing-keys", "status"))["active_kid"] == \
            first["active_kid"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.5)  # the control plane's own schedule: nothing to await
    audit = httpx.get(f"{cp.url}/v1/audit",
                      headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60).json()
    auto = next(e for e in audit["entries"] if e["action"] == "token_key.rotated")
    assert auto["actor"] == "rspp-key-rotation" and auto["detail"]["reason"] == "max_age"
    assert auto["detail"]["previous_kid"] == first["active_kid"]
    assert auto["detail"]["previous_age_s"] < max_age  # rotated before the maximum age
    assert status["keys"][0]["state"] == "previous"
