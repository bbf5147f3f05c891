"""Region-aware routing (F-110, F-112): real runtimes in two regions on loopback.

``rspp cp serve`` (SQLite and PostgreSQL) and two ``rspp serve --region X
--control-plane`` runtimes. A route carrying the client's measured latency per region
(``region_latency_ms``) is placed in the lowest-latency region with room; an operator
declares an incident in that region (``rspp cp region incident``) and new sessions go to
the other region, where they run; closing the incident brings them back. Incidents are
listed (``rspp cp region list``) and audited. A provider reported unhealthy in one region
only (``POST /v1/providers/{id}/health`` with ``region``) turns new sessions away from that
region the same way, and its report is audited and listed per region.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, SessionRefusedError, session_url
from rspp.testing import TEXT_CHAT_SPEC

if TYPE_CHECKING:
    from tests.e2e.conftest import ControlPlaneServer, ServeProcess

pytestmark = pytest.mark.e2e

ADMIN = "region-admin-key-0123456789"
RSPP = [sys.executable, "-c", "from rspp.cli import main; main()"]
NEAR_EU = {"eu": 15, "us": 120}


def _until_ended(url: str, sid: str, timeout_s: float = 120) -> None:
    """Poll the control plane's record of ``sid`` until its runtime reported it ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        record = httpx.get(f"{url}/v1/sessions/{sid}", timeout=60,
                           headers={"Authorization": f"Bearer {ADMIN}"}).json()
        if record.get("status") == "ended":
            return
        assert time.monotonic() < deadline, record
        time.sleep(0.1)


def _route(url: str, latency: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/v1/sessions/route", timeout=60,
                      headers={"Authorization": f"Bearer {ADMIN}"},
                      json={"tenant_id": "acme", "pipeline_name": "text-chat",
                            "region_latency_ms": latency})


