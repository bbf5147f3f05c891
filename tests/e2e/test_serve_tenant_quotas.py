"""A tenant's quotas hold across all its served sessions, at session start and per turn,
and are exported per tenant (F-050).

``rspp serve`` (embedded control plane on SQLite), tenant ``acme`` limited to 2 turns and
3 new sessions per minute. Two acme sessions each get one question answered; the third
question (in either session) is deferred (``turn_deferred`` naming
``turns_per_minute:2``): the quota is the tenant's on this runtime, not each session's.
Tenant ``globex`` (default quotas) is answered meanwhile. A fourth acme session in the
minute is refused at its route (``sessions_per_minute``). The runtime's ``/metrics``
counts the decisions per tenant (``rspp_admission_decisions_total{tenant,at,outcome}``)
and its admitted sessions (``rspp_admission_active_sessions{tenant}``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, SessionRefusedError, route_session
from rspp.transports import ErrorEvent, ReplyText, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "quota-admin-key"


async def _ask(client: LiveClient, events: Any, text: str) -> str:
    """``answered`` or the refusal's message."""
    await client.send_text(text)
    async for ev in events:
        if isinstance(ev, ErrorEvent):
            assert ev.code == "turn_deferred", ev
            return ev.message
        if isinstance(ev, ReplyText) and ev.final:
            async for rest in events:  # the turn's close
                if isinstance(rest, TurnEvent) and rest.state == "close":
                    break
            return "answered"
    raise AssertionError("the session ended before an answer")


async def _scenario(url: str) -> tuple[list[str], str, str]:
    async def connect(tenant: str) -> LiveClient:
        target = await route_session(url, tenant_id=tenant, api_key=KEY,
                                     pipeline_name="text-chat")
        return await LiveClient.connect(target.url, token=target.token)

    said: list[str] = []
    a, b = await connect("acme"), await connect("acme")
    ea, eb = a.events(), b.events()
    said.append(await _ask(a, ea, "what is your name"))
    said.append(await _ask(b, eb, "what time is it"))
    said.append(await _ask(b, eb, "tell me a joke"))  # the tenant's third turn this minute
    said.append(await _ask(a, ea, "what is the date"))
    g = await connect("globex")
    said.append(await _ask(g, g.events(), "what is your name"))
    refused = ""
    await route_session(url, tenant_id="acme", api_key=KEY, pipeline_name="text-chat")
    try:  # the fourth acme session of the minute
        await route_session(url, tenant_id="acme", api_key=KEY, pipeline_name="text-chat")
    except SessionRefusedError as exc:
        refused = str(exc)
    for client in (a, b, g):
        await client.end()
        await client.close()
    async with httpx.AsyncClient(timeout=30) as http:
        metrics = (await http.get(f"{url}/metrics",
                                  headers={"Authorization": f"Bearer {KEY}"})).text
    return said, refused, metrics


def _value(sample: Callable[..., float | None], metrics: str, name: str,
           **labels: str) -> float:
    return sample(metrics, name, **labels) or 0.0


def test_tenant_quotas_hold_across_its_served_sessions_and_are_exported_per_tenant(
    serve_process: Callable[..., ServeProcess], tmp_path: Path, text_chat_spec: str,
    metric_sample: Callable[..., float | None]
) -> None:
    spec = tmp_path / "chat.yaml"
    spec.write_text(text_chat_spec)
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY).wait_ready()
    res = httpx.post(f"{srv.url}/v1/configs/admission/acme", timeout=30,
                     headers={"Authorization": f"Bearer {KEY}"},
                     json={"body": {"turns_per_minute": 2, "sessions_per_minute": 3}})
    assert res.status_code < 300, res.text
    said, refused, metrics = asyncio.run(asyncio.wait_for(_scenario(srv.url), 180))
    srv.terminate()

    assert said[:2] == ["answered", "answered"]
    assert all("turns_per_minute:2" in s for s in said[2:4]), said
    assert said[4] == "answered"  # another tenant is not held by acme's quota
    assert "sessions_per_minute=3" in refused, refused
    decided = {(t, at, o): _value(metric_sample, metrics, "rspp_admission_decisions_total",
                                  tenant=t, at=at, outcome=o)
               for t in ("acme", "globex") for at in ("session", "turn")
               for o in ("admit", "defer")}
    assert decided[("acme", "turn", "admit")] == 2
    assert decided[("acme", "turn", "defer")] == 2
    assert decided[("acme", "session", "admit")] == 2
    assert decided[("globex", "turn", "admit")] == 1
    assert decided[("globex", "turn", "defer")] == 0
    # the ended sessions left the tenant's count (the client ended them before the scrape
    # is not awaited: only the bound is certain)
    assert _value(metric_sample, metrics, "rspp_admission_active_sessions", tenant="acme") <= 2


async def _token_scenario(url: str) -> tuple[list[str], str]:
    said: list[str] = []
    for tenant in ("acme", "acme", "globex"):
        target = await route_session(url, tenant_id=tenant, api_key=KEY,
                                     pipeline_name="text-chat")
        async with await LiveClient.connect(target.url, token=target.token) as client:
            events = client.events()
            said.append(await _ask(client, events, "what is your name"))
            await client.end()
            async for _ in events:
                pass
    async with httpx.AsyncClient(timeout=30) as http:
        metrics = (await http.get(f"{url}/metrics",
                                  headers={"Authorization": f"Bearer {KEY}"})).text
    return said, metrics


def test_a_tenants_llm_tokens_per_minute_defer_its_next_turns_on_every_session(
    serve_process: Callable[..., ServeProcess], tmp_path: Path, text_chat_spec: str,
    metric_sample: Callable[..., float | None]
) -> None:
    """The tenant's token quota (NF-017 spend per tenant): the answer of ~9 tokens uses up
    ``llm_tokens_per_minute: 5``; the tenant's next turn, in a new session, is deferred
    naming the quota, while another tenant is answered."""
    spec = tmp_path / "chat.yaml"
    spec.write_text(text_chat_spec)
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY).wait_ready()
    res = httpx.post(f"{srv.url}/v1/configs/admission/acme", timeout=30,
                     headers={"Authorization": f"Bearer {KEY}"},
                     json={"body": {"llm_tokens_per_minute": 5}})
    assert res.status_code < 300, res.text
    bad = httpx.post(f"{srv.url}/v1/configs/admission/acme", timeout=30,
                     headers={"Authorization": f"Bearer {KEY}"},
                     json={"body": {"llm_tokens_per_minute": 0}})
    said, metrics = asyncio.run(asyncio.wait_for(_token_scenario(srv.url), 180))
    srv.terminate()

    assert bad.status_code == 422 and "llm_tokens_per_minute" in bad.text, bad.text
    assert said[0] == "answered"
    assert "llm_tokens_per_minute:5" in said[1], said
    assert said[2] == "answered"
    assert _value(metric_sample, metrics, "rspp_admission_decisions_total", tenant="acme",
                  at="turn", outcome="defer") == 1
