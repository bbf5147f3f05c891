"""A tenant's provider policy and provider health choose a served session's LLM
(F-056, F-060).

``rspp serve`` (embedded control plane on SQLite) runs a text chat whose spec names only
the offline ``local`` LLM. The OpenAI and Anthropic adapters point, through their
``*_BASE_URL`` variables, at :class:`~rspp.testing.fakes.FakeProviderServers` on loopback,
each answering with its own sentence, so the reply says which provider the session used.

* F-056: tenant ``acme``'s policy keeps ``local`` by default, sends ``language: de``
  sessions to ``anthropic`` and ``region: eu`` + ``cost_tier: premium`` ones to
  ``openai``; tenant ``globex``'s policy uses ``openai``. Each session's timeline holds the
  frozen plan's ``provider_bindings`` and the policy snapshot it came from, and the
  control plane's audit log (``GET /v1/audit``) holds each session's ``policy.select``
  entry: its attributes, the providers chosen and the trace of why (the rule that matched,
  the health-driven switch).
* F-060: the provider's health is reported ``unhealthy`` to the control plane
  (``POST /v1/providers/anthropic/health``, what a health probe or an error-rate monitor
  does): the next ``de`` session goes to the policy's fallback (``openai``) and Anthropic
  gets no request; reported ``healthy`` again, the next session is back on Anthropic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, route_session
from rspp.testing import TEXT_CHAT_SPEC
from rspp.testing.fakes import FakeProviderServers
from rspp.transports import ReplyText, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "policy-admin-key"
SAID = {"openai": "openai answered this", "anthropic": "anthropic answered this",
        "local": "My name is Rusty"}
ACME = {
    "providers": {"llm": "local"},
    "rules": [
        {"match": {"language": "de"}, "providers": {"llm": "anthropic"}},
        {"match": {"region": "eu", "cost_tier": "premium"}, "providers": {"llm": "openai"}},
    ],
    "fallback_chains": {"llm": ["openai"]},
}
GLOBEX = {"providers": {"llm": "openai"}}


def _who(reply: str) -> str:
    found = [name for name, text in SAID.items() if reply.startswith(text)]
    assert len(found) == 1, reply
    return found[0]


async def _ask(url: str, tenant: str, attrs: Mapping[str, str] | None = None
               ) -> tuple[str, str]:
    """One session, one question: (session id, which provider answered)."""
    target = await route_session(url, tenant_id=tenant, api_key=KEY, pipeline_name="text-chat",
                                 attributes=attrs)
    replies: list[str] = []
    async with await LiveClient.connect(target.url, token=target.token) as client:
        events = client.events()
        await client.send_text("what is your name")
        async for ev in events:
            if isinstance(ev, ReplyText) and ev.final:
                replies.append(ev.text)
            if isinstance(ev, TurnEvent) and ev.state == "close":
                break
        await client.end()
        async for _ in events:
            pass
    assert len(replies) == 1, replies
    return target.session_id, _who(replies[0])


async def _health(http: httpx.AsyncClient, provider: str, status: str) -> None:
    res = await http.post(f"/v1/providers/{provider}/health",
                          json={"status": status, "error_rate": 0.9 if status != "healthy"
                                else 0.0})
    assert res.status_code < 300, res.text


async def _selections(http: httpx.AsyncClient) -> dict[str, Any]:
    """Session id -> its ``policy.select`` audit detail."""
    res = await http.get("/v1/audit", params={"limit": 1000})
    assert res.status_code == 200, res.text
    return {e["subject"]: e["detail"] for e in res.json()["entries"]
            if e["action"] == "policy.select"}


async def _scenario(url: str, fakes: FakeProviderServers
                    ) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """(label, session id, provider that answered) of every session, in order; each
    session's ``policy.select`` audit detail."""
    out: list[tuple[str, str, str]] = []
    auth = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
        for tenant, body in (("acme", ACME), ("globex", GLOBEX)):
            res = await http.post(f"/v1/configs/policy/{tenant}", json={"body": body})
            assert res.status_code < 300, res.text

        async def ask(label: str, tenant: str, attrs: Mapping[str, str] | None = None) -> None:
            sid, who = await _ask(url, tenant, attrs)
            out.append((label, sid, who))

        await ask("acme", "acme")
        await ask("acme-de", "acme", {"language": "de"})
        await ask("acme-eu-premium", "acme", {"region": "eu", "cost_tier": "premium"})
        await ask("acme-eu-basic", "acme", {"region": "eu", "cost_tier": "basic"})
        await ask("globex", "globex")
        before = len(fakes.anthropic.requests)
        await _health(http, "anthropic", "unhealthy")
        await ask("acme-de-anthropic-unhealthy", "acme", {"language": "de"})
        out.append(("anthropic-requests-while-unhealthy", "",
                    str(len(fakes.anthropic.requests) - before)))
        await _health(http, "anthropic", "healthy")
        await ask("acme-de-anthropic-recovered", "acme", {"language": "de"})
        audit = await _selections(http)
    return out, audit


Scenario = Callable[[str, FakeProviderServers],
                    Awaitable[tuple[list[tuple[str, str, str]], dict[str, Any]]]]


def _served(serve_process: Callable[..., ServeProcess], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch, scenario: Scenario, *args: str
            ) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """Run ``scenario`` against ``rspp serve`` of the text chat (extra ``args``) whose
    OpenAI/Anthropic adapters reach the fakes, each answering with its own sentence."""
    spec = tmp_path / "chat.yaml"
    spec.write_text(TEXT_CHAT_SPEC)
    with FakeProviderServers(api_key="policy-fake-key") as fakes:
        fakes.openai.reply = lambda _messages: SAID["openai"]
        fakes.anthropic.reply = lambda _messages: SAID["anthropic"]
        for name, value in fakes.env.items():
            monkeypatch.setenv(name, value)
        srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                            "--api-key", KEY, *args).wait_ready()
        got = asyncio.run(asyncio.wait_for(scenario(srv.url, fakes), 240))
        srv.terminate()
    return got


