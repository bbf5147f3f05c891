"""Recorded timelines of ``rspp serve`` by sample, deleted after retention (F-071).

``--record-sample-rate 0.5``: each session is recorded or not by its id (the same choice
whenever it is asked: a replay of the session agrees); an unsampled session's timeline
keeps only its OR-02 turn evidence (gate 5 needs it for every accepted turn), a sampled
one its events too. ``--retention-s``: a periodic sweep deletes timelines older than the
retention and audits each deletion; younger ones stay.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.client import LiveClient
from rspp.observability import SamplingPolicy
from rspp.transports import SessionEnd, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServedChat

pytestmark = pytest.mark.e2e

KEY = "serve-sampling-admin-key"
RETENTION_S = 3600


def _lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(x) for x in text.splitlines() if x.endswith("}")]


async def _until(found: Callable[[], bool]) -> None:
    """Wait for the server's asynchronous file work (export, sweep) to show ``found``."""
    while not found():  # noqa: ASYNC110 (polls the server's files)
        await asyncio.sleep(0.05)


def test_served_sessions_are_recorded_by_sample_and_deleted_after_retention(
    served_chat: Callable[..., ServedChat]
) -> None:
    chat = served_chat(KEY, "--record-sample-rate", "0.5", "--retention-s", str(RETENTION_S),
                       "--retention-sweep-s", "0.2")
    chat.set_policy("acme", {"recording_level": "L1"})
    timelines = chat.timelines
    oracle = SamplingPolicy(0.5)  # the documented rule: sha256(session id) below the rate

    async def one_session() -> str:
        target = await chat.route()
        async with await LiveClient.connect(target.url, token=target.token) as client:
            sid = client.ready.session_id
            await client.send_text("what is your name")
            async for ev in client.events():
                if isinstance(ev, TurnEvent) and ev.state == "close":
                    break
            await client.end()  # the session ends now (no resume window to wait out)
            async for ev in client.events():
                if isinstance(ev, SessionEnd):
                    break
        path = timelines / f"{sid}.jsonl"
        if oracle.sampled(sid, "text-chat"):  # its file is final once it recorded the end
            await _until(lambda: any(x["record"].get("signal") == "ended"
                                     for x in _lines(path)))
        else:  # only evidence, written at the turn's end
            await _until(lambda: any(x["kind"] == "or02_evidence" for x in _lines(path)))
        return sid

    async def scenario() -> dict[bool, list[str]]:
        seen: dict[bool, list[str]] = {True: [], False: []}
        # sessions until both kinds were served twice (ids are random; the rule is not)
        while min(len(v) for v in seen.values()) < 2:
            sid = await one_session()
            seen[oracle.sampled(sid, "text-chat")].append(sid)
            assert len(seen[True]) + len(seen[False]) < 40
        return seen

    seen = asyncio.run(scenario())
    for sampled, sids in seen.items():
        for sid in sids:
            lines = _lines(timelines / f"{sid}.jsonl")
            kinds = {x["kind"] for x in lines}
            assert "or02_evidence" in kinds, (sid, kinds)  # every accepted turn, always
            events = [x for x in lines if x["kind"] != "or02_evidence"]
            if sampled:
                assert any(x["record"].get("signal") == "turn_open" for x in events), sid
            else:
                assert not events, (sid, events[:3])

    # retention: the aged recordings are deleted by the next sweep, audited; the rest stay
    aged = [timelines / f"{sid}.jsonl" for sid in seen[True] + seen[False][1:]]
    kept = timelines / f"{seen[False][0]}.jsonl"
    old = time.time() - RETENTION_S - 60
    for path in aged:
        os.utime(path, (old, old))

    async def swept() -> None:
        await _until(lambda: not any(p.exists() for p in aged))

    asyncio.run(asyncio.wait_for(swept(), 60))
    assert kept.exists()
    audit = [json.loads(x) for x in (timelines / "retention-audit.jsonl").read_text()
             .splitlines()]
    assert sorted(a["file"] for a in audit) == sorted(p.name for p in aged)
    assert all(a["action"] == "deleted" and a["max_age_s"] == RETENTION_S
               and a["age_s"] > RETENTION_S for a in audit)
