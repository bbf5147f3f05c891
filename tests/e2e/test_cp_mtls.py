"""Mutual TLS between runtimes and the control plane (F-120), real processes on loopback.

``rspp cp serve --tls-cert/--tls-key/--client-ca`` on SQLite and PostgreSQL; a runtime
``rspp serve --control-plane https://... --tls-client-cert/--tls-client-key/--tls-ca``.
Certificates are made here with ``cryptography``: a CA, the control plane's server
certificate (for 127.0.0.1), client certificates for the runtime and the operator, and a
rogue CA's client certificate. Then the certificates rotate to a second CA while both
processes run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from rspp.client import LiveClient, session_url
from rspp.testing import TEXT_CHAT_SPEC, Pki
from rspp.transports import ReplyText, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ControlPlaneServer, ServeProcess

pytestmark = pytest.mark.e2e

ADMIN = "mtls-admin-key-0123456789"
RSPP = [sys.executable, "-c", "from rspp.cli import main; main()"]
def _client(ca: Path, pair: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if pair is not None:
        ctx.load_cert_chain(str(pair[0]), str(pair[1]))
    return ctx


def _served_issuer(port: int, ctx: ssl.SSLContext) -> str:
    """The issuer CN of the certificate the control plane presents to a new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _refused(url: str, ctx: ssl.SSLContext | None) -> bool:
    """The request fails in the connection (plaintext, no or a foreign client certificate)."""
    try:
        httpx.get(f"{url}/healthz", timeout=30, verify=ctx if ctx is not None else True)
    except httpx.TransportError:
        return True
    return False


