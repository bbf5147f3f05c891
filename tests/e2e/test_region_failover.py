"""Region failover: drain or migrate per tenant, and failover moves avoiding an incident
(F-113, F-112).

``rspp cp serve`` on PostgreSQL with three ``rspp serve --control-plane`` runtimes in
``eu``, ``us`` and ``ap``. Tenant ``drainco`` fails over by draining, ``moveco`` by
migrating (``rspp cp placement set --failover-mode``), ``stayco`` migrates but may only
run in ``eu``. With live sessions of the first two in ``eu``, an operator declares an
incident there (``rspp cp region incident``): ``drainco``'s session stays and answers on
in ``eu``; ``moveco``'s is handed off to ``us`` and answers there under the same session
id at the next epoch, with one reply per question and no stale output; ``stayco``'s
stays (no runtime outside ``eu`` may take it); every decision is audited.

Then the ``ap`` runtime is killed: the failover monitor moves its session to ``us``,
not to the ``eu`` runtime that has the lower load ratio but is in the incident region.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import FailoverClient, Rerouter
from rspp.testing import TEXT_CHAT_SPEC

if TYPE_CHECKING:
    from tests.e2e.conftest import ControlPlaneServer, ServeProcess

pytestmark = pytest.mark.e2e

ADMIN = "failover-admin-key-0123456789"
#: eu has room for many, us for few: by load ratio a move prefers eu (module docstring)
CAPACITY = {"eu": "100", "us": "10", "ap": "100"}


def _http(method: str, url: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, url, headers={"Authorization": f"Bearer {ADMIN}"},
                         timeout=60, **kw)


def _placed_on(cp: str, sid: str) -> str:
    return str(_http("GET", f"{cp}/v1/sessions/{sid}").json()["runtime_id"])


def _until(cond: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)  # polling the control plane's record of the session


class Pumped:
    """A :class:`FailoverClient` whose events are read all the time (it follows its session
    to another runtime as soon as it moves, between turns too), for ``text_turn``."""

    def __init__(self, client: FailoverClient) -> None:
        self.client = client
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=100_000)
        self.task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        async for ev in self.client.events():
            await self.queue.put(ev)

    async def send_text(self, text: str) -> None:
        await self.client.send_text(text)

    async def events(self) -> AsyncIterator[Any]:
        while True:
            yield await self.queue.get()

    async def until_on(self, runtime_id: str, timeout_s: float = 120) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.client.runtime_id != runtime_id:
            assert asyncio.get_running_loop().time() < deadline, self.client.runtime_id
            await asyncio.sleep(0.05)  # the pump switches connections

    async def close(self) -> None:
        await self.client.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.mark.timeout(600)
def test_an_incident_drains_or_migrates_per_tenant_and_failover_avoids_the_region(
    cp_serve: Callable[..., ControlPlaneServer], serve_process: Callable[..., ServeProcess],
    cp_json: Callable[..., dict[str, Any]], text_turn: Callable[..., Any],
) -> None:
    cp = cp_serve("postgresql", ADMIN, "--heartbeat-timeout-ms", "5000",
                  "--failover-interval-ms", "100").url
    assert _http("POST", f"{cp}/v1/pipelines",
                 json={"spec": TEXT_CHAT_SPEC, "filename": "chat.yaml"}).status_code == 201
    runtimes = {region: serve_process(
        "--control-plane", cp, "--api-key", ADMIN, "--region", region,
        "--runtime-id", f"rt-{region}", "--heartbeat-interval", "0.3",
        "--lease-ttl-ms", "1500", "--capacity", CAPACITY[region]).wait_ready()
        for region in ("eu", "us", "ap")}
    cp_json(cp, ADMIN, "placement", "set", "drainco", "--failover-mode", "drain")
    cp_json(cp, ADMIN, "placement", "set", "moveco", "--failover-mode", "migrate")
    cp_json(cp, ADMIN, "placement", "set", "stayco", "--region", "eu", "--jurisdiction", "EU")

    def route(tenant: str, near: str) -> str:
        resp = _http("POST", f"{cp}/v1/sessions/route",
                     json={"tenant_id": tenant, "pipeline_name": "text-chat",
                           "region_latency_ms": {near: 5}})
        assert resp.status_code == 201, resp.text
        assert resp.json()["runtime_id"] == f"rt-{near}"
        return str(resp.json()["session_id"])

    sids = {"drainco": route("drainco", "eu"), "moveco": route("moveco", "eu"),
            "failco": route("failco", "ap"), "stayco": route("stayco", "eu")}

    async def scenario() -> dict[str, Any]:
        clients = {t: Pumped(await FailoverClient.connect(
            Rerouter(cp, api_key=ADMIN, tenant_id=t, session_id=sids[t]),
            detect_s=3.0, resume_window_s=90.0, connect_timeout_s=60.0))
            for t in ("drainco", "moveco", "failco")}
        try:
            for c in clients.values():
                assert "name is" in await text_turn(c, "what is your name")
            opened = await asyncio.to_thread(
                cp_json, cp, ADMIN, "region", "incident", "eu", "--reason", "eu stt outage")
            # moveco's hand-off completes at its runtime's next renewal; its client follows
            await asyncio.to_thread(_until, lambda: _placed_on(cp, sids["moveco"]) == "rt-us",
                                    "moveco never moved to us")
            await clients["moveco"].until_on("rt-us")
            answers = {t: await text_turn(clients[t], "what time is it")
                       for t in ("drainco", "moveco")}
            where = {t: (c.client.runtime_id, c.client.epoch) for t, c in clients.items()}
            # the ap runtime dies: its session moves, avoiding the eu incident
            await asyncio.to_thread(runtimes["ap"].kill)
            await asyncio.to_thread(_until, lambda: _placed_on(cp, sids["failco"]) != "rt-ap",
                                    "failco never failed over")
            await clients["failco"].until_on(_placed_on(cp, sids["failco"]))
            answers["failco"] = await text_turn(clients["failco"], "what time is it")
            failco = clients["failco"].client
            where["failco"] = (failco.runtime_id, failco.epoch)
            stale = {t: c.client.stale_outputs_accepted for t, c in clients.items()}
            return {"opened": opened, "answers": answers, "where": where, "stale": stale}
        finally:
            for c in clients.values():
                await c.close()

    out = asyncio.run(asyncio.wait_for(scenario(), 500))
    decided = {s["tenant_id"]: s for s in out["opened"]["sessions"]}
    assert decided["drainco"]["outcome"] == "draining"
    assert (decided["moveco"]["outcome"], decided["moveco"]["to_runtime"]) == ("migrating",
                                                                              "rt-us")
    assert decided["stayco"]["outcome"] == "staying"
    assert "eu" in decided["stayco"]["reason"]
    assert "failco" not in decided  # its runtime is not in the region
    # drain: the session answered on where it was, at the same epoch
    assert out["where"]["drainco"] == ("rt-eu", 1)
    # migrate: the same session id answered in us at the next epoch, once, nothing stale
    assert out["where"]["moveco"] == ("rt-us", 2)
    # one reply per question: its text deltas, then its final text (a second reply to the
    # same question would show four times)
    assert all(a.count("It is") == 2 for a in out["answers"].values()), out["answers"]
    assert out["stale"] == {"drainco": 0, "moveco": 0, "failco": 0}
    # failover: us, not eu (lower load ratio, but in the incident region)
    assert out["where"]["failco"] == ("rt-us", 2)
    assert _placed_on(cp, sids["stayco"]) == "rt-eu"

    entries = _http("GET", f"{cp}/v1/audit").json()["entries"]
    failovers = {e["subject"]: e["detail"] for e in entries if e["action"] == "region.failover"}
    assert {failovers[sids[t]]["outcome"] for t in ("drainco", "moveco", "stayco")} == {
        "draining", "migrating", "staying"}

    def handed_off() -> list[str]:  # released by its runtime, or at the lease's expiry
        return [e["subject"] for e in _http("GET", f"{cp}/v1/audit").json()["entries"]
                if e["action"] in ("lease.handoff_released", "lease.handoff_timed_out")]

    _until(lambda: bool(handed_off()), "the hand-off's completion is not in the audit log")
    assert handed_off() == [sids["moveco"]]
    signals = [s["signal"] for s in _http(
        "GET", f"{cp}/v1/sessions/{sids['moveco']}/signals").json()["signals"]]
    assert "migration_start" in signals and "migration_finish" in signals
