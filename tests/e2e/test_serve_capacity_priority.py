"""A runtime's turn capacity with interactive headroom, under overload (F-172, F-173).

``rspp serve --max-active-turns 2 --interactive-reserve 1``: two turns may be open at
once, and one of them only for interactive sessions. The LLM (the OpenAI adapter against
:class:`~rspp.testing.fakes.FakeProviderServers`) stalls, so every admitted turn stays
open until it is cancelled. Sessions routed with ``priority: background`` yield first:

1. a background turn opens (1/2 in use);
2. a second background turn is deferred at the background threshold
   (``capacity:background_headroom:1/1``) although capacity remains;
3. an interactive turn opens in the reserve (2/2);
4. a second interactive turn is deferred: the runtime is full (``capacity:full:2/2``);
5. at full capacity the control path still works: the background session's ``interrupt``
   cancels its turn at once (``abort``, ``close``), which gives its capacity back;
6. the interactive session asks again and its turn opens.

The threshold decisions are the deferred turns' pre-turn outcomes in their timelines (no
``turn_open``), the clients' ``turn_deferred`` errors, and ``/metrics``
(``rspp_capacity_open_turns{priority}``, ``rspp_admission_decisions_total``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, route_session
from rspp.testing.fakes import FakeProviderServers, Fault
from rspp.transports import ErrorEvent, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "capacity-admin-key"


class _Session:
    def __init__(self, client: LiveClient, sid: str) -> None:
        self.client, self.sid, self.events = client, sid, client.events()

    async def ask(self, text: str) -> str:
        """``open`` once the turn opened, else the deferral's message."""
        await self.client.send_text(text)
        async for ev in self.events:
            if isinstance(ev, ErrorEvent):
                assert ev.code == "turn_deferred", ev
                return ev.message
            if isinstance(ev, TurnEvent) and ev.state == "open":
                return "open"
        raise AssertionError("the session ended")

    async def interrupt(self) -> list[str]:
        """Cancel the open turn; its terminal states as the client saw them."""
        await self.client.interrupt()
        states: list[str] = []
        async for ev in self.events:
            if isinstance(ev, TurnEvent):
                states.append(ev.state)
                if ev.state == "close":
                    return states
        raise AssertionError("the session ended")


async def _open(url: str, priority: str) -> _Session:
    target = await route_session(url, tenant_id="acme", api_key=KEY, pipeline_name="slow-chat",
                                 attributes={"priority": priority})
    return _Session(await LiveClient.connect(target.url, token=target.token),
                    target.session_id)


async def _metrics(url: str) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        return (await http.get(f"{url}/metrics",
                               headers={"Authorization": f"Bearer {KEY}"})).text


async def _scenario(url: str, spec: str) -> tuple[dict[str, Any], dict[str, str]]:
    auth = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
        res = await http.post("/v1/pipelines", json={"spec": spec, "filename": "slow.yaml"})
        assert res.status_code == 201, res.text
    got: dict[str, Any] = {}
    bg1, bg2 = await _open(url, "background"), await _open(url, "background")
    ia1, ia2 = await _open(url, "interactive"), await _open(url, "interactive")
    got["bg1"] = await bg1.ask("what is your name")
    got["bg2"] = await bg2.ask("what time is it")
    got["ia1"] = await ia1.ask("what is the date")
    got["ia2"] = await ia2.ask("tell me a joke")
    got["metrics_full"] = await _metrics(url)
    got["bg1_interrupt"] = await bg1.interrupt()
    got["ia2_again"] = await ia2.ask("tell me a joke")
    got["metrics_after"] = await _metrics(url)
    for s in (bg1, bg2, ia1, ia2):
        await s.client.close()
    return got, {"bg1": bg1.sid, "bg2": bg2.sid, "ia1": ia1.sid, "ia2": ia2.sid}


def _gauge(metrics: str, priority: str) -> float:
    m = re.search(rf'^rspp_capacity_open_turns{{priority="{priority}"}} (\S+)$', metrics, re.M)
    assert m is not None, metrics[-2000:]
    return float(m.group(1))


def test_background_work_yields_the_interactive_headroom_and_control_still_works(
    serve_process: Callable[..., ServeProcess], tmp_path: Path, text_chat_spec: str,
    monkeypatch: pytest.MonkeyPatch, openai_chat_spec: Callable[[str], str]
) -> None:
    spec = tmp_path / "chat.yaml"
    spec.write_text(text_chat_spec)
    timelines = tmp_path / "timelines"
    with FakeProviderServers(api_key="capacity-fake-key") as fakes:
        fakes.openai.faults.sticky = Fault("stall", seconds=3600)
        for name, value in fakes.env.items():
            monkeypatch.setenv(name, value)
        srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                            "--api-key", KEY, "--timeline-dir", str(timelines),
                            "--record-level", "L1", "--max-active-turns", "2",
                            "--interactive-reserve", "1").wait_ready()
        got, sids = asyncio.run(asyncio.wait_for(_scenario(srv.url, openai_chat_spec("slow-chat")),
                                                 180))
        srv.kill()

    assert got["bg1"] == "open"
    assert "capacity:background_headroom:1/1:background" in got["bg2"], got["bg2"]
    assert got["ia1"] == "open"
    assert "capacity:full:2/2:interactive" in got["ia2"], got["ia2"]
    assert (_gauge(got["metrics_full"], "background"),
            _gauge(got["metrics_full"], "interactive")) == (1, 1)
    assert got["bg1_interrupt"] == ["abort", "close"]
    assert got["ia2_again"] == "open"
    assert (_gauge(got["metrics_after"], "background"),
            _gauge(got["metrics_after"], "interactive")) == (0, 2)
    # the deferred proposal is a pre-turn outcome in the session's timeline: no turn opened
    records = [json.loads(x)["record"] for x in
               (timelines / f"{sids['bg2']}.jsonl").read_text().splitlines()]
    deferred = [r for r in records if r.get("outcome_kind") == "defer"]
    assert [r["reason"] for r in deferred] == ["capacity:background_headroom:1/1:background"]
    assert not [r for r in records if r.get("signal") in ("turn_open", "abort", "close")
                and r.get("turn_id") == deferred[0]["turn_id"]]
