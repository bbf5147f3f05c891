"""Capacity headroom on queue depth and provider concurrency, at admission (F-172).

Beside open turns (``--max-active-turns``, test_serve_capacity_priority.py) ``rspp
serve`` bounds two loads of its shared execution pool, and defers a new turn while one
is at its threshold, before the runtime is overloaded. The LLM is the OpenAI adapter
against :class:`~rspp.testing.fakes.FakeProviderServers`; it stalls, so every call stays
in flight until its turn is cancelled.

Queue depth (``--pool-limit llm=1 --max-queue-depth 1``): the first turn's call holds the
only slot, the second turn is admitted and its call queues (depth 1); the third is
deferred (``capacity:queue_depth:1/1``). Cancelling the queued turn empties the queue and
the deferred session's next question opens a turn.

Provider concurrency (``--pool-limit llm=2 --max-provider-load llm=1``): with one LLM call
in flight a second turn is deferred (``capacity:provider:llm:1/1``) although the pool has
a free slot; once the first turn is cancelled the call ends and the next turn opens.

Every threshold decision is the deferred turn's pre-turn outcome in its timeline, the
client's ``turn_deferred`` and ``/metrics``: ``rspp_capacity_load{resource}``,
``rspp_capacity_threshold{resource}`` and ``rspp_capacity_deferrals_total{threshold}``;
the threshold tripping is a capacity-control event in the live sessions' timelines
(``capacity_control:queue_depth:1/1:defer``) before the deferral.
A threshold on a load without a pool is refused at start, naming the option.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.testing.fakes import Fault

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

    from rspp.testing.fakes import FakeProviderServers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEY = "headroom-admin-key"


async def _until(http: httpx.AsyncClient, sample: Callable[..., float | None], name: str,
                 value: float, **labels: str) -> str:
    """Poll /metrics until ``name{labels}`` reads ``value``; that scrape."""
    while True:
        text = (await http.get("/metrics")).text
        if sample(text, name, **labels) == value:
            return text
        await asyncio.sleep(0.05)


def _control(sample: Callable[..., float | None], metrics: str,
             resource: str) -> tuple[float | None, ...]:
    """A bounded load's (value, threshold, deferrals at it) on /metrics."""
    return (sample(metrics, "rspp_capacity_load", resource=resource),
            sample(metrics, "rspp_capacity_threshold", resource=resource),
            sample(metrics, "rspp_capacity_deferrals_total", threshold=resource))


async def _scenario(url: str, spec: str, ask: Callable[..., Any],
                    sample: Callable[..., float | None], resource: str) -> dict[str, Any]:
    """Load the runtime up to ``resource``'s threshold, ask once more (deferred), cancel
    a turn holding the load and ask again."""
    got: dict[str, Any] = {}
    queue = resource == "queue_depth"
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        res = await http.post("/v1/pipelines", json={"spec": spec, "filename": "h.yaml"})
        assert res.status_code == 201, res.text
        sessions = [await ask(url, KEY, "headroom-chat") for _ in range(3 if queue else 2)]
        got["first"] = [await sessions[0].ask("what is your name")]
        await _until(http, sample, "rspp_pool_active", 1, key="llm")
        if queue:  # a second turn is admitted and its call queues behind the first
            got["first"].append(await sessions[1].ask("what time is it"))
            await _until(http, sample, "rspp_pool_waiting", 1, key="llm")
        held, deferred = sessions[-2], sessions[-1]
        got["deferred"] = await deferred.ask("what is the date")
        got["metrics"] = (await http.get("/metrics")).text
        got["interrupt"] = await held.interrupt()  # control still works at the threshold
        await _until(http, sample, "rspp_capacity_load", 0, resource=resource)
        got["again"] = await deferred.ask("what is the date")
        got["sid"] = deferred.sid
        for s in sessions:
            await s.client.close()
    return got


def test_queue_depth_and_provider_concurrency_thresholds_defer_new_turns_at_admission(
    serve_process: Callable[..., ServeProcess], tmp_path: Path, text_chat_spec: str,
    fake_providers: FakeProviderServers, openai_chat_spec: Callable[[str], str],
    asking_session: Callable[..., Any], metric_sample: Callable[..., float | None]
) -> None:
    sample = metric_sample
    spec = tmp_path / "chat.yaml"
    spec.write_text(text_chat_spec)
    for flags, option in ((("--max-queue-depth", "1"), "--max-queue-depth"),
                          (("--pool-limit", "llm=1", "--max-provider-load", "llm=2"),
                           "--max-provider-load")):
        refused = serve_process(str(spec), "--api-key", KEY, *flags)
        _, err = refused.proc.communicate(timeout=60)
        assert refused.proc.returncode == 2 and option in err, err
    fake_providers.openai.faults.sticky = Fault("stall", seconds=3600)
    chat = openai_chat_spec("headroom-chat")

    timelines = tmp_path / "timelines"
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'q.db'}",
                        "--api-key", KEY, "--timeline-dir", str(timelines),
                        "--record-level", "L1", "--pool-limit", "llm=1",
                        "--max-queue-depth", "1").wait_ready()
    queue = asyncio.run(asyncio.wait_for(
        _scenario(srv.url, chat, asking_session, sample, "queue_depth"), 120))
    srv.kill()
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
                        "--api-key", KEY, "--pool-limit", "llm=2",
                        "--max-provider-load", "llm=1").wait_ready()
    provider = asyncio.run(asyncio.wait_for(
        _scenario(srv.url, chat, asking_session, sample, "provider:llm"), 120))
    srv.kill()

    # queue depth: the third turn is deferred while one call queues
    assert queue["first"] == ["open", "open"]
    assert "capacity:queue_depth:1/1:interactive" in queue["deferred"], queue["deferred"]
    m = queue["metrics"]
    assert _control(sample, m, "queue_depth") == (1, 1, 1)  # load, threshold, deferrals
    assert sample(m, "rspp_capacity_load", resource="open_turns") == 2
    assert queue["interrupt"] == ["abort", "close"]  # the queued turn, cancelled
    assert queue["again"] == "open"
    records = [json.loads(x)["record"] for x in
               (timelines / f"{queue['sid']}.jsonl").read_text().splitlines()]
    deferred = [r for r in records if r.get("outcome_kind") == "defer"]
    assert [r["reason"] for r in deferred] == ["capacity:queue_depth:1/1:interactive"]
    assert not [r for r in records if r.get("signal") == "turn_open"
                and r.get("turn_id") == deferred[0]["turn_id"]]
    # the threshold tripping is a capacity-control event of its own, before the deferral
    trips = [i for i, r in enumerate(records)
             if r.get("reason") == "capacity_control:queue_depth:1/1:defer"]
    assert trips and records[trips[0]]["signal"] == "defer", records
    assert trips[0] < records.index(deferred[0])
    # provider concurrency: deferred at one call in flight though the pool has two slots
    assert provider["first"] == ["open"]
    assert "capacity:provider:llm:1/1:interactive" in provider["deferred"], provider["deferred"]
    m = provider["metrics"]
    assert _control(sample, m, "provider:llm") == (1, 1, 1)
    assert sample(m, "rspp_pool_limit", key="llm") == 2
    assert provider["interrupt"] == ["abort", "close"]
    assert provider["again"] == "open"
