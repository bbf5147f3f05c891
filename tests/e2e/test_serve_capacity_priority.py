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

from rspp.testing.fakes import Fault

if TYPE_CHECKING:
    from tests.e2e.conftest import AskingSession, ServeProcess

    from rspp.testing.fakes import FakeProviderServers

pytestmark = pytest.mark.e2e

KEY = "capacity-admin-key"


async def _metrics(url: str) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        return (await http.get(f"{url}/metrics",
                               headers={"Authorization": f"Bearer {KEY}"})).text


async def _scenario(url: str, spec: str, asking_session: Callable[..., Any]
                    ) -> tuple[dict[str, Any], dict[str, str]]:
    auth = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
        res = await http.post("/v1/pipelines", json={"spec": spec, "filename": "slow.yaml"})
        assert res.status_code == 201, res.text
    got: dict[str, Any] = {}
    async def _open(priority: str) -> AskingSession:
        session: AskingSession = await asking_session(url, KEY, "slow-chat", priority=priority)
        return session

    bg1, bg2 = await _open("background"), await _open("background")
    ia1, ia2 = await _open("interactive"), await _open("interactive")
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
    fake_providers: FakeProviderServers, openai_chat_spec: Callable[[str], str],
    asking_session: Callable[..., Any]
) -> None:
    spec = tmp_path / "chat.yaml"
    spec.write_text(text_chat_spec)
    timelines = tmp_path / "timelines"
    fake_providers.openai.faults.sticky = Fault("stall", seconds=3600)
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--timeline-dir", str(timelines),
                        "--record-level", "L1", "--max-active-turns", "2",
                        "--interactive-reserve", "1").wait_ready()
    got, sids = asyncio.run(asyncio.wait_for(
        _scenario(srv.url, openai_chat_spec("slow-chat"), asking_session), 180))
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
