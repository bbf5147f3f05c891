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
- Resume mid-turn: a runtime is SIGKILLed while a turn is being answered; the runtime
  the session moves to restores the conversation from the checkpoint in the control
  plane (the next answer refers to the earlier question), continues the turn ids, and
  itself ends the interrupted turn (T8) before the client's next turn.
- Drain deadline mid-turn: a hand-off that hits its deadline while a reply is spoken ends
  that turn once, on the runtime that ran it; the new runtime does not end it again.
- Operator migrate mid-turn (two-phase hand-off): ``rspp cp session migrate`` while a
  reply is spoken (its LLM, a fake OpenAI server in the test, holds the reply after the
  first sentence until the migrate was observed: the turn is live however slow the
  machine); the runtime holding the lease learns it on its control channel (the
  control plane's push, not its next renewal: renewals are 20 s apart here), drops its
  output, ends the turn ``deauthorized_drain`` and releases the lease; only then does the
  epoch move: counted at the runtime (send stamps against ``cp_lease_epochs``), no output
  of the old epoch was sent after the new one was issued (the code before the hand-off
  sent 32 in this test); the next turn runs on the other runtime at epoch 2.
- Rolling update: ``test_scaleout_rolling.py`` (its own module, so a worker runs it
  beside these).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from rspp.cli._app import app as cli_app
from rspp.client import FailoverClient
from rspp.testing.fakes import FakeOpenAI, Fault
from rspp.testing.fakes._server import serve_asgi

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _fleet import (
    KEY,
    SPEC,
    Fleet,
    FleetOptions,
    Talker,
    db_rows,
    poll_until,
)
from failover import failover_scenario

if TYPE_CHECKING:  # a runtime `import conftest` finds whichever conftest was imported first
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e



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


async def _one_talker(fleet: Fleet) -> tuple[str, Talker, FailoverClient]:
    """A routed session with its connected talker (patient turns) and client."""
    sid = str((await fleet.route())["session_id"])
    talker = Talker(fleet, sid, turn_timeout_s=60)
    await talker.connect()
    assert talker.client is not None
    return sid, talker, talker.client


async def _checkpoint(fleet: Fleet, session_id: str) -> dict[str, Any]:
    resp = await fleet.http.get(f"{fleet.cp_url}/v1/sessions/{session_id}/state")
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 60) -> bool:
    """Poll the control plane (another process's state) until ``check()``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.mark.timeout(300)
async def test_failover_mid_turn_restores_the_conversation_and_ends_the_turn_on_the_new_runtime(
    fleet_db: str, tmp_path: Path, rspp_cli: RsppCli
) -> None:
    """F-155, F-157, F-158: SIGKILL while a reply is being spoken; the session resumes from
    its checkpoint in the control plane's database (PostgreSQL)."""
    # a patient lease (renewed every 1.3 s): on a loaded machine a renewal late by a second
    # must not rotate the lease under the first turns (the kill moves it after expiry)
    fleet = await Fleet(tmp_path, fleet_db, FleetOptions(runtimes=2, lease_ttl_ms=4000)).start()
    try:
        sid, talker, c = await _one_talker(fleet)
        first = await talker.ask("what is your name", key="q1")
        assert first.outcome == "closed" and first.turn_id == f"{sid}:turn:1", first
        old = c.runtime_id or ""
        # the runtime checkpoints at each turn boundary: the closed turn is saved
        saved: dict[str, Any] = {}

        async def saved_turn(key: str, want: str) -> bool:
            saved.update(await _checkpoint(fleet, sid))
            point = saved.get("document", {}).get("session", {})
            value = point.get(key)
            return (value.get("turn_id") if isinstance(value, dict) else value) == want

        assert await _until(lambda: saved_turn("last_closed_turn", f"{sid}:turn:1")), saved
        assert saved["holder"] == old and saved["lease_epoch"] == 1, saved
        history = saved["document"]["hot"].get("llm/history", saved["document"])
        assert [m[0] for m in history] == ["user", "assistant"], history
        # the second question: killed while its reply is spoken, once its open is saved
        asking = asyncio.create_task(talker.ask("tell me a joke", key="q2"))
        assert await _until(lambda: saved_turn("open_turn", f"{sid}:turn:2")), saved
        assert saved["document"]["session"]["id_counters"]["turn"] == 2, saved
        assert [k for k, _ in saved["document"]["session"]["idempotency"]] == ["q1", "q2"]
        assert not asking.done()
        fleet.runtimes[old].popen.kill()  # SIGKILL mid-turn
        interrupted = await asyncio.wait_for(asking, 120)
        assert interrupted.outcome == "interrupted", interrupted
        # the new runtime, not the client, ended the turn its predecessor left open
        assert interrupted.abort_reason == "authority_loss", interrupted
        moved = c.failovers[-1]
        assert moved.to_runtime == c.runtime_id != old and c.epoch == 2
        assert moved.aborted_turns == moved.runtime_aborted == [f"{sid}:turn:2"]
        assert moved.client_aborted == []
        # the conversation goes on where the checkpoint left it, under the next turn id
        recall = await talker.ask("what did I ask")
        assert recall.outcome == "closed", recall
        # (reply text arrives per spoken segment: "You asked:" and "what is your name.")
        assert recall.reply.startswith("You asked") and "what is your name" in recall.reply, \
            recall
        # (the new owner's turn ids carry its epoch: none of the old owner's can repeat)
        assert recall.turn_id == f"{sid}:turn:3@2", recall
        # F-158: replaying the interrupted question with its key after the failover is a
        # duplicate for the new runtime too (the key window came with the checkpoint)
        await c.send_text("tell me a joke", "q2")
        assert await poll_until(lambda: bool(talker.errors), 30), talker.errors
        assert (talker.errors[0].code, talker.errors[0].field) == ("duplicate", "id")
        await talker.close()
        new = c.runtime_id or ""
        assert c.end_reason == "client_end" and c.stale_outputs == 0
        assert await poll_until(lambda: "ended" in [s["signal"] for s in _timeline_signals(
            tmp_path, new, sid)], 30)
        recs = _timeline_signals(tmp_path, new, sid)
        names = [(s["signal"], s.get("turn_id")) for s in recs]
        t2, t3 = f"{sid}:turn:2", f"{sid}:turn:3@2"
        assert [n for n, _ in names[:4]] == ["migration_start", "lease_rotated",
                                             "session_handoff", "migration_finish"], names
        # T8 for the interrupted turn at its own epoch, then the next turn runs normally
        assert names[4:7] == [("deauthorized_drain", t2), ("abort", t2), ("close", t2)], names
        dropped = [s for s in recs if s["signal"] == "drop_notice"
                   and s["reason"].startswith("duplicate_idempotency_key:q2:")]
        assert len(dropped) == 1 and dropped[0]["edge_id"] == "input.text", dropped
        assert dropped[0]["reason"].endswith(f"first={sid}:input:2")  # the old runtime's id
        assert not [n for n, t in names if t == f"{sid}:turn:4@2"]  # no turn for the duplicate
        abort = recs[5]
        assert abort["reason"] == "authority_loss" and abort["authority_epoch"] == 1
        assert recs[4]["reason"] == f"session_moved_from:{old}"
        turn3 = [n for n, t in names if t == t3]
        assert turn3.index("turn_open") < turn3.index("commit") < turn3.index("close"), turn3
        assert turn3[-1] == "close" and "abort" not in turn3, turn3
        assert all(s["authority_epoch"] == 2 for s in recs if s.get("turn_id") == t3)
        # the old runtime's timeline opened turn 2 and never ended it (it was killed)
        before = [(s["signal"], s.get("turn_id")) for s in _timeline_signals(tmp_path, old, sid)]
        assert ("turn_open", t2) in before and ("abort", t2) not in before
        valid = rspp_cli("contracts", "validate", str(tmp_path / "timelines" / new /
                                                      f"{sid}.jsonl"))
        assert valid.returncode == 0 and valid.stdout.strip().endswith(": valid"), valid.stdout
        # the checkpoints carry on at the new holder and epoch
        final = await _checkpoint(fleet, sid)
        assert final["holder"] == new and final["lease_epoch"] == 2
        assert final["version"] > saved["version"]
        point = final["document"]["session"]
        assert point["last_committed_turn"] == t3 and point["open_turn"] is None
        assert point["id_counters"]["turn"] == 3
        assert [m[1] for m in final["document"]["hot"]["llm/history"] if m[0] == "user"] == [
            "what is your name", "what did I ask"]
    finally:
        await fleet.stop()


