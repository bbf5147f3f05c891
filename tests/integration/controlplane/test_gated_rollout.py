"""Gated rollouts through the HTTP API on SQLite and PostgreSQL (issue 18).

Runtimes' gate samples go through ``POST /v1/gates/samples`` (fleet operator key,
validated, size-limited); the control plane evaluates the canary and the baseline
over a sliding window with the gates of ``rspp slo report`` and promotes step by step
or rolls back, each decision an audit entry with the gate table; ``GET
/v1/pipelines/{name}/rollout/status`` and ``/metrics`` report it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rspp.controlplane import ControlPlane, create_app

from .conftest import spec_version

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer admin-secret"}
NAME = "voice-assistant"


@pytest.fixture
async def http(cp: ControlPlane) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(cp))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp",
                                 headers=ADMIN) as client:
        for version in ("1.0.0", "1.1.0"):
            body = {"spec": spec_version(version, description=f"v{version}")}
            assert (await client.post("/v1/pipelines", json=body)).status_code == 201
        yield client


def _samples(version: str, n: int, *, first_output_ms: float = 300.0,
             start: int = 0) -> list[dict[str, Any]]:
    return [{"pipeline_name": NAME, "pipeline_version": version, "tenant_id": "acme",
             "sample": {"session_id": f"s{version}-{i}", "turn_id": f"t{i}",
                        "turn_open_ms": 1, "first_output_ms": first_output_ms,
                        "end_to_end_ms": first_output_ms + 100, "outputs_checked": 1,
                        "evidence_complete": True, "lifecycle_ok": True}}
            for i in range(start, start + n)]


async def _report(http: httpx.AsyncClient, samples: list[dict[str, Any]],
                  dropped: int = 0) -> dict[str, Any]:
    r = await http.post("/v1/gates/samples",
                        json={"runtime_id": "rt-1", "samples": samples, "dropped": dropped})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _resolve(http: httpx.AsyncClient, session: str) -> str:
    r = await http.get(f"/v1/pipelines/{NAME}/resolve",
                       params={"tenant_id": "acme", "session_id": session})
    version: str = r.json()["pipeline_version"]
    return version


async def test_healthy_canary_is_promoted_step_by_step_to_100(
        http: httpx.AsyncClient) -> None:
    await http.post(f"/v1/pipelines/{NAME}/rollback", json={"to": "1.0.0"})
    r = await http.post(f"/v1/pipelines/{NAME}/rollout", json={
        "canary": "1.1.0", "percent": 5, "steps": [25, 100], "promote_after": 4,
        "rollback_on_gates": True, "window": 10, "min_samples": 3})
    assert r.status_code == 200, r.text
    await _report(http, _samples("1.0.0", 5))
    assert (await _report(http, _samples("1.1.0", 3)))["decisions"] == []  # 3 < 4 turns
    first = (await _report(http, _samples("1.1.0", 1, start=3)))["decisions"]
    assert [(d["action"], d["from_percent"], d["to_percent"]) for d in first] == [
        ("promote", 5.0, 25.0)]
    status = (await http.get(f"/v1/pipelines/{NAME}/rollout/status")).json()
    assert status["percent"] == 25.0 and status["next_step"] == 100.0
    assert status["turns_at_step"] == 0 and status["last_decision"]["action"] == "promote"
    gates = {g["gate"]: g for g in status["canary"]["gates"]}
    assert gates[2]["status"] == "pass" and gates[2]["p95"] == 300.0 and gates[2]["count"] == 4
    assert status["baseline"]["version"] == "1.0.0" and status["baseline"]["samples"] == 5
    done = (await _report(http, _samples("1.1.0", 4, start=4)))["decisions"]
    assert [d["action"] for d in done] == ["complete"]
    rollout = (await http.get(f"/v1/pipelines/{NAME}/rollout")).json()["rollout"]
    assert rollout["stable_version"] == "1.1.0" and rollout["canary_version"] is None
    assert {await _resolve(http, f"new-{i}") for i in range(20)} == {"1.1.0"}
    audit = (await http.get("/v1/audit")).json()["entries"]
    actions = [e["action"] for e in audit if e["action"].startswith("rollout.gate_")]
    assert actions == ["rollout.gate_promote", "rollout.gate_complete"]
    # the policy decided its last step: more samples decide nothing
    assert (await _report(http, _samples("1.1.0", 5, start=8)))["decisions"] == []


async def test_failing_canary_is_rolled_back_with_its_gate_table_audited(
        http: httpx.AsyncClient) -> None:
    await http.post(f"/v1/pipelines/{NAME}/rollback", json={"to": "1.0.0"})
    r = await http.post(f"/v1/pipelines/{NAME}/rollout", json={
        "canary": "1.1.0", "percent": 50, "promote_after": 100, "rollback_on_gates": True,
        "window": 10, "min_samples": 3})
    assert r.status_code == 200, r.text
    await _report(http, _samples("1.0.0", 5))
    await _report(http, _samples("1.1.0", 2, first_output_ms=2600))  # below min samples
    assert (await http.get(f"/v1/pipelines/{NAME}/rollout")).json()["rollout"][
        "canary_version"] == "1.1.0"
    made = (await _report(http, _samples("1.1.0", 1, first_output_ms=2600, start=2),
                          dropped=7))["decisions"]
    assert [d["action"] for d in made] == ["rollback"]
    assert "gate 2 (first output) failed: p95 2600 ms" in made[0]["reason"]
    assert {await _resolve(http, f"after-{i}") for i in range(40)} == {"1.0.0"}
    entry = next(e for e in (await http.get("/v1/audit")).json()["entries"]
                 if e["action"] == "rollout.gate_rollback")
    assert entry["actor"] == "control-plane:gates" and entry["detail"]["failing_gates"] == [2, 7]
    table = {g["gate"]: g for g in entry["detail"]["canary"]["gates"]}
    assert table[2]["status"] == "fail" and table[2]["threshold"] == "p95 <= 1500 ms"
    assert entry["detail"]["baseline"]["version"] == "1.0.0"
    status = (await http.get(f"/v1/pipelines/{NAME}/rollout/status")).json()
    assert status["policy"]["state"] == "rolled_back" and status["next_step"] is None
    metrics = await http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'rspp_cp_gate_pass{gate="2",pipeline="voice-assistant",version="1.1.0"} 0.0' in text
    assert 'rspp_cp_gate_pass{gate="2",pipeline="voice-assistant",version="1.0.0"} 1.0' in text
    assert "rspp_cp_gate_samples_dropped_by_runtimes_total 7.0" in text
    assert 'rspp_cp_rollout_decisions_total{action="rollback"} 1.0' in text


async def test_gate_sample_reports_are_validated_and_fleet_only(
        http: httpx.AsyncClient) -> None:
    bad = _samples("1.1.0", 1)
    bad[0]["sample"]["first_output_ms"] = -5
    r = await http.post("/v1/gates/samples", json={"runtime_id": "rt-1", "samples": bad})
    assert r.status_code == 422 and "first_output_ms" in r.json()["error"]["field"]
    r = await http.post("/v1/gates/samples",
                        json={"runtime_id": "rt-1", "samples": _samples("1.1.0", 501)})
    assert r.status_code in (413, 422)
    key = (await http.post("/v1/keys", json={"role": "operator", "tenant_id": "acme"})).json()
    r = await http.post("/v1/gates/samples", headers={"Authorization": f"Bearer {key['key']}"},
                        json={"runtime_id": "rt-1", "samples": _samples("1.1.0", 1)})
    assert r.status_code == 403
    assert (await http.get("/metrics", headers={"Authorization": ""})).status_code == 401
    r = await http.post(f"/v1/pipelines/{NAME}/rollout", json={
        "canary": "1.1.0", "percent": 5, "window": 3, "min_samples": 4})
    assert r.status_code == 422 and r.json()["error"]["field"] == "min_samples"
