"""Availability SLO and error-budget freeze (NF-005, NF-030), live: ``rspp cp serve --slo``
on SQLite, one ``rspp serve --control-plane`` runtime, a WebSocket client typing turns.

The pipeline reaches an OpenAI-compatible fake (chat + speech) over its real wire
protocol. Turns that commit leave the SLO ``ok``; once the chat fake answers every
request with a non-retryable error, the runtime aborts the turn (a fault reason),
its gate sample reports that terminal, and the control plane's verdict changes: the
availability drops, the burn-rate alert fires (audited, on ``/metrics``), and rollouts
and publishes of that pipeline are refused 409 ``error_budget_freeze`` (audited) until
an admin forces one; an operator key cannot.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, route_session
from rspp.controlplane._server import free_port
from rspp.testing.fakes import FakeOpenAI
from rspp.testing.fakes._faults import Fault
from rspp.testing.fakes._server import serve_asgi
from rspp.transports import TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

KEY = "slo-e2e-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
#: half the turns may fail (a scaled-down objective: four turns move it); the alert
#: fires at a burn rate of 0.5 in both windows, i.e. a quarter of the turns failing
SLO = """objective_percent: 50
window_s: 3600
min_events: 2
alerts:
  - {name: page, long_window_s: 1800, short_window_s: 900, burn_rate: 0.5, freeze: true}
  - {name: ticket, long_window_s: 3600, short_window_s: 1800, burn_rate: 1.5}