def test_policy_and_provider_health_choose_the_served_sessions_provider(
    serve_process: Callable[..., ServeProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timelines = tmp_path / "timelines"
    got, audit = _served(serve_process, tmp_path, monkeypatch, _scenario, "--timeline-dir",
                         str(timelines), "--record-level", "L1")

    answered = {label: who for label, _, who in got}
    assert answered == {
        "acme": "local", "acme-de": "anthropic", "acme-eu-premium": "openai",
        "acme-eu-basic": "local", "globex": "openai",
        "acme-de-anthropic-unhealthy": "openai", "anthropic-requests-while-unhealthy": "0",
        "acme-de-anthropic-recovered": "anthropic",
    }, got
    # traceable: every session's frozen plan names the provider and the policy snapshot
    for label, sid, who in got:
        if not sid:
            continue
        plans = _plans(timelines / f"{sid}.jsonl")
        assert [p["provider_bindings"]["llm"] for p in plans] == [who], (label, plans)
        tenant = label.split("-", 1)[0]
        ref = plans[0]["snapshot_provenance"]["policy_resolution_snapshot"]
        assert ref.startswith(f"pr:{tenant}:v1:"), ref
        # and the control plane's audit says why, for that session
        detail = audit[sid]
        assert detail["provider_bindings"]["llm"] == who, (label, detail)
        assert detail["policy_version"] == 1
    sessions = {label: sid for label, sid, _ in got}
    de, eu = audit[sessions["acme-de"]], audit[sessions["acme-eu-premium"]]
    assert de["attributes"] == {"language": "de"}
    assert "rule[0] {'language': 'de'} -> {'llm': 'anthropic'}" in de["trace"]
    assert eu["attributes"] == {"region": "eu", "cost_tier": "premium"}
    assert any(t.startswith("rule[1]") for t in eu["trace"])
    assert not any(t.startswith("rule[") for t in audit[sessions["acme-eu-basic"]]["trace"])
    assert "llm: anthropic unhealthy, using openai" in \
        audit[sessions["acme-de-anthropic-unhealthy"]]["trace"]


def _plans(timeline: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in timeline.read_text().splitlines()]
    return [ln["record"] for ln in lines if ln["kind"] == "resolved_turn_plan"]


PRICED = {"price_routing": {"llm": {"candidates": ["openai", "anthropic"],
                                    "max_age_ms": 600000}}}


async def _price(http: httpx.AsyncClient, provider: str, price: float) -> None:
    res = await http.post(f"/v1/providers/{provider}/health",
                          json={"status": "healthy", "price_usd": price})
    assert res.status_code < 300, res.text


async def _priced_scenario(url: str, _fakes: FakeProviderServers
                           ) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    out: list[tuple[str, str, str]] = []
    auth = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
        res = await http.post("/v1/configs/policy/acme", json={"body": PRICED})
        assert res.status_code < 300, res.text

        async def ask(label: str) -> None:
            sid, who = await _ask(url, "acme")
            out.append((label, sid, who))

        await ask("no-prices")  # signals missing: the deterministic default order
        await _price(http, "openai", 2.0)
        await _price(http, "anthropic", 1.0)
        await ask("anthropic-cheaper")
        await _price(http, "openai", 0.5)  # a price change
        await ask("openai-cheaper")
        await _health(http, "openai", "unhealthy")  # availability beats price
        await ask("openai-unavailable")
        await _health(http, "openai", "healthy")
        stale = dict(PRICED, price_routing={"llm": {"candidates": ["anthropic", "openai"],
                                                    "max_age_ms": 1}})
        res = await http.post("/v1/configs/policy/acme", json={"body": stale})
        assert res.status_code < 300, res.text
        await ask("prices-stale")  # older than 1 ms: the default order (anthropic first)
        audit = await _selections(http)
    return out, audit


def test_price_and_availability_signals_route_served_sessions_with_a_default_fallback(
    serve_process: Callable[..., ServeProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F-066: a tenant policy routes the LLM by live price/availability signals reported
    to the control plane (``price_usd`` with the provider's health): the cheapest healthy
    candidate serves each new session, a price change or an unavailable provider moves the
    next session, and missing or stale prices fall back to the candidates' own order.
    Every session's ``policy.select`` audit entry says which it was and why."""
    got, audit = _served(serve_process, tmp_path, monkeypatch, _priced_scenario)

    assert [(label, who) for label, _, who in got] == [
        ("no-prices", "openai"), ("anthropic-cheaper", "anthropic"),
        ("openai-cheaper", "openai"), ("openai-unavailable", "anthropic"),
        ("prices-stale", "anthropic")]
    why = {label: " ".join(audit[sid]["trace"]) for label, sid, _ in got}
    assert "ordered by health signals (prices missing) -> ['openai', 'anthropic']" in \
        why["no-prices"], why
    assert "ordered by health+price signals" in why["anthropic-cheaper"]
    assert "anthropic=1" in why["anthropic-cheaper"] and "openai=2" in why["anthropic-cheaper"]
    assert "openai=0.5" in why["openai-cheaper"]
    assert "-> ['anthropic', 'openai']" in why["openai-unavailable"]
    assert "ordered by health signals (prices stale); reported prices anthropic=1, " \
        "openai=0.5 -> ['anthropic', 'openai']" in why["prices-stale"], why
    for label, sid, who in got:
        assert audit[sid]["provider_bindings"]["llm"] == who, label
