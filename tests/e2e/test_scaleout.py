"""Scale-out on a real fleet: failover with fencing, rolling updates (F-095, F-113, F-156,
F-157, NF-027, NF-016, F-106).

Each test runs ``rspp cp serve`` on a fresh PostgreSQL database and three
``rspp serve --control-plane`` processes (``benchmarks/_fleet.py``), with live WebSocket
sessions of :class:`~rspp.client.FailoverClient` routed by the control plane, asking
typed questions answered aloud (local responder + espeak-ng).

- Failover (the core of ``benchmarks/failover.py`` with small numbers): runtimes are
  SIGKILLed and SIGSTOPped/SIGCONTed in turn under the sessions. Every session resumes on
  another runtime under the same id at a newer epoch, its next turn completes, no output
  of a superseded epoch reaches any client, the woken runtime drops the sessions it lost,
  and the new runtime's timeline starts with the control plane's migration markers.
- Rolling update: each runtime in turn gets SIGTERM (``--drain-mode migrate``), exits 0,
  and a new process takes its place, while 50 sessions talk: no session is dropped.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _fleet import (
    Fleet,
    FleetOptions,
    Talker,
    create_database,
    drop_database,
    open_talker,
    poll_until,
)
from failover import failover_scenario

pytestmark = pytest.mark.e2e

#: live sessions of the rolling-update test (NF-016: 50 talk while every runtime is replaced)
SESSIONS = 50


@pytest.fixture
async def fleet_db(pg_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for the fleet's control plane (dropped afterwards)."""
    url = await create_database(pg_url)
    try:
        yield url
    finally:
        await drop_database(url, pg_url)


def _timeline_signals(work: Path, runtime: str, session_id: str) -> list[dict[str, Any]]:
    path = work / "timelines" / runtime / f"{session_id}.jsonl"
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line).get("record", {})
        if "signal" in rec:
            out.append(rec)
    return out


@pytest.mark.timeout(300)
async def test_failover_resumes_every_session_and_no_stale_output_reaches_a_client(
    fleet_db: str, tmp_path: Path
) -> None:
    report = await failover_scenario(tmp_path, fleet_db, sessions=6, rounds=2, seed=11,
                                     actions=("kill", "zombie"))
    rounds = report["rounds_detail"]
    assert [r["action"] for r in rounds] == ["sigkill", "sigstop+sigcont"]
    assert report["stale_outputs_accepted"] == 0, report  # gate 4 (NF-027)
    assert report["sessions_not_moved"] == 0, report
    moved = sum(r["sessions"] for r in rounds)
    assert report["sessions_resumed"] >= moved and report["rotations"] >= moved, report
    assert report["sessions_ended"] == 0 and report["turns_lost"] == 0, report
    assert not report["client_errors"], report["client_errors"]
    # every woken runtime learnt it lost the leases and dropped those sessions
    for r in rounds[1::2]:
        assert r.get("zombie_dropped"), r
    assert report["zombie_sessions_dropped"] >= sum(r["sessions"] for r in rounds[1::2])
    assert report["resume_p99_ms"] > 0 and report["turns_completed"] > 0


