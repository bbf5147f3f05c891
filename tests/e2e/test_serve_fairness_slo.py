"""A declared fairness SLO on the shared pool, evaluated over a sustained run (NF-033).

``rspp serve --pool-limit llm=1 --pool-fairness tenant --fairness-max-wait-ms 10000``:
one LLM call at a time across the runtime, and no tenant may wait longer than 10 s for
it. The LLM is the OpenAI adapter against :class:`~rspp.testing.fakes.FakeProviderServers`.

1. Sustained, asymmetric contention: tenant ``acme`` runs three sessions and ``globex``
   one, every session asking three questions back to back, all at once. Every question is
   answered (each tenant's service rate is 100%), each tenant's waits are in the
   ``rspp_pool_wait_ms`` histogram (one per LLM call), and with round-robin no wait comes
   near the objective: no starvation incident, the alert does not fire.
2. A starvation: the fake stalls acme's next call, which holds the only slot; globex's
   question queues behind it. Once globex has waited past the objective the alert fires
   (``rspp_fairness_slo_alert_firing{key="llm"}`` 1, read on ``/metrics`` while it still
   waits); when acme's turn is interrupted globex is served, and its wait is counted as
   one starvation incident (acme's none).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, route_session
from rspp.testing.fakes import Fault
from rspp.transports import ReplyText, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

    from rspp.testing.fakes import FakeProviderServers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEY = "fairness-slo-admin-key"
MAX_WAIT_MS = 10_000
QUESTIONS = 3


class _Asker:
    def __init__(self, client: LiveClient) -> None:
        self.client, self.events = client, client.events()

    async def ask(self, text: str) -> str:
        """The final reply once the turn closed."""
        await self.client.send_text(text)
        reply = ""
        async for ev in self.events:
            if isinstance(ev, ReplyText) and ev.final:
                reply = ev.text
            if isinstance(ev, TurnEvent) and ev.state == "close":
                return reply
        raise AssertionError("the session ended")


async def _scenario(url: str, fakes: FakeProviderServers, spec: str,
                    sample: Callable[..., float | None]) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {KEY}"}
    got: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
        res = await http.post("/v1/pipelines", json={"spec": spec, "filename": "fair.yaml"})
        assert res.status_code == 201, res.text

        async def session(tenant: str) -> _Asker:
            target = await route_session(url, tenant_id=tenant, api_key=KEY,
                                         pipeline_name="fair-chat")
            return _Asker(await LiveClient.connect(target.url, token=target.token))

        sessions = {name: await session(tenant) for name, tenant in
                    (("a1", "acme"), ("a2", "acme"), ("a3", "acme"), ("b1", "globex"))}

        async def sustained(name: str) -> list[str]:
            return [await sessions[name].ask(f"question {i} from {name}")
                    for i in range(QUESTIONS)]

        answers = await asyncio.gather(*(sustained(n) for n in sessions))
        got["answers"] = dict(zip(sessions, answers, strict=True))
        got["sustained"] = (await http.get("/metrics")).text

        # a starvation: acme's call stalls holding the slot, globex's queues behind it
        calls = len(fakes.openai.requests)
        fakes.openai.faults.push(Fault("stall", seconds=3600))
        await sessions["a1"].client.send_text("a question that stalls")
        while len(fakes.openai.requests) == calls:  # noqa: ASYNC110 (the fake's thread)
            await asyncio.sleep(0.05)
        starved = asyncio.create_task(sessions["b1"].ask("question from globex"))

        async def alert() -> float | None:
            text = (await http.get("/metrics")).text
            return sample(text, "rspp_fairness_slo_alert_firing", key="llm")

        while await alert() != 1:  # noqa: ASYNC110 (fires once globex waited 10 s)
            await asyncio.sleep(0.2)
        got["firing"] = (await http.get("/metrics")).text
        await sessions["a1"].client.interrupt()
        got["starved_answer"] = await asyncio.wait_for(starved, 60)
        got["after"] = (await http.get("/metrics")).text
        for s in sessions.values():
            await s.client.close()
    return got


def test_a_fairness_slo_holds_under_sustained_contention_and_alerts_on_starvation(
    serve_process: Callable[..., ServeProcess], tmp_path: Path, text_chat_spec: str,
    fake_providers: FakeProviderServers, openai_chat_spec: Callable[[str], str],
    metric_sample: Callable[..., float | None]
) -> None:
    sample = metric_sample
    spec = tmp_path / "chat.yaml"
    spec.write_text(text_chat_spec)
    refused = serve_process(str(spec), "--api-key", KEY,
                            "--fairness-max-wait-ms", str(MAX_WAIT_MS))
    _, err = refused.proc.communicate(timeout=60)
    assert refused.proc.returncode == 2 and "--fairness-max-wait-ms" in err, err
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--pool-limit", "llm=1", "--pool-fairness", "tenant",
                        "--fairness-max-wait-ms", str(MAX_WAIT_MS),
                        "--fairness-window-s", "600").wait_ready()
    got = asyncio.run(asyncio.wait_for(
        _scenario(srv.url, fake_providers, openai_chat_spec("fair-chat"), sample), 240))
    srv.kill()

    # 1. sustained asymmetric contention: every tenant served, no starvation
    assert all(all(replies) for replies in got["answers"].values()), got["answers"]
    m = got["sustained"]
    assert f"\nrspp_fairness_slo_max_wait_ms {MAX_WAIT_MS:.1f}\n" in m  # the objective
    calls = {"acme": 3 * QUESTIONS, "globex": QUESTIONS}
    for tenant, n in calls.items():
        assert sample(m, "rspp_pool_wait_ms_count", key="llm", fairness_key=tenant) == n
        assert sample(m, "rspp_fairness_window_waits", key="llm", fairness_key=tenant) == n
        longest = sample(m, "rspp_fairness_window_max_wait_ms", key="llm", fairness_key=tenant)
        assert longest is not None and 0 <= longest < MAX_WAIT_MS
        assert sample(m, "rspp_fairness_starvation_incidents_total", key="llm",
                      fairness_key=tenant) == 0
    assert sample(m, "rspp_pool_granted_total", key="llm", fairness_key="acme") == 9
    assert sample(m, "rspp_fairness_slo_alert_firing", key="llm") == 0
    # 2. a starvation: the alert fires while globex still waits, the incident is counted
    firing = got["firing"]
    waited = sample(firing, "rspp_fairness_window_max_wait_ms", key="llm",
                    fairness_key="globex")
    assert waited is not None and waited > MAX_WAIT_MS
    assert sample(firing, "rspp_pool_waiting", key="llm") == 1
    assert got["starved_answer"]
    after = got["after"]
    assert sample(after, "rspp_fairness_starvation_incidents_total", key="llm",
                  fairness_key="globex") == 1
    assert sample(after, "rspp_fairness_starvation_incidents_total", key="llm",
                  fairness_key="acme") == 0
    assert sample(after, "rspp_pool_wait_ms_count", key="llm", fairness_key="globex") == 4
    assert sample(after, "rspp_fairness_slo_alert_firing", key="llm") == 1  # in the window
