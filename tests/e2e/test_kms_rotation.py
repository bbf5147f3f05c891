"""KMS-backed keys rotated online under live sessions (F-169), real processes.

The fake Vault (its own process, the Transit HTTP API), ``rspp cp serve`` on SQLite and
PostgreSQL with ``--state-key`` (session state sealed at rest) and ``--timeline-key``,
and a runtime ``rspp serve --control-plane --timeline-signing-key``. While a session is
live the token signing key, the state encryption key and the timeline signing key all
rotate (``rspp cp signing-keys rotate``, ``rspp cp kms rotate``); the session keeps
answering, its checkpoints keep being sealed and read, a token of the old signing key
opens its session, and ``rspp timeline verify`` accepts the timelines signed before
(version 1) and after (version 2) the rotation while refusing an altered timeline and a
forged key version. With Vault down a session still answers and checkpoints (cached data
key), its timeline is left unsigned (and says so), and a rotation fails naming the key.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, session_url
from rspp.testing import TEXT_CHAT_SPEC, VaultProcess

if TYPE_CHECKING:
    from tests.e2e.conftest import ControlPlaneServer, ServeProcess

pytestmark = pytest.mark.e2e

ADMIN = "kms-e2e-admin-key-0123456789"
STATE, TIMELINE = "vault-transit:rspp-state", "vault-transit:rspp-timeline"
RSPP = [sys.executable, "-c", "from rspp.cli import main; main()"]


def _rspp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RSPP, *args], capture_output=True, text=True, timeout=120,
                          check=False)


def _verify(timeline: Path, vault: list[str]) -> tuple[int, dict[str, Any]]:
    done = _rspp("timeline", "verify", str(timeline), *vault)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}


def _wait_ended(url: str, sid: str) -> None:
    """The runtime reports a session ended after its timeline was signed (or not)."""
    deadline = time.monotonic() + 120
    while httpx.get(f"{url}/v1/sessions/{sid}", timeout=30,
                    headers={"Authorization": f"Bearer {ADMIN}"}).json()["status"] != "ended":
        assert time.monotonic() < deadline, sid
        time.sleep(0.1)  # the runtime's report: no event to await from here


@pytest.mark.timeout(600)  # three key kinds, four sessions and an outage, on a busy machine
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_keys_rotate_under_live_sessions_and_vault_outages_degrade_safely(
    store: str, cp_serve: Callable[..., ControlPlaneServer],
    serve_process: Callable[..., ServeProcess], tmp_path: Path,
    cp_json: Callable[..., dict[str, Any]], text_turn: Callable[..., Any],
) -> None:
    vault = VaultProcess(tmp_path, keys={"rspp-state": "aes256-gcm96",
                                         "rspp-timeline": "ed25519"}).start()
    token_file = tmp_path / "vault-token"
    token_file.write_text(vault.token)
    via_vault = ["--vault-addr", vault.addr, "--vault-token-file", str(token_file)]
    timelines = tmp_path / "timelines"
    try:
        cp = cp_serve(store, ADMIN, "--token-key-dir", str(tmp_path / "keys"),
                      "--state-key", STATE, "--timeline-key", TIMELINE, *via_vault)
        auth = {"Authorization": f"Bearer {ADMIN}"}
        published = httpx.post(f"{cp.url}/v1/pipelines", headers=auth, timeout=60,
                               json={"spec": TEXT_CHAT_SPEC, "filename": "chat.yaml"})
        assert published.status_code == 201, published.text
        serve_process("--control-plane", cp.url, "--api-key", ADMIN,
                      "--heartbeat-interval", "0.3", "--timeline-dir", str(timelines),
                      "--timeline-signing-key", TIMELINE, *via_vault).wait_ready()

        async def route(http: httpx.AsyncClient) -> dict[str, Any]:
            resp = await http.post("/v1/sessions/route",
                                   json={"tenant_id": "acme", "pipeline_name": "text-chat"})
            assert resp.status_code == 201, resp.text
            routed: dict[str, Any] = resp.json()
            return routed

        async def one_session(routed: dict[str, Any], turns: int = 1) -> None:
            url = session_url(routed["endpoint"], routed["session_id"])
            async with await LiveClient.connect(url, token=routed["token"]) as client:
                for _ in range(turns):
                    assert "name is" in await text_turn(client, "what is your name")
                await client.end()

        async def state_of(http: httpx.AsyncClient, sid: str, above: int = 0
                           ) -> dict[str, Any]:
            """The checkpoint once a version above ``above`` is saved (the runtime saves
            after each turn boundary, asynchronously: poll the control plane)."""
            deadline = time.monotonic() + 60
            while True:
                resp = await http.get(f"/v1/sessions/{sid}/state")
                assert resp.status_code == 200, resp.text
                got: dict[str, Any] = resp.json()
                if got["version"] > above:
                    return got
                assert time.monotonic() < deadline, got
                await asyncio.sleep(0.05)

        async def scenario() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=cp.url, headers=auth, timeout=60) as http:
                before = await route(http)
                await one_session(before)  # closed before any rotation: signed by v1
                pending = await route(http)  # its token: the signing key before rotation
                live = await route(http)
                url = session_url(live["endpoint"], live["session_id"])
                async with await LiveClient.connect(url, token=live["token"]) as client:
                    assert "name is" in await text_turn(client, "what is your name")
                    first = await state_of(http, live["session_id"])
                    tokens = await asyncio.to_thread(cp_json, cp.url, ADMIN,
                                                     "signing-keys", "rotate")
                    state_key = await asyncio.to_thread(cp_json, cp.url, ADMIN, "kms",
                                                        "rotate", "--reason", "e2e")
                    signing = await asyncio.to_thread(
                        cp_json, cp.url, ADMIN, "kms", "rotate", "--purpose",
                        "timeline_signing")
                    # the live session answers across the three rotations
                    assert "name is" in await text_turn(client, "what is your name")
                    second = await state_of(http, live["session_id"], first["version"])
                    await one_session(pending)  # a token of the rotated-out key
                    assert "name is" in await text_turn(client, "what is your name")
                    await client.end()
                status = (await http.get("/v1/kms/keys")).json()
                return {"before": before, "live": live, "pending": pending,
                        "first": first, "second": second, "tokens": tokens,
                        "state_key": state_key, "signing": signing, "status": status}

        got = asyncio.run(asyncio.wait_for(scenario(), 300))
        assert got["tokens"]["previous_kid"] != got["tokens"]["kid"]
        assert got["state_key"]["sealing_version"] == 2
        assert got["signing"]["latest_version"] == 2
        # checkpoints written before and after the rotation, read back through the API
        assert 0 < got["first"]["version"] < got["second"]["version"]
        assert got["second"]["document"] and got["second"]["document"] != {}
        assert {k["purpose"]: k["sealing_version"] for k in got["status"]["keys"]} == {
            "session_state": 2, "timeline_signing": 2}
        if store == "sqlite":  # at rest: sealed under the new version, no plaintext
            rows = dict(sqlite3.connect(tmp_path / "cp0.db").execute(
                "SELECT session_id, doc_json FROM cp_session_state").fetchall())
            sealed = rows[got["live"]["session_id"]]
            assert sealed.startswith("sealed:") and '"wrapped":"vault:v2:' in sealed
            assert "name is" not in sealed and "history" not in sealed
        for sid in (got["before"]["session_id"], got["live"]["session_id"]):
            _wait_ended(cp.url, sid)
        old = timelines / f"{got['before']['session_id']}.jsonl"
        new = timelines / f"{got['live']['session_id']}.jsonl"
        assert _verify(old, via_vault) == (0, {
            "timeline": str(old), "session_id": got["before"]["session_id"],
            "key_ref": TIMELINE, "key_version": 1, "ok": True})
        code, checked = _verify(new, via_vault)
        assert code == 0 and checked["key_version"] == 2 and checked["ok"] is True
        # a forged version and an altered timeline are refused
        sig = json.loads(Path(f"{old}.sig").read_text())
        forged = timelines / "forged.jsonl"
        forged.write_bytes(old.read_bytes())
        Path(f"{forged}.sig").write_text(json.dumps(
            {**sig, "key_version": 9, "signature": sig["signature"].replace("vault:v1:",
                                                                            "vault:v9:")}))
        code, refused = _verify(forged, via_vault)
        assert code == 1 and "version 9 of vault-transit:rspp-timeline is not published" \
            in refused["reason"]
        with new.open("ab") as altered:  # a record added after the session closed
            altered.write(b'{"kind": "forged"}\n')
        code, refused = _verify(new, via_vault)
        assert code == 1 and "changed after it was signed" in refused["reason"]

        # Vault down: sessions go on with the cached data key; nothing is signed
        vault.stop()

        async def outage() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=cp.url, headers=auth, timeout=60) as http:
                during = await route(http)
                await one_session(during, turns=2)
                return {"during": during,
                        "state": await state_of(http, during["session_id"])}

        down = asyncio.run(asyncio.wait_for(outage(), 300))
        assert down["state"]["version"] >= 1 and down["state"]["document"]
        _wait_ended(cp.url, down["during"]["session_id"])
        unsigned = timelines / f"{down['during']['session_id']}.jsonl"
        assert unsigned.exists() and not Path(f"{unsigned}.sig").exists()
        code, refused = _verify(unsigned, via_vault)
        assert code == 1 and refused["reason"].startswith("unsigned")
        failed = subprocess.run([*RSPP, "cp", "kms", "rotate"], capture_output=True,
                                text=True, timeout=120, check=False,
                                env=dict(os.environ, RSPP_SERVER=cp.url,
                                         RSPP_API_KEY=ADMIN))
        assert failed.returncode == 1 and STATE in failed.stderr
        assert "unreachable" in failed.stderr and "Traceback" not in failed.stderr
        assert vault.token not in failed.stderr
        audit = httpx.get(f"{cp.url}/v1/audit", headers=auth, timeout=60).json()
        rotated = [e["detail"]["key_ref"] for e in audit["entries"]
                   if e["action"] == "kms_key.rotated"]
        assert rotated == [STATE, TIMELINE]
    finally:
        vault.stop()
