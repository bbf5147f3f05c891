"""``rspp cp ...`` end to end: a real server on loopback driven by the CLI in subprocesses."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rspp.controlplane import ControlPlaneServer, ControlPlaneSettings, TokenKeys, TokenVerifier

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
ADMIN_KEY = "e2e-admin-key"


def rspp(
    *args: str, key: str | None = None, server: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    if key is not None:
        env["RSPP_API_KEY"] = key
    if server is not None:
        env["RSPP_SERVER"] = server
    return subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "cp", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cp.db"


@pytest.fixture
def server(db_path: Path) -> Iterator[ControlPlaneServer]:
    settings = ControlPlaneSettings(
        db_url=f"sqlite+aiosqlite:///{db_path}",
        admin_key=ADMIN_KEY,
        token_keys=TokenKeys.generate_ed25519(),
    )
    with ControlPlaneServer(settings) as srv:
        yield srv


def test_cli_publish_rollout_route_token_status_audit(
    server: ControlPlaneServer, db_path: Path, tmp_path: Path
) -> None:
    url = server.url
    # Keys: the admin creates an operator and a viewer key (key on the last line).
    created = rspp("keys", "create", "--role", "operator", key=ADMIN_KEY, server=url)
    assert created.returncode == 0, created.stderr
    operator = created.stdout.strip().splitlines()[-1]
    viewer = (
        rspp("keys", "create", "--role", "viewer", key=ADMIN_KEY, server=url)
        .stdout.strip()
        .splitlines()[-1]
    )
    assert operator.startswith("rspp_operator_") and viewer.startswith("rspp_viewer_")

    # A viewer key cannot publish; the error says which role is needed.
    denied = rspp("publish", str(VOICE), key=viewer, server=url)
    assert denied.returncode == 1 and "forbidden" in denied.stderr and "operator" in denied.stderr
    # Operator publishes v1 and v2 (flags instead of env work too).
    ok = rspp("publish", str(VOICE), "--server", url, "--api-key", operator)
    assert ok.returncode == 0, ok.stderr
    v2 = tmp_path / "v2.yaml"
    v2.write_text(VOICE.read_text().replace("version: 1.0.0", "version: 2.0.0"))
    assert rspp("publish", str(v2), key=operator, server=url).returncode == 0
    changed = tmp_path / "v1-changed.yaml"
    changed.write_text(VOICE.read_text().replace("Answer briefly.", "Answer at length."))
    immut = rspp("publish", str(changed), key=operator, server=url)
    assert immut.returncode == 1 and "immutable" in immut.stderr
    listing = rspp("list", key=viewer, server=url)
    assert "voice-assistant@1.0.0" in listing.stdout and "voice-assistant@2.0.0" in listing.stdout
    got = rspp("get", "voice-assistant@1.0.0", key=viewer, server=url)
    assert got.returncode == 0 and '"spec_hash"' in got.stdout

    assert (
        rspp(
            "rollout",
            "voice-assistant",
            "--canary",
            "2.0.0",
            "--percent",
            "10",
            key=operator,
            server=url,
        ).returncode
        == 0
    )
    assert (
        rspp("rollback", "voice-assistant", "--to", "1.0.0", key=operator, server=url).returncode
        == 0
    )

    # Route needs a runtime in the routing view.
    reg = rspp(
        "runtime", "register", "rt-a", "--endpoint", "ws://127.0.0.1:9/ws", key=operator, server=url
    )
    assert reg.returncode == 0, reg.stderr
    routed = rspp("route", "--tenant", "acme", "--session", "sess-e2e", key=operator, server=url)
    assert routed.returncode == 0, routed.stderr
    assert (
        '"pipeline_version": "1.0.0"' in routed.stdout
        and '"endpoint": "ws://127.0.0.1:9/ws"' in routed.stdout
    )

    token = (
        rspp(
            "token",
            "issue",
            "--session",
            "sess-e2e",
            "--tenant",
            "acme",
            "--ttl",
            "60",
            key=operator,
            server=url,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    good = rspp("token", "verify", token, key=viewer, server=url)
    assert good.returncode == 0 and "valid" in good.stdout and "sess-e2e" in good.stdout
    # A transport verifies locally with the published Ed25519 public key (F-088).
    import httpx

    keys = httpx.get(f"{url}/v1/tokens/keys", headers={"Authorization": f"Bearer {viewer}"}).json()
    public = TokenKeys(algorithm="EdDSA", public_pem=keys["public_pem"])
    assert TokenVerifier(public).verify(token).session_id == "sess-e2e"
    header, payload, sig = token.split(".")
    tampered = f"{header}.{payload[:-2]}{'AA' if payload[-2:] != 'AA' else 'BB'}.{sig}"
    bad = rspp("token", "verify", tampered, key=viewer, server=url)
    assert bad.returncode == 1 and "token_invalid" in bad.stderr
    short = (
        rspp(
            "token",
            "issue",
            "--session",
            "sess-e2e",
            "--tenant",
            "acme",
            "--ttl",
            "1",
            key=operator,
            server=url,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    import time

    time.sleep(2.1)
    expired = rspp("token", "verify", short, key=viewer, server=url)
    assert expired.returncode == 1 and "expired" in expired.stderr

    status = rspp("status", "sess-e2e", key=viewer, server=url)
    assert status.returncode == 0 and '"status": "routed"' in status.stdout

    # Audit: chain verifies, then a tampered row is detected.
    assert rspp("audit", "--verify", key=viewer, server=url).returncode == 0
    log = rspp("audit", key=viewer, server=url)
    assert "pipeline.publish" in log.stdout and "rollout.rollback" in log.stdout
    # a tenant key reads only its tenant's entries (the session it routed, its leases)
    acme = rspp("keys", "create", "--role", "viewer", "--tenant", "acme", key=ADMIN_KEY,
                server=url).stdout.strip().splitlines()[-1]
    acme_lines = rspp("audit", key=acme, server=url).stdout.splitlines()
    acme_log = [json.loads(line) for line in acme_lines]
    assert acme_log and {e["tenant_id"] for e in acme_log} == {"acme"}
    assert "lease.issued" in {e["action"] for e in acme_log}
    fleet_acme = rspp("audit", "--tenant", "acme", key=viewer, server=url).stdout.splitlines()
    assert [json.loads(line) for line in fleet_acme] == acme_log
    assert rspp("audit", "--verify", key=acme, server=url).returncode == 1  # fleet only
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE cp_audit SET actor = 'mallory' WHERE seq = 2")
    broken = rspp("audit", "--verify", key=viewer, server=url)
    assert broken.returncode == 1 and "seq 2" in broken.stderr and "modified" in broken.stderr


def test_cli_errors_are_clear(server: ControlPlaneServer) -> None:
    unreachable = rspp("list", key="k", server="http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "unreachable" in unreachable.stderr
    nokey = rspp("list", server=server.url)
    assert nokey.returncode == 1 and "missing API key" in nokey.stderr
    wrong = rspp("list", key="nope", server=server.url)
    assert wrong.returncode == 1 and "unknown API key" in wrong.stderr
    badrole = rspp("keys", "create", "--role", "root", key=ADMIN_KEY, server=server.url)
    assert badrole.returncode == 1 and "role" in badrole.stderr


def test_config_file_is_validated_then_published(server: ControlPlaneServer,
                                                 tmp_path: Path) -> None:
    """F-126: the file `rspp validate` checks is what `rspp cp config publish` sends."""
    import httpx

    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: policy\nbody:\n  providers: {stt: pocketsphinx}\n"
                   "  turn_budget_ms: soon\n")
    refused = rspp("config", "publish", str(bad), key=ADMIN_KEY, server=server.url)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"{bad}:4:3: body.turn_budget_ms: Expected `int | null`, "
                                     "got `str`;")
    good = tmp_path / "good.yaml"
    good.write_text("kind: policy\nscope: acme\nbody:\n  providers: {stt: pocketsphinx}\n"
                    "  turn_budget_ms: 9000\n")
    published = rspp("config", "publish", str(good), key=ADMIN_KEY, server=server.url)
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["version"] == 1
    listing = httpx.get(f"{server.url}/v1/configs/policy/acme",
                        headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    assert [(c["version"], c["active"], c["body"]["turn_budget_ms"])
            for c in listing["versions"]] == [(1, True, 9000)]
    assert httpx.get(f"{server.url}/v1/configs/policy/*",
                     headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["versions"] == []