@pytest.mark.timeout(300)  # two runtimes start: minutes on a loaded machine
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_routes_follow_client_latency_and_avoid_a_region_in_an_incident(
    store: str, cp_serve: Callable[..., ControlPlaneServer],
    serve_process: Callable[..., ServeProcess], cp_json: Callable[..., dict[str, Any]],
    text_turn: Callable[..., Any], metric_sample: Callable[..., float | None],
) -> None:
    async def answer(route: dict[str, Any]) -> str:
        url = session_url(route["endpoint"], route["session_id"])
        async with await LiveClient.connect(url, token=route["token"]) as client:
            text: str = await text_turn(client, "what is your name")
            await client.end()
        return text

    cp = cp_serve(store, ADMIN)
    published = httpx.post(f"{cp.url}/v1/pipelines", timeout=60,
                           headers={"Authorization": f"Bearer {ADMIN}"},
                           json={"spec": TEXT_CHAT_SPEC, "filename": "chat.yaml"})
    assert published.status_code == 201, published.text
    runtimes = {region: serve_process(
        "--control-plane", cp.url, "--api-key", ADMIN, "--region", region, "--runtime-id",
        f"rt-{region}", "--heartbeat-interval", "0.3").wait_ready() for region in ("eu", "us")}

    def placed(latency: dict[str, Any]) -> dict[str, Any]:
        resp = _route(cp.url, latency)
        assert resp.status_code == 201, resp.text
        out: dict[str, Any] = resp.json()
        return out

    near_eu = placed(NEAR_EU)
    assert near_eu["runtime_id"] == "rt-eu"
    near_us = placed({"eu": 140, "us": 10})
    assert near_us["runtime_id"] == "rt-us"
    assert "name is" in asyncio.run(asyncio.wait_for(answer(near_eu), 120))
    # autoscaling inputs (F-104): the control plane's /metrics counts its admissions (the
    # two routes); the runtime's counts what its nodes reported (the LLM's reply tokens)
    cp_metrics = httpx.get(f"{cp.url}/metrics", timeout=60,
                           headers={"Authorization": f"Bearer {ADMIN}"}).text
    assert metric_sample(cp_metrics, "rspp_cp_admission_decisions_total", tenant="acme",
                         outcome="admit") == 2, cp_metrics
    rt_metrics = httpx.get(f"{runtimes['eu'].url}/metrics", timeout=60).text
    assert (metric_sample(rt_metrics, "rspp_node_metric_count", node_id="llm",
                          metric="llm_reply_tokens") or 0) >= 1, rt_metrics

    # single authority across regions (F-111): the session routed to eu cannot also run in
    # us: its token opens it only on its runtime, and the lease is held by one holder
    async def split_brain() -> str:
        url = session_url(near_us["endpoint"], near_eu["session_id"])
        with pytest.raises(SessionRefusedError) as refused:
            await LiveClient.connect(url, token=near_eu["token"])
        return str(refused.value)

    assert "token_wrong_runtime" in asyncio.run(asyncio.wait_for(split_brain(), 60))
    grab = httpx.post(f"{cp.url}/v1/leases/{near_us['session_id']}/acquire", timeout=60,
                      headers={"Authorization": f"Bearer {ADMIN}"}, json={"holder": "rt-eu"})
    assert grab.status_code == 409, grab.text

    # region A degraded by an operator: routing shifts to region B, where sessions run.
    # The session that ran in eu ended (its client said so); the control plane hears it
    # from the runtime in the background: wait for that record, not for luck
    _until_ended(cp.url, near_eu["session_id"])
    opened = cp_json(cp.url, ADMIN, "region", "incident", "eu", "--reason",
                     "stt provider outage in eu")
    # (no session is in flight in eu: the one that ran there ended)
    assert opened == {"region": "eu", "incident": True, "changed": True, "sessions": []}
    regions = {r["region"]: r for r in cp_json(cp.url, ADMIN, "region", "list")["regions"]}
    assert regions["eu"]["incident"]["reason"] == "stt provider outage in eu"
    assert regions["eu"]["healthy"] == 1 and regions["us"]["incident"] is None
    shifted = placed(NEAR_EU)
    assert shifted["runtime_id"] == "rt-us"
    assert "name is" in asyncio.run(asyncio.wait_for(answer(shifted), 120))
    # the incident is observable in the audit log
    audit = httpx.get(f"{cp.url}/v1/audit", headers={"Authorization": f"Bearer {ADMIN}"},
                      timeout=60).json()["entries"]
    incident = next(e for e in audit if e["action"] == "region.incident_opened")
    assert incident["subject"] == "eu"
    assert incident["detail"]["reason"] == "stt provider outage in eu"

    assert cp_json(cp.url, ADMIN, "region", "clear", "eu")["changed"] is True
    assert placed(NEAR_EU)["runtime_id"] == "rt-eu"

    # a provider outage in eu only (F-112): new sessions go to us; the report is audited,
    # listed per region, and leaves the provider's fleet-wide health alone
    def provider(status: str) -> None:
        resp = httpx.post(f"{cp.url}/v1/providers/stt-cloud/health", timeout=60,
                          headers={"Authorization": f"Bearer {ADMIN}"},
                          json={"status": status, "region": "eu", "error_rate": 0.9})
        assert resp.status_code == 200, resp.text

    provider("unhealthy")
    assert placed(NEAR_EU)["runtime_id"] == "rt-us"
    regions = {r["region"]: r for r in cp_json(cp.url, ADMIN, "region", "list")["regions"]}
    assert regions["eu"]["providers_unhealthy"] == ["stt-cloud"]
    assert regions["us"]["providers_unhealthy"] == []
    audit = httpx.get(f"{cp.url}/v1/audit", headers={"Authorization": f"Bearer {ADMIN}"},
                      timeout=60).json()["entries"]
    [outage] = [e for e in audit if e["action"] == "provider.region_health"]
    assert outage["subject"] == "eu" and outage["detail"]["status"] == "unhealthy"
    fleet_wide = httpx.get(f"{cp.url}/v1/providers/health", timeout=60,
                           headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert "stt-cloud" not in fleet_wide.get("providers", {})
    provider("healthy")
    assert placed(NEAR_EU)["runtime_id"] == "rt-eu"
    # a bad hint is refused naming the field
    bad = _route(cp.url, {"eu": -5})
    assert bad.status_code == 422 and "region_latency_ms" in bad.json()["error"]["field"]