@pytest.mark.timeout(300)
async def test_a_drain_hand_off_at_its_deadline_ends_the_running_turn_once(
    fleet_db: str, tmp_path: Path
) -> None:
    """SIGTERM (``--drain-mode migrate``) while a reply is being spoken, with a drain
    deadline shorter than the reply: the turn ends once, on the runtime that ran it
    (``abort(authority_loss)``), and the runtime the session moves to does not end it
    again; the next question is answered there."""
    options = FleetOptions(runtimes=2, drain_deadline_s=0.5, heartbeat_interval_s=1.0,
                           heartbeat_timeout_ms=15_000, lease_ttl_ms=6_000)
    fleet = await Fleet(tmp_path, fleet_db, options).start()
    try:
        sid, talker, c = await _one_talker(fleet)
        assert (await talker.ask("what is your name")).outcome == "closed"
        old = c.runtime_id or ""
        asking = asyncio.create_task(talker.ask("help"))  # the longest spoken answer
        assert await poll_until(lambda: talker.turns[-1].audio_frames > 0, 60)
        assert not asking.done()
        assert await fleet.terminate(old, timeout_s=120) == 0, fleet.runtimes[old].text()
        cut = await asyncio.wait_for(asking, 120)
        tid = cut.turn_id
        assert tid is not None and cut.outcome in ("abort:authority_loss", "interrupted"), cut
        assert await poll_until(lambda: c.runtime_id not in (None, old), 60)
        moved = c.failovers[-1]
        assert moved.reason.startswith("closed:1000:handed_off:"), moved
        # the client heard of the turn's end once, from the runtime that ran it
        assert moved.runtime_aborted == [] and moved.client_aborted == [], moved
        nxt = await talker.ask("what time is it")
        assert nxt.outcome == "closed" and "It is" in nxt.reply, nxt
        new = c.runtime_id or ""
        await talker.close()
        assert c.end_reason == "client_end" and c.stale_outputs == 0
        assert await poll_until(lambda: "ended" in [s["signal"] for s in _timeline_signals(
            tmp_path, new, sid)], 30)
        ended_old = [(s["signal"], s.get("reason")) for s in
                     _timeline_signals(tmp_path, old, sid) if s.get("turn_id") == tid
                     and s["signal"] in ("abort", "commit", "close")]
        assert ended_old == [("abort", "authority_loss"), ("close", None)], ended_old
        assert not [s for s in _timeline_signals(tmp_path, new, sid)
                    if s.get("turn_id") == tid], "the new runtime ended the turn again"
    finally:
        await fleet.stop()


