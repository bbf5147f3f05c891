"""A tenant's policy inserts a compliance node into its served sessions (F-062).

``rspp serve`` (embedded control plane on SQLite) runs a text chat (typed text -> the
offline ``local`` LLM -> sentence segmenter -> reply text) that has no compliance node.
Tenant ``acme``'s policy defines one (``compliance_nodes.guard``: block replies naming
"Rusty") and inserts it; tenant ``globex`` has no policy. Asked its name, the assistant
answers ``globex`` as it always does, while ``acme``'s session speaks the replacement:
the node was spliced in before the reply leaves (on the segmenter -> output edge). The
acme session's timeline holds the node's audit record (``compliance:block:1`` from node
``guard``) and plans of another graph (``graph_definition_ref`` hash) than globex's; the
control plane audited the insertion (``policy.compliance_insert``) for that session.
A policy naming a node that is neither defined nor an insertable type is refused at
publish (422 naming the field).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, route_session
from rspp.testing import with_patient_budgets
from rspp.transports import ReplyText, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "compliance-admin-key"
REPLACEMENT = "I keep my name to myself."
SPEC = with_patient_budgets("""name: chat-sentences
version: 1.0.0
profile: simple/v1
providers:
  llm: {primary: local}
nodes:
  - {id: llm, type: llm}
  - {id: segmenter, type: sentence_segmenter}
edges:
  - {from: input.text, to: llm.text}
  - {from: llm.text, to: segmenter.text}
  - {from: segmenter.text, to: output.text}
""")
POLICY = {
    "providers": {"llm": "local"},
    "compliance_nodes": {"guard": {"type": "compliance", "params": {
        "blocked_terms": ["rusty"], "replacement": REPLACEMENT}}},
    "insert_compliance_nodes": ["guard"],
}


async def _ask(url: str, tenant: str) -> tuple[str, str]:
    target = await route_session(url, tenant_id=tenant, api_key=KEY,
                                 pipeline_name="chat-sentences")
    said: list[str] = []
    async with await LiveClient.connect(target.url, token=target.token) as client:
        events = client.events()
        await client.send_text("what is your name")
        async for ev in events:
            if isinstance(ev, ReplyText) and ev.final:
                said.append(ev.text)
            if isinstance(ev, TurnEvent) and ev.state == "close":
                break
        await client.end()
        async for _ in events:
            pass
    return target.session_id, " ".join(said)


async def _scenario(url: str) -> tuple[dict[str, tuple[str, str]], list[Any], httpx.Response]:
    auth = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
        res = await http.post("/v1/pipelines", json={"spec": SPEC, "filename": "chat.yaml"})
        assert res.status_code == 201, res.text
        res = await http.post("/v1/configs/policy/acme", json={"body": POLICY})
        assert res.status_code < 300, res.text
        bad = await http.post("/v1/configs/policy/acme", json={"body": dict(
            POLICY, insert_compliance_nodes=["guard", "nowhere"])})
        got = {tenant: await _ask(url, tenant) for tenant in ("acme", "globex")}
        audit = (await http.get("/v1/audit", params={"limit": 1000})).json()["entries"]
    return got, audit, bad


def _records(timeline: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in timeline.read_text().splitlines()]


def test_a_tenant_policy_inserts_a_compliance_node_into_its_served_sessions(
    serve_process: Callable[..., ServeProcess], tmp_path: Path, text_chat_spec: str
) -> None:
    spec = tmp_path / "chat.yaml"
    spec.write_text(text_chat_spec)
    timelines = tmp_path / "timelines"
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--timeline-dir", str(timelines),
                        "--record-level", "L1").wait_ready()
    got, audit, bad = asyncio.run(asyncio.wait_for(_scenario(srv.url), 180))
    srv.terminate()

    (acme_sid, acme_said), (globex_sid, globex_said) = got["acme"], got["globex"]
    assert acme_said == REPLACEMENT, acme_said
    assert globex_said.startswith("My name is Rusty"), globex_said
    acme, globex = _records(timelines / f"{acme_sid}.jsonl"), \
        _records(timelines / f"{globex_sid}.jsonl")
    audits = [(ln["record"].get("node_id"), ln["record"].get("reason")) for ln in acme
              if str(ln["record"].get("reason", "")).startswith("compliance:")]
    assert audits == [("guard", "compliance:block:1")]
    assert not [ln for ln in globex if str(ln["record"].get("reason", "")).startswith(
        "compliance:")]
    refs = {name: {ln["record"]["graph_definition_ref"] for ln in lines
                   if ln["kind"] == "resolved_turn_plan"}
            for name, lines in (("acme", acme), ("globex", globex))}
    assert len(refs["acme"]) == len(refs["globex"]) == 1 and refs["acme"] != refs["globex"]
    assert all(r.startswith("chat-sentences@1.0.0#") for r in refs["acme"] | refs["globex"])
    inserted = [(e["subject"], e["detail"]["nodes"]) for e in audit
                if e["action"] == "policy.compliance_insert"]
    assert inserted == [(acme_sid, ["guard"])]
    assert bad.status_code == 422, bad.text
    assert "insert_compliance_nodes[1]" in bad.text
