"""Operator migrate of a live mid-turn session: a two-phase hand-off (F-095, F-156, F-157).

``rspp cp serve`` on a fresh PostgreSQL database, two ``rspp serve --control-plane``
runtimes (``benchmarks/_fleet.py``), one live :class:`~rspp.client.FailoverClient`
session asking a question whose reply is spoken for several seconds. While the reply
plays, an operator runs ``rspp cp session migrate``. The control plane does not rotate
the epoch under the runtime holding it: the runtime learns of the hand-off at its next
renewal, drops its output, ends the turn ``deauthorized_drain`` and releases the lease;
only then does the epoch move (the hand-off's outcome is ``released``, not
``timed_out``). Counted at the runtime (each output's send stamp, protocol 1.2, against
the control plane's ``cp_lease_epochs.issued_at_ms``, as ``benchmarks/failover.py``
does): the old runtime sent no output of the old epoch after the new one was issued.
The next turn runs on the other runtime at epoch 2.

(On the code before the hand-off, the migrate rotated the epoch at once and the old
runtime kept speaking until its next renewal: outputs stamped after the rotation.)
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _fleet import (
    KEY,
    Fleet,
    FleetOptions,
    Talker,
    create_database,
    db_rows,
    drop_database,
    poll_until,
)

if TYPE_CHECKING:  # a runtime `import conftest` finds whichever conftest was imported first
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e


@pytest.fixture
async def fleet_db(pg_url: str) -> AsyncIterator[str]:
    url = await create_database(pg_url)
    try:
        yield url
    finally:
        await drop_database(url, pg_url)


def _signals(work: Path, runtime: str, session_id: str) -> list[dict[str, Any]]:
    path = work / "timelines" / runtime / f"{session_id}.jsonl"
    return [rec for rec in (json.loads(line).get("record", {})
                            for line in path.read_text().splitlines()) if "signal" in rec]


def _sent_after(talker: Talker, runtime: str, epoch: int, at_ms: int) -> int:
    """Outputs of ``epoch`` that ``runtime`` stamped at or after ``at_ms``."""
    return sum(n for (rid, _ready, ep, mark, _sup, _ref), n in talker.outputs.items()
               if rid == runtime and ep == epoch and mark is not None and mark >= at_ms)


@pytest.mark.timeout(300)
async def test_an_operator_migrate_of_a_live_turn_hands_off_before_the_epoch_moves(
    fleet_db: str, tmp_path: Path, rspp_cli: RsppCli
) -> None:
    # renewals every 2 s: without the hand-off the old runtime speaks on for up to that
    fleet = await Fleet(tmp_path, fleet_db, FleetOptions(runtimes=2, lease_ttl_ms=6_000,
                                                         heartbeat_timeout_ms=15_000)).start()
    try:
        sid = str((await fleet.route())["session_id"])
        talker = Talker(fleet, sid, turn_timeout_s=60)
        await talker.connect()
        c = talker.client
        assert c is not None
        assert (await talker.ask("what is your name")).outcome == "closed"
        old = c.runtime_id or ""
        asking = asyncio.create_task(talker.ask("help"))  # the longest spoken answer
        assert await poll_until(lambda: talker.turns[-1].audio_frames > 0, 60)
        assert not asking.done()
        moved = await asyncio.to_thread(rspp_cli, "cp", "session", "migrate", sid,
                                        "--server", fleet.cp_url, "--api-key", KEY)
        assert moved.returncode == 0, moved.stderr
        result = json.loads(moved.stdout)
        assert result["from_runtime"] == old and result["epoch"] == 2, result
        new = result["to_runtime"]
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
        ended = [(s["signal"], s.get("reason")) for s in _signals(tmp_path, old, sid)
                 if s.get("turn_id") == tid and s["signal"] in
                 ("deauthorized_drain", "abort", "commit", "close")]
        assert ended == [("deauthorized_drain", "handed_off"), ("abort", "authority_loss"),
                         ("close", None)], ended
        assert not [s for s in _signals(tmp_path, new, sid) if s.get("turn_id") == tid]
    finally:
        await fleet.stop()