def _handoffs_learned(metrics: str) -> dict[str, float]:
    """``rspp_lease_handoffs_total`` of a runtime's /metrics, by how it learned them."""
    out = {}
    for line in metrics.splitlines():
        m = re.match(r'rspp_lease_handoffs_total\{learned="(\w+)"\} (\S+)', line)
        if m and float(m.group(2)):
            out[m.group(1)] = float(m.group(2))
    return out


def _sent_after(talker: Talker, runtime: str, epoch: int, at_ms: int) -> int:
    """Outputs of ``epoch`` that ``runtime`` stamped at or after ``at_ms``."""
    return sum(n for (rid, _ready, ep, mark, _sup, _ref), n in talker.outputs.items()
               if rid == runtime and ep == epoch and mark is not None and mark >= at_ms)


@pytest.mark.timeout(300)
async def test_an_operator_migrate_of_a_live_turn_hands_off_before_the_epoch_moves(
    fleet_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # renewals every 20 min: the holder learns of the hand-off on its control channel (the
    # push), long before its next renewal would tell it (the fallback). The keepers renew
    # on a shared tick (the monotonic clock's multiples of the period), so a renewal may
    # come at any moment after the session opens: with 20 s one fell inside the migrate
    # about one run in twenty (test_handoff_push, the same assumption)
    # The LLM is a fake OpenAI server in this process: the reply to "help" is held after
    # its first sentence (spoken) until the migrate was observed, so the turn is live
    # during the migrate however slow the machine (a 7.5 s spoken reply finished before
    # a migrate at load 20)
    llm = FakeOpenAI(reply=_scripted_reply)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    async with serve_asgi(llm.app) as llm_url:
        options = FleetOptions(runtimes=2, lease_ttl_ms=3_600_000, heartbeat_timeout_ms=15_000,
                               spec=_held_llm_spec(llm_url))
        fleet = await Fleet(tmp_path, fleet_db, options).start()
        try:
            await _migrate_a_held_turn(fleet, llm, tmp_path)
        finally:
            llm.faults.release()  # a stream still held (a failed test) ends with the fleet
            await fleet.stop()


def _held_llm_spec(llm_url: str) -> str:
    """The fleet's text assistant with its LLM served by a fake OpenAI server at
    ``llm_url``: the held stream is cut by the hand-off (no timeout or budget ends it)."""
    text = SPEC.read_text()
    for old, new in (
        ("budgets: {turn_ms: 60000, provider_timeout_ms: 20000}",
         "budgets: {turn_ms: 600000, node_ms: 600000, path_ms: 600000, "
         "provider_timeout_ms: 600000}"),
        ("  llm: {primary: local}",
         "  llm: {primary: openai, config: {api_key: env://OPENAI_API_KEY, model: fake, "
         f'base_url: "{llm_url}/v1"}}}}'),
    ):
        assert old in text, old
        text = text.replace(old, new)
    return text


#: the held reply: its first sentence, then the first word of the next (which completes
#: the sentence for the segmenter), then the hold
_HELP = "Here is some help for you. I can tell you the time and answer questions."
_HELD_AFTER = len("Here is some help for you. I".split(" "))


def _scripted_reply(messages: list[dict[str, Any]]) -> str:
    last = str(messages[-1].get("content", "")).strip().lower()
    return {"help": _HELP, "what time is it": "It is noon."}.get(last, "I am a test.")


async def _migrate_a_held_turn(fleet: Fleet, llm: FakeOpenAI, tmp_path: Path) -> None:
    sid = str((await fleet.route())["session_id"])
    talker = Talker(fleet, sid, turn_timeout_s=60)
    await talker.connect()
    c = talker.client
    assert c is not None
    assert (await talker.ask("what is your name")).outcome == "closed"
    old = c.runtime_id or ""
    llm.faults.push(Fault("hold", after_items=_HELD_AFTER))
    asking = asyncio.create_task(talker.ask("help"))
    await asyncio.wait_for(llm.faults.held.wait(), 120)
    assert await poll_until(lambda: talker.turns[-1].audio_frames > 0, 60)
    assert not asking.done()
    # the command line's own code, run in this process
    moved = await asyncio.to_thread(CliRunner().invoke, cli_app, [
        "cp", "session", "migrate", sid, "--server", fleet.cp_url, "--api-key", KEY])
    assert moved.exit_code == 0, moved.output
    result = json.loads(moved.stdout)
    assert result["from_runtime"] == old and result["epoch"] == 2, result
    new = result["to_runtime"]
    # the migrate is observed: the held reply may go on (the old runtime cut it)
    llm.faults.release()
    cut = await asyncio.wait_for(asking, 120)
    assert cut.outcome != "closed", cut  # the turn did not finish on the old runtime
    # the next turn runs on the other runtime at the new epoch
    nxt = await talker.ask("what time is it")
    assert nxt.outcome == "closed" and "It is" in nxt.reply, nxt
    assert (c.runtime_id, c.epoch) == (new, 2)
    await talker.close()
    assert c.end_reason == "client_end" and c.stale_outputs_accepted == 0

    handoff = (await db_rows(fleet.db_url, "SELECT started_at_ms, completed_at_ms, "
                             f"outcome, action FROM cp_lease_handoffs WHERE session_id = "
                             f"'{sid}'"))
    assert [(h["action"], h["outcome"]) for h in handoff] == [("migrate", "released")]
    # the holder learned it from the push, not at a renewal
    learned = _handoffs_learned(await fleet.scrape(old))
    assert learned == {"push": 1.0}, learned
    issued = {r["epoch"]: r["issued_at_ms"] for r in await db_rows(
        fleet.db_url, f"SELECT epoch, issued_at_ms FROM cp_lease_epochs WHERE "
        f"session_id = '{sid}'")}
    assert issued[2] >= handoff[0]["completed_at_ms"] >= handoff[0]["started_at_ms"]
    assert _sent_after(talker, old, 1, 0) > 0  # the counting sees the old runtime
    # NF-027 at the runtime: nothing of epoch 1 was sent once epoch 2 was issued
    assert _sent_after(talker, old, 1, issued[2]) == 0, talker.outputs
    print(f"handoff: released {handoff[0]['completed_at_ms'] - handoff[0]['started_at_ms']}"
          f" ms after it started; epoch-1 outputs stamped after the start: "
          f"{_sent_after(talker, old, 1, handoff[0]['started_at_ms'])}")
    # the old runtime ended the turn under its lease: T8, reason handed_off
    tid = cut.turn_id
    ended = [(s["signal"], s.get("reason")) for s in _timeline_signals(tmp_path, old, sid)
             if s.get("turn_id") == tid and s["signal"] in
             ("deauthorized_drain", "abort", "commit", "close")]
    assert ended == [("deauthorized_drain", "handed_off"), ("abort", "authority_loss"),
                     ("close", None)], ended
    assert not [s for s in _timeline_signals(tmp_path, new, sid) if s.get("turn_id") == tid]
