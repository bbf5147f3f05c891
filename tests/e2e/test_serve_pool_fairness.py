"""Fair queueing across tenants in a runtime's shared execution pool (F-174, NF-033).

``rspp serve --pool-limit llm=1 --pool-fairness tenant``: one LLM call at a time across
all sessions of the runtime, and when it is taken the waiting work goes round-robin by
tenant. The LLM is the OpenAI adapter against
:class:`~rspp.testing.fakes.FakeProviderServers`; its first call stalls, so:

1. tenant ``acme`` session a1's question takes the only slot (the fake got its request);
2. acme's sessions a2, a3, a4 ask, then tenant ``globex``'s b1 asks: four calls queue
   (``rspp_pool_waiting{key="llm"}``);
3. a1's turn is interrupted, which frees the slot.

The fake receives the calls in the order the pool granted them: a2, then b1 (globex
waited behind one acme call, not three), then a3, a4. Each tenant's grants and the most
it was overtaken while waiting are on ``/metrics`` (``rspp_pool_granted_total``,
``rspp_pool_max_overtaken``): with two tenants neither was overtaken more than once, so
there is no starvation; every queued question was answered. While the LLM pool is
saturated, a session of a pipeline without an LLM node is answered at once (the pool
holds only the node type it limits: no noisy neighbour, F-109).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, route_session
from rspp.testing import ECHO_TEXT_SPEC
from rspp.testing.fakes import Fault
from rspp.transports import ReplyText, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

    from rspp.testing.fakes import FakeProviderServers

pytestmark = pytest.mark.e2e

KEY = "pool-admin-key"


#: a pipeline with no LLM: its sessions must not wait on the LLM pool (F-109)
ECHO = ECHO_TEXT_SPEC


async def _metrics(http: httpx.AsyncClient) -> str:
    return (await http.get("/metrics")).text


async def _until(http: httpx.AsyncClient, sample: Callable[..., float | None], name: str,
                 value: float, **labels: str) -> None:
    """Poll the runtime's /metrics until ``name{labels}`` reads ``value``."""
    while sample(await _metrics(http), name, **labels) != value:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def _answered(client: LiveClient, events: Any) -> str:
    text = ""
    async for ev in events:
        if isinstance(ev, ReplyText) and ev.final:
            text = ev.text
        if isinstance(ev, TurnEvent) and ev.state == "close":
            return text
    raise AssertionError("the session ended")


async def _scenario(url: str, fakes: FakeProviderServers, spec: str,
                    sample: Callable[..., float | None]) -> tuple[list[str], list[Any], str]:
    auth = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
        for text, filename in ((spec, "pool.yaml"), (ECHO, "echo.yaml")):
            res = await http.post("/v1/pipelines", json={"spec": text, "filename": filename})
            assert res.status_code == 201, res.text
        clients: dict[str, tuple[LiveClient, Any]] = {}
        for name, tenant in (("a1", "acme"), ("a2", "acme"), ("a3", "acme"), ("a4", "acme"),
                             ("b1", "globex")):
            target = await route_session(url, tenant_id=tenant, api_key=KEY,
                                         pipeline_name="pool-chat")
            client = await LiveClient.connect(target.url, token=target.token)
            clients[name] = (client, client.events())
        await clients["a1"][0].send_text("question from a1")
        while not fakes.openai.requests:  # noqa: ASYNC110 (the fake's thread records it)
            await asyncio.sleep(0.05)
        for waiting, name in enumerate(("a2", "a3", "a4", "b1"), start=1):
            await clients[name][0].send_text(f"question from {name}")
            await _until(http, sample, "rspp_pool_waiting", waiting, key="llm")
        # the LLM pool is saturated (one call held, four queued); a session whose pipeline
        # has no LLM node is answered meanwhile, and the queue is still there after it
        target = await route_session(url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="echo-chat")
        async with await LiveClient.connect(target.url, token=target.token) as echo:
            echo_events = echo.events()
            await echo.send_text("mail me at bob@example.com")
            echoed = ""
            async for ev in echo_events:  # a pipeline without an LLM streams no final text
                if isinstance(ev, ReplyText):
                    echoed = ev.text
                    break
        during = await _metrics(http)
        await clients["a1"][0].interrupt()
        replies = [await _answered(*clients[name]) for name in ("a2", "a3", "a4", "b1")]
        metrics = await _metrics(http)
        for client, _ in clients.values():
            await client.close()
    order = []
    for req in fakes.openai.requests:
        body = req.body if isinstance(req.body, dict) else {}
        users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
        order.append(users[-1].rsplit(" ", 1)[1])
    return order, [echoed, sample(during, "rspp_pool_waiting", key="llm"), *replies], metrics


def test_a_full_pool_serves_tenants_round_robin_without_starvation(
    serve_process: Callable[..., ServeProcess], tmp_path: Path, text_chat_spec: str,
    fake_providers: FakeProviderServers, openai_chat_spec: Callable[[str], str],
    metric_sample: Callable[..., float | None]
) -> None:
    _sample = metric_sample
    spec = tmp_path / "chat.yaml"
    spec.write_text(text_chat_spec)
    fake_providers.openai.faults.push(Fault("stall", seconds=3600))  # a1's call only
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--pool-limit", "llm=1",
                        "--pool-fairness", "tenant").wait_ready()
    order, replies, metrics = asyncio.run(asyncio.wait_for(
        _scenario(srv.url, fake_providers, openai_chat_spec("pool-chat"), metric_sample), 180))
    srv.kill()

    assert order == ["a1", "a2", "b1", "a3", "a4"], order
    echoed, waiting_during, *answers = replies
    assert echoed == "mail me at [redacted email]"  # not held behind the LLM pool
    assert waiting_during == 4
    assert all(answers), answers  # every queued question was answered
    assert _sample(metrics, "rspp_pool_granted_total", key="llm", fairness_key="acme") == 4
    assert _sample(metrics, "rspp_pool_granted_total", key="llm", fairness_key="globex") == 1
    for tenant in ("acme", "globex"):  # two tenants: overtaken at most once while waiting
        assert _sample(metrics, "rspp_pool_max_overtaken", key="llm", fairness_key=tenant) == 1
    assert _sample(metrics, "rspp_pool_limit", key="llm") == 1
    assert _sample(metrics, "rspp_pool_waiting", key="llm") == 0
