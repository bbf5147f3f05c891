"""Pre-turn outcomes of a served session: admit, defer and reject (F-141).

``rspp serve`` with the tenant's admission quotas at one turn per minute and one
concurrent session. In a session the first typed question is admitted and answered
(``admit``, ``turn_open``, ``commit``, ``close``); the second is deferred: the client is
told ``turn_deferred`` naming the quota, nothing answers it, no turn event reaches the
client and the timeline holds its ``defer`` outcome with no ``turn_open``, ``abort`` or
``close``. The client's ``interrupt`` right after (a forced terminal attempt: nothing is
Active) changes nothing. A second concurrent session is rejected at its route (the
control plane's ``reject`` outcome, 4xx) and creates no turn state. The session's
timeline replays with no divergence.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
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

KEY = "pre-turn-admin-key"


def _rspp(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


async def _session(url: str) -> tuple[str, list[Any], str | None]:
    """Admit one question, have the next deferred, interrupt, then try a second session."""
    target = await route_session(url, tenant_id="acme", api_key=KEY, pipeline_name="text-chat")
    got: list[Any] = []
    refused: str | None = None
    async with await LiveClient.connect(target.url, token=target.token) as client:
        events = client.events()
        await client.send_text("what is your name")
        async for ev in events:
            got.append(ev)
            if isinstance(ev, TurnEvent) and ev.state == "close":
                break
        await client.send_text("what time is it", id="q2")
        async for ev in events:
            got.append(ev)
            if isinstance(ev, ErrorEvent) or (isinstance(ev, ReplyText) and ev.final):
                break  # refused, or (the bug this guards against) answered anyway
        await client.interrupt()  # nothing is Active: no terminal may follow
        try:  # while this session is open, the tenant's one concurrent session is taken
            await route_session(url, tenant_id="acme", api_key=KEY, pipeline_name="text-chat")
        except SessionRefusedError as exc:
            refused = str(exc)
        await client.end()
        async for ev in events:
            got.append(ev)
    return target.session_id, got, refused


def test_admit_defer_and_reject_stay_pre_turn(
    module_serve_process: Callable[..., ServeProcess], tmp_path: Path, text_chat_spec: str,
    timeline_ended: Callable[..., Any]
) -> None:
    spec = tmp_path / "text_chat.yaml"
    spec.write_text(text_chat_spec)
    timelines = tmp_path / "timelines"
    srv = module_serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                               "--api-key", KEY, "--timeline-dir", str(timelines),
                               "--record-level", "L2").wait_ready()
    auth = {"Authorization": f"Bearer {KEY}"}
    quotas = httpx.post(f"{srv.url}/v1/configs/admission/acme", headers=auth, timeout=30,
                        json={"body": {"turns_per_minute": 1, "max_concurrent_sessions": 1}})
    assert quotas.status_code < 300, quotas.text
    sid, got, refused = asyncio.run(asyncio.wait_for(_session(srv.url), 120))

    # the reject: a second concurrent session of the tenant is refused at its route
    assert refused is not None and "max_concurrent_sessions" in refused, refused
    # the admitted turn is answered and has its lifecycle; the deferred input has neither
    turns = [e for e in got if isinstance(e, TurnEvent)]
    (tid,) = {e.turn_id for e in turns}
    assert [e.state for e in turns] == ["open", "commit", "close"]
    replies = [e for e in got if isinstance(e, ReplyText)]
    assert replies and {e.turn_id for e in replies} == {tid}
    assert "name is" in replies[-1].text
    errors = [e for e in got if isinstance(e, ErrorEvent)]
    assert [(e.code, e.field) for e in errors] == [("turn_deferred", "text")], errors
    assert "defer:turns_per_minute:1" in errors[0].message
    assert errors[0] is got[-1] or not [e for e in got[got.index(errors[0]):]
                                        if isinstance(e, ReplyText | TurnEvent)]

    timeline = timelines / f"{sid}.jsonl"
    asyncio.run(timeline_ended(timeline, 60))
    lines = [json.loads(x) for x in timeline.read_text().splitlines()]
    records = [ln["record"] for ln in lines]
    signals = [(r["signal"], r.get("reason")) for r in records if "signal" in r]
    proposals = [s for s in signals if s[0] == "turn_open_proposed"]
    assert len(proposals) == 2
    pre_turn = [(r["outcome_kind"], r["reason"]) for r in records
                if r.get("outcome_kind") in ("admit", "defer", "reject")
                and r.get("emitted_by") == "RK-25"]
    assert pre_turn == [("admit", "within_quota"), ("defer", "turns_per_minute:1")], pre_turn
    deferred = next(r["turn_id"] for r in records
                    if r.get("outcome_kind") == "defer" and r.get("turn_id"))
    assert deferred != tid
    # no turn lifecycle for the deferred proposal: no turn_open, no terminal, no close
    lifecycle = [r["signal"] for r in records if r.get("turn_id") == deferred and "signal" in r]
    assert not {"turn_open", "commit", "abort", "close"} & set(lifecycle), lifecycle
    # one terminal and one close in the whole session: the admitted turn's (the interrupt
    # after the defer found nothing to end)
    assert [s for s, _ in signals if s in ("commit", "abort", "close")] == ["commit", "close"]
    assert not [s for s, _ in signals if s == "cancel"]
    # nothing of the deferred input reached the LLM: one question, one answer
    inputs = [ln for ln in lines if ln["kind"] == "event_record"
              and ln["record"].get("edge_id") == "input.text"]
    assert len(inputs) == 1 and inputs[0]["payload"]["text"] == "what is your name"

    report = tmp_path / "replay.json"
    out = _rspp("replay", str(timeline), "--spec", str(spec), "--report", str(report))
    doc = json.loads(report.read_text())
    assert all(n == 0 for c, n in doc["divergences"].items() if c != "TIMING"), doc["findings"]
    assert out.returncode == 0, out.stdout + out.stderr