async def _ask(cp_url: str, ctx: ssl.SSLContext, question: str) -> list[Any]:
    """Route a text session over mTLS, ask one question on the runtime, return its events."""
    async with httpx.AsyncClient(base_url=cp_url, verify=ctx, timeout=60,
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        resp = await http.post("/v1/sessions/route",
                               json={"tenant_id": "acme", "pipeline_name": "text-chat"})
        assert resp.status_code == 201, resp.text
        route = resp.json()
    got: list[Any] = []
    url = session_url(route["endpoint"], route["session_id"])
    async with await LiveClient.connect(url, token=route["token"]) as client:
        await client.send_text(question)
        async for ev in client.events():
            got.append(ev)
            if isinstance(ev, TurnEvent) and ev.state == "close":
                await client.end()
    return got


def _answered(events: list[Any]) -> str:
    assert [e.state for e in events if isinstance(e, TurnEvent)] == ["open", "commit", "close"]
    return "".join(e.text for e in events if isinstance(e, ReplyText))


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_mtls_refuses_plaintext_and_foreign_clients_and_survives_certificate_rotation(
    store: str, cp_serve: Callable[..., ControlPlaneServer],
    serve_process: Callable[..., ServeProcess], tmp_path: Path,
) -> None:
    pki = Pki(tmp_path / "pki")
    ca1, rogue_ca = pki.ca("rspp-ca-1"), pki.ca("rogue-ca")
    client_ca = pki.write("client-ca.pem", ca1.pem)
    cp_ca = pki.write("cp-ca.pem", ca1.pem)  # what callers trust for the server
    cp_pair = pki.issue(ca1, "cp", server=True)
    rt_pair = pki.issue(ca1, "runtime", server=False)
    op_pair = pki.issue(ca1, "operator", server=False)
    rogue_pair = pki.issue(rogue_ca, "rogue", server=False)
    operator = _client(cp_ca, op_pair)
    tls_args = ("--tls-cert", str(cp_pair[0]), "--tls-key", str(cp_pair[1]),
                "--client-ca", str(client_ca), "--token-key-file", str(tmp_path / "token.pem"))
    cp = cp_serve(store, ADMIN, *tls_args, verify=operator)
    port = int(cp.url.rsplit(":", 1)[1])
    assert cp.url.startswith("https://") and "mutual TLS" in cp.log.read_text()

    # plaintext, no client certificate, a certificate of another CA: refused in the handshake
    assert _refused(f"http://127.0.0.1:{port}", None)
    assert _refused(cp.url, _client(cp_ca, None))
    assert _refused(cp.url, _client(cp_ca, rogue_pair))
    assert httpx.get(f"{cp.url}/healthz", verify=operator, timeout=30).status_code == 200

    # the operator's CLI takes its certificate from the environment
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    spec = tmp_path / "text_chat.yaml"
    spec.write_text(TEXT_CHAT_SPEC)
    cli_env = dict(env, RSPP_SERVER=cp.url, RSPP_API_KEY=ADMIN, RSPP_TLS_CA=str(cp_ca))
    no_cert = subprocess.run([*RSPP, "cp", "publish", str(spec)], env=cli_env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert no_cert.returncode == 1 and "client certificate" in no_cert.stderr, no_cert
    published = subprocess.run(
        [*RSPP, "cp", "publish", str(spec)], capture_output=True, text=True, timeout=120,
        check=False, env=dict(cli_env, RSPP_TLS_CLIENT_CERT=str(op_pair[0]),
                              RSPP_TLS_CLIENT_KEY=str(op_pair[1])))
    assert published.returncode == 0, published.stderr

    # a runtime without a client certificate is refused and exits with one line saying so
    bare = subprocess.run(
        [*RSPP, "serve", "--port", "0", "--control-plane", cp.url, "--api-key", ADMIN,
         "--tls-ca", str(cp_ca)], env=env, capture_output=True, text=True, timeout=120,
        check=False)
    assert bare.returncode == 1, bare
    assert "client certificate" in bare.stderr and "Traceback" not in bare.stderr

    # with its certificate it registers, and sessions run
    rt_ca = pki.write("runtime-ca.pem", ca1.pem)
    runtime = serve_process(
        "--control-plane", cp.url, "--api-key", ADMIN, "--runtime-id", "rt-mtls",
        "--heartbeat-interval", "0.2", "--tls-client-cert", str(rt_pair[0]),
        "--tls-client-key", str(rt_pair[1]), "--tls-ca", str(rt_ca)).wait_ready()
    assert "name is" in _answered(asyncio.run(_ask(cp.url, operator, "what is your name")))

    # rotation to a second CA while everything runs: the runtime trusts both CAs first,
    # then every certificate is re-issued by CA 2 and the control plane trusts CA 2 only
    ca2 = pki.ca("rspp-ca-2")
    pki.write(rt_ca.name, ca1.pem + ca2.pem)
    pki.issue(ca2, "runtime", server=False)
    pki.issue(ca2, "cp", server=True)
    pki.write(client_ca.name, ca2.pem)
    pki.write(cp_ca.name, ca2.pem)
    op2 = _client(cp_ca, pki.issue(ca2, "operator2", server=False))
    # the running control plane presents the new certificate to the next connection and
    # no longer accepts a CA 1 client (no restart)
    assert _served_issuer(port, op2) == "rspp-ca-2"
    assert _refused(cp.url, operator)
    assert httpx.get(f"{cp.url}/healthz", verify=op2, timeout=30).status_code == 200

    # the runtime (not restarted) makes its next connections with its new certificate:
    # the control plane is restarted on the same store and port (every connection is new),
    # and the runtime's heartbeats and a new session go through
    cp.proc.send_signal(signal.SIGINT)
    cp.proc.wait(timeout=60)
    db = [str(a) for a in cp.proc.args][cp.proc.args.index("--db"):]  # type: ignore[union-attr]
    db = db[:db.index("--port")]
    restarted_ms = int(time.time() * 1000)
    again = cp_serve(store, ADMIN, *db, *tls_args, verify=op2, port=port)

    def beats() -> int:
        resp = httpx.get(f"{again.url}/v1/runtimes", verify=op2, timeout=30,
                         headers={"Authorization": f"Bearer {ADMIN}"})
        assert resp.status_code == 200, resp.text
        rows = {r["runtime_id"]: r for r in resp.json()["runtimes"]}
        return int(rows["rt-mtls"]["last_heartbeat_ms"])

    deadline = time.monotonic() + 120
    while beats() <= restarted_ms:
        assert runtime.proc.poll() is None and time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.1)  # another process's heartbeat: nothing to await
    assert "name is" in _answered(asyncio.run(_ask(again.url, op2, "what is your name")))
    assert runtime.proc.poll() is None
