"""Data residency (F-168, NF-034): a tenant's sessions and artifacts stay in its regions.

``rspp cp serve`` on PostgreSQL and two ``rspp serve --control-plane`` runtimes, one in
``eu`` and one in ``us``, each storing timelines in its own region (``--timeline-dir``).
An admin restricts tenant ``acme`` to ``eu`` (``rspp cp placement set``, audited; an
operator key is refused, bad input is a 422 naming the field). A client of ``acme`` next
to ``us`` is still placed in ``eu`` (a tenant without a policy is placed in ``us``); its
timeline is written under the eu root only; the audit log records the placement and the
artifact location with the jurisdiction. Moving the session to ``us`` is refused naming
the target; with the eu runtime gone, a new ``acme`` route is refused (nothing is placed
outside) and audited, while the unrestricted tenant still gets a runtime.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, session_url
from rspp.testing import TEXT_CHAT_SPEC

if TYPE_CHECKING:
    from tests.e2e.conftest import ControlPlaneServer, ServeProcess

pytestmark = pytest.mark.e2e

ADMIN = "residency-admin-key-0123456789"
RSPP = [sys.executable, "-c", "from rspp.cli import main; main()"]
NEAR_US = {"eu": 140, "us": 10}


def _http(method: str, url: str, key: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, url, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                         **kw)


def _route(cp: str, tenant: str) -> httpx.Response:
    return _http("POST", f"{cp}/v1/sessions/route", ADMIN,
                 json={"tenant_id": tenant, "pipeline_name": "text-chat",
                       "region_latency_ms": NEAR_US})


def _audit(cp: str, action: str, subject: str) -> list[dict[str, Any]]:
    entries = _http("GET", f"{cp}/v1/audit", ADMIN).json()["entries"]
    return [e for e in entries if e["action"] == action and e["subject"] == subject]


@pytest.mark.timeout(400)
def test_a_tenant_restricted_to_eu_is_processed_and_recorded_only_in_eu(
    cp_serve: Callable[..., ControlPlaneServer], serve_process: Callable[..., ServeProcess],
    cp_json: Callable[..., dict[str, Any]], text_turn: Callable[..., Any], tmp_path: Path,
) -> None:
    cp = cp_serve("postgresql", ADMIN)
    published = _http("POST", f"{cp.url}/v1/pipelines", ADMIN,
                      json={"spec": TEXT_CHAT_SPEC, "filename": "chat.yaml"})
    assert published.status_code == 201, published.text
    roots = {region: tmp_path / f"timelines-{region}" for region in ("eu", "us")}
    runtimes = {region: serve_process(
        "--control-plane", cp.url, "--api-key", ADMIN, "--region", region,
        "--runtime-id", f"rt-{region}", "--heartbeat-interval", "0.3",
        "--timeline-dir", str(roots[region])).wait_ready() for region in ("eu", "us")}
    listed = {r["runtime_id"]: r for r in _http("GET", f"{cp.url}/v1/runtimes",
                                                ADMIN).json()["runtimes"]}
    assert listed["rt-eu"]["artifact_regions"] == ["eu"]

    # deny by default: an operator key may not set residency; bad input names the field
    key = _http("POST", f"{cp.url}/v1/keys", ADMIN, json={"role": "operator"})
    assert key.status_code == 201, key.text
    refused = _http("PUT", f"{cp.url}/v1/tenants/acme/placement", key.json()["key"],
                    json={"regions": ["eu"]})
    assert refused.status_code == 403, refused.text
    for body, field in (({"regions": []}, "regions"), ({"regions": ["eu"], "region": "x"},
                        "region"), ({"failover_mode": "teleport"}, "failover_mode"),
                        ({}, "regions"), ({"jurisdiction": "EU"}, "regions")):
        bad = _http("PUT", f"{cp.url}/v1/tenants/acme/placement", ADMIN, json=body)
        assert bad.status_code == 422, (body, bad.text)
        assert bad.json()["error"]["field"] == field, (body, bad.text)

    policy = cp_json(cp.url, ADMIN, "placement", "set", "acme", "--region", "eu",
                     "--jurisdiction", "EU")
    assert (policy["regions"], policy["jurisdiction"]) == (["eu"], "EU")
    assert cp_json(cp.url, ADMIN, "placement", "show", "acme")["regions"] == ["eu"]
    [change] = _audit(cp.url, "tenant.placement_set", "acme")
    assert change["detail"]["after"]["regions"] == ["eu"] and change["detail"]["before"] is None

    # a client next to us: the unrestricted tenant goes to us, acme stays in eu
    other = _route(cp.url, "globex")
    assert other.status_code == 201 and other.json()["runtime_id"] == "rt-us", other.text
    routed = _route(cp.url, "acme")
    assert routed.status_code == 201, routed.text
    route = routed.json()
    sid = route["session_id"]
    assert route["runtime_id"] == "rt-eu"

    async def talk() -> str:
        url = session_url(route["endpoint"], sid)
        async with await LiveClient.connect(url, token=route["token"]) as client:
            text: str = await text_turn(client, "what is your name")
            await client.end()
        return text

    assert "name is" in asyncio.run(asyncio.wait_for(talk(), 120))
    # the artifacts: under the eu root only
    assert (roots["eu"] / f"{sid}.jsonl").stat().st_size > 0
    assert not list(roots["us"].glob(f"{sid}*"))
    [placed] = _audit(cp.url, "residency.placed", sid)
    assert placed["detail"] == {"regions": ["eu"], "jurisdiction": "EU", "runtime_id": "rt-eu",
                                "region": "eu", "artifact_regions": ["eu"]}
    deadline = time.monotonic() + 60  # reported with `running`, beside the client's turn
    while not (stored := _audit(cp.url, "residency.artifacts", sid)):
        assert time.monotonic() < deadline, "no residency.artifacts audit entry"
        time.sleep(0.1)
    assert stored[0]["detail"]["region"] == "eu" and stored[0]["detail"]["within_policy"]
    assert stored[0]["detail"]["location"] == str(roots["eu"] / f"{sid}.jsonl")
    assert stored[0]["tenant_id"] == "acme"

    # an explicit move outside the regions is refused naming the target
    second = _route(cp.url, "acme").json()
    moved = subprocess.run([*RSPP, "cp", "session", "migrate", second["session_id"], "--to",
                            "rt-us", "--force", "--server", cp.url, "--api-key", ADMIN],
                           capture_output=True, text=True, timeout=120, check=False)
    assert moved.returncode == 1, moved.stdout
    assert "residency_violation" in moved.stderr and "(field: target)" in moved.stderr

    # no runtime left in eu: acme is refused (and audited), globex still placed
    status, _, _ = runtimes["eu"].terminate()
    assert status == 0
    nowhere = _route(cp.url, "acme")
    assert nowhere.status_code == 409, nowhere.text
    error = nowhere.json()["error"]
    assert (error["code"], error["field"]) == ("residency_no_runtime", "tenant_id")
    refusals = [e for e in _http("GET", f"{cp.url}/v1/audit", ADMIN).json()["entries"]
                if e["action"] == "residency.refused"]
    assert refusals and refusals[-1]["detail"]["jurisdiction"] == "EU"
    assert _route(cp.url, "globex").json()["runtime_id"] == "rt-us"
    # cleared: acme is unrestricted again
    assert cp_json(cp.url, ADMIN, "placement", "clear", "acme")["cleared"] is True
    assert _route(cp.url, "acme").json()["runtime_id"] == "rt-us"