async def test_resumed_session_keeps_its_id_records_the_handoff_and_talks_on(
    fleet_db: str, tmp_path: Path
) -> None:
    fleet = await Fleet(tmp_path, fleet_db, FleetOptions(runtimes=2)).start()
    try:
        route = await fleet.route()
        talker = Talker(fleet, route["session_id"])
        await talker.connect()
        assert talker.client is not None
        first = await talker.ask("what is your name")
        assert first.outcome == "closed" and first.reply, first
        old, old_epoch = talker.client.runtime_id, talker.client.epoch
        assert old == route["runtime_id"] and old_epoch == 1
        fleet.runtimes[old].popen.kill()  # SIGKILL
        # the next question: the client notices, asks the control plane, resumes elsewhere
        assert await poll_until(lambda: talker.client is not None
                                and talker.client.runtime_id != old, 60)
        nxt = await talker.ask("what time is it")
        assert nxt.outcome == "closed" and "It is" in nxt.reply, nxt
        c = talker.client
        assert c.epoch == 2 and c.failovers[-1].to_runtime == c.runtime_id
        assert c.failovers[-1].reason.startswith("closed:")
        # the control plane's markers of the move open the session's timeline on the new
        # runtime; its turns run at the new epoch under the same session id
        names = [s["signal"] for s in _timeline_signals(tmp_path, c.runtime_id or "",
                                                        route["session_id"])]
        assert names[:4] == ["migration_start", "lease_rotated", "session_handoff",
                             "migration_finish"], names
        health = await fleet.runtime_health()
        assert health[old] == "unhealthy" and health[c.runtime_id or ""] == "healthy"
        await talker.close()
        assert c.end_reason == "client_end" and c.stale_outputs == 0
        # once the session ended its whole timeline is on disk: the turn ran at epoch 2
        assert await poll_until(lambda: "ended" in [s["signal"] for s in _timeline_signals(
            tmp_path, c.runtime_id or "", route["session_id"])], 30)
        recs = _timeline_signals(tmp_path, c.runtime_id or "", route["session_id"])
        commits = [s for s in recs if s["signal"] == "commit"]
        assert commits and all(s["authority_epoch"] == 2 for s in commits)
        assert {s["session_id"] for s in recs} == {route["session_id"]}
    finally:
        await fleet.stop()


@pytest.mark.timeout(900)
async def test_rolling_update_replaces_every_runtime_and_drops_no_session(
    fleet_db: str, tmp_path: Path
) -> None:
    """NF-016: SIGTERM each runtime (drain, hand the sessions off), start its successor,
    while 50 sessions talk. Every step waits for an event (a turn closed, a process ready or
    exited), never for a time; the sessions pause a second between questions so 50 of them
    answered aloud in real time fit two shared cores."""
    fleet = await Fleet(tmp_path, fleet_db, FleetOptions(drain_deadline_s=30)).start()
    talkers: list[Talker] = []
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    try:
        for _ in range(SESSIONS):
            talkers.append(await open_talker(fleet, turn_timeout_s=120))
        tasks = [asyncio.create_task(t.talk(stop, gap_s=1.0)) for t in talkers]
        assert await poll_until(lambda: all(any(x.outcome == "closed" for x in t.turns)
                                            for t in talkers), 300, 0.2)
        originals = sorted(fleet.runtimes)
        placed = {rid: sum(1 for t in talkers if t.client and t.client.runtime_id == rid)
                  for rid in originals}
        for rid in originals:  # one by one, like a Deployment's rolling update
            await fleet.start_runtime()  # the successor is up and ready first
            assert await fleet.terminate(rid, timeout_s=300) == 0, fleet.runtimes[rid].text()
        survivors = sorted(set(fleet.runtimes) - set(originals))
        # every session keeps talking on the new processes
        mark = {id(t): len(t.turns) for t in talkers}
        assert await poll_until(lambda: all(
            any(x.outcome == "closed" for x in t.turns[mark[id(t)]:]) for t in talkers), 300,
            0.2)
        stop.set()
        await asyncio.gather(*tasks)
        for t in talkers:
            c = t.client
            assert t.error is None, t.error
            assert c is not None and not c.ended, (t.session_id, c and c.end_reason)
            assert c.runtime_id in survivors
            assert c.failovers and all(f.reason.startswith("closed:1000:handed_off:")
                                       or f.reason == "quiet" for f in c.failovers), \
                [(f.reason, f.errors) for f in c.failovers]
            assert c.stale_outputs == 0
            # a question in flight at the hand-off is reported interrupted, never silently lost
            assert not [x for x in t.turns if x.outcome in ("lost", "session_ended")]
        assert sum(placed.values()) == SESSIONS and all(placed.values()), placed
        for rid in originals:
            assert "draining" in fleet.runtimes[rid].text()
        await asyncio.gather(*(t.close() for t in talkers))
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in talkers:
            if t.client is not None:
                await t.client.close()
        await fleet.stop()