"""


async def _rspp(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from rspp.cli import main; main()", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


@asynccontextmanager
async def _control_plane(tmp: Path, env: dict[str, str]) -> AsyncIterator[str]:
    (tmp / "slo.yaml").write_text(SLO)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from rspp.cli import main; main()", "cp", "serve", "--db",
        str(tmp / "cp.db"), "--admin-key", KEY, "--port", str(port), "--slo",
        str(tmp / "slo.yaml"), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, env=env)
    try:
        async with httpx.AsyncClient() as http:
            while True:  # readiness: the process answers /healthz
                assert proc.returncode is None, "rspp cp serve exited"
                try:
                    if (await http.get(f"{url}/healthz", timeout=5)).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield url
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), timeout=60)


async def _turn(client: LiveClient) -> TurnEvent:
    """Type one turn; its terminal event (commit or abort) once it closed."""
    await client.send_text("hello")
    terminal: TurnEvent | None = None
    async for ev in client.events():
        if isinstance(ev, TurnEvent) and ev.state in ("commit", "abort"):
            terminal = ev
        if isinstance(ev, TurnEvent) and ev.state == "close":
            break
    assert terminal is not None
    return terminal


async def _slo_events(http: httpx.AsyncClient, events: int) -> dict[str, Any]:
    """The SLO report once the control plane counted ``events`` turns (the runtime
    reports each closed turn's sample in its next batch)."""
    while True:
        report: dict[str, Any] = (await http.get("/v1/slo")).json()
        if report["scopes"][0]["events"] >= events:
            return report
        await asyncio.sleep(0.05)


async def test_failed_turns_burn_the_budget_and_freeze_rollouts_until_forced(
        serve_process: Callable[..., ServeProcess], tmp_path: Path,
        fake_openai_spec: Callable[..., str]) -> None:
    fake = FakeOpenAI(reply=lambda _: "Sure.")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    env["OPENAI_API_KEY"] = "sk-fake"
    async with serve_asgi(fake.app) as base, _control_plane(tmp_path, env) as cp, \
            httpx.AsyncClient(base_url=cp, headers=AUTH, timeout=30) as http:

        async def cli(*args: str) -> tuple[int, str, str]:
            return await _rspp(env, "cp", *args, "--server", cp, "--api-key", KEY)

        def spec(version: str) -> dict[str, str]:
            return {"spec": fake_openai_spec(base, base, name="slo", version=version,
                                             turn_ms=5000, timeout_ms=10000)}

        for version in ("1.0.0", "1.1.0"):
            assert (await http.post("/v1/pipelines", json=spec(version))).status_code == 201
        assert (await http.post("/v1/pipelines/slo/rollback", json={"to": "1.0.0"})
                ).status_code == 200
        runtime = serve_process("--control-plane", cp, "--api-key", KEY,
                                "--heartbeat-interval", "0.5", "--gate-interval", "0.05",
                                env={"OPENAI_API_KEY": "sk-fake"}).wait_ready()
        target = await route_session(cp, tenant_id="acme", api_key=KEY, pipeline_name="slo")
        async with await LiveClient.connect(target.url, token=target.token) as client:
            for _ in range(3):
                assert (await _turn(client)).state == "commit"
            healthy = {s["scope"]: s for s in (await _slo_events(http, 3))["scopes"]}
            assert healthy["slo"]["availability_percent"] == 100.0
            assert healthy["slo"]["state"] == "ok" and healthy["slo"]["freeze_reason"] is None
            # the chat provider fails every request from now on (not retryable)
            fake.faults.sticky = Fault("status", status=400,
                                       error_type="invalid_request_error")
            failed = await _turn(client)
            # the LLM node's provider error ends the turn (the taxonomy's provider_error)
            assert failed.state == "abort" and failed.reason == "provider_error", failed
            burning = await _slo_events(http, 4)
            await client.end()
        runtime.terminate()

        now = {s["scope"]: s for s in burning["scopes"]}["slo"]
        assert (now["events"], now["bad"], now["availability_percent"]) == (4, 1, 75.0)
        assert now["state"] == "burning" and now["budget_remaining"] == 0.5
        page = next(a for a in now["alerts"] if a["name"] == "page")
        ticket = next(a for a in now["alerts"] if a["name"] == "ticket")
        assert page["firing"] and page["long"]["burn_rate"] == 0.5
        assert not ticket["firing"]  # its threshold (1.5) is not reached
        assert "alert page fires" in now["freeze_reason"]
        metrics = (await http.get("/metrics")).text
        assert 'rspp_cp_slo_availability_ratio{scope="slo"} 0.75' in metrics
        assert 'rspp_cp_slo_rollout_frozen{scope="slo"} 1.0' in metrics
        assert 'rspp_cp_slo_alert_firing{alert="page",scope="slo"} 1.0' in metrics
        assert "rspp_cp_slo_objective_ratio 0.5" in metrics
        # rollouts and publishes of the burning pipeline are refused, naming the reason
        code, out, err = await cli("rollout", "slo", "--to", "1.1.0", "--percent", "10")
        assert code == 1 and "error: error_budget_freeze: rollout of slo refused" in err, err
        assert "alert page fires" in err
        refused = await http.post("/v1/pipelines", json=spec("1.2.0"))
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "error_budget_freeze"
        # rollbacks stay open: they are the remedy
        assert (await http.post("/v1/pipelines/slo/rollback", json={"to": "1.0.0"})
                ).status_code == 200
        # an operator may not force; an admin may, and it is audited
        made = (await http.post("/v1/keys", json={"role": "operator"})).json()
        refused = await http.post("/v1/pipelines/slo/rollout", json={
            "canary": "1.1.0", "percent": 10, "force": True},
            headers={"Authorization": f"Bearer {made['key']}"})
        assert refused.status_code == 403
        forced = await http.post("/v1/pipelines/slo/rollout",
                                 json={"canary": "1.1.0", "percent": 10, "force": True})
        assert forced.status_code == 200 and forced.json()["rollout"]["canary_version"] == "1.1.0"
        code, out, _ = await cli("slo", "status")
        assert code == 1 and "slo: burning  availability 75% (1 bad of 4 turns)" in out, out
        assert "alert page: FIRING" in out and "frozen: error budget of slo burning" in out
        entries = (await http.get("/v1/audit")).json()["entries"]
    actions = [e["action"] for e in entries]
    assert actions.count("rollout.frozen") == 1 and actions.count("publish.frozen") == 1
    firing = [e for e in entries if e["action"] == "slo.alert_firing"]
    # the pipeline's alert and the deployment's (``*``: every pipeline) fired, once each
    assert sorted((e["subject"], e["detail"]["alert"]) for e in firing) == [
        ("*", "page"), ("slo", "page")]
    frozen = next(e for e in entries if e["action"] == "rollout.frozen")
    assert frozen["detail"]["reason"] == "error_budget_freeze"
    override = [e for e in entries if e["action"] == "slo.freeze_overridden"]
    assert len(override) == 1 and override[0]["actor"] != "control-plane:slo"
