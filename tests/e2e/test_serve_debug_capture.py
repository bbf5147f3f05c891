"""On-demand debug capture of one live session through ``rspp serve`` (F-027, F-076).

Two clients talk to one server at the same time. Debug events are off by default; one
client sends ``{"type": "debug", "seconds": S}`` and its session's timeline gets the
kernel's debug records (one TelemetryLane ``debug`` record per control command) while
the capture lasts; the other session's timeline gets none, and its own request is refused
while the first capture holds the runtime's one slot (``--max-debug-captures``, default 1:
what a capture costs the other sessions is bounded by how many run at once). A short capture ends by
itself: the next turn of the session, after it expired, records no debug events; a
capture ended early (``seconds`` 0) records nothing more either. The
captured session still validates and replays with no divergence (debug records are
side notes: they take no sequence number).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from rspp.transports import ErrorEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServedChat


pytestmark = pytest.mark.e2e

KEY = "serve-debug-admin-key"
SHORT_S = 0.2



def _debug(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("lane") == "TelemetryLane"
            and ":debug:" in r["event_id"]]


def test_debug_capture_records_one_session_only_and_ends_by_itself(
    served_chat: Callable[..., ServedChat], rspp_cli: RsppCli, closed_turn: Callable[..., Any]
) -> None:
    chat = served_chat(KEY, "--record-level", "L2")
    chat.set_policy("acme", {"recording_level": "L2"})

    records, until, connect = chat.records, chat.until, chat.connect

    async def scenario() -> tuple[str, str, list[str], list[str]]:
        (a, sid_a), (b, sid_b) = await connect(), await connect()
        async with a, b:
            await a.capture_debug(601)  # a capture is bounded: refused, naming the field
            async for ev in a.events():
                if isinstance(ev, ErrorEvent):
                    assert (ev.field, ev.fatal) == ("seconds", False), ev
                    break
            await a.capture_debug(600)  # session A only, for now
            # one capture at a time on this runtime (--max-debug-captures, default 1): once
            # A's is on, B's request is refused naming the field, and B records nothing
            await until(sid_a, lambda recs: any(
                r.get("reason") == "capture_on:600s" for r in _debug(recs)))
            await b.capture_debug(60)
            async for ev in b.events():
                if isinstance(ev, ErrorEvent):
                    assert (ev.field, ev.fatal) == ("seconds", False), ev
                    assert "--max-debug-captures" in ev.message, ev
                    break
            # both sessions take a turn at the same time
            turns_a, turns_b = [], []
            first = await asyncio.gather(closed_turn(a, "what is your name"),
                                         closed_turn(b, "what is your name"))
            turns_a.append(first[0])
            turns_b.append(first[1])
            # a short capture replaces the long one; once it is recorded (so it started),
            # waiting longer than it lasts is a lower bound whatever the machine load
            await a.capture_debug(SHORT_S)
            await until(sid_a, lambda recs: any(
                r.get("reason") == f"capture_on:{SHORT_S:g}s" for r in _debug(recs)))
            await asyncio.sleep(SHORT_S + 0.3)
            turns_a.append(await closed_turn(a, "what time is it"))
            turns_b.append(await closed_turn(b, "what time is it"))
            await a.capture_debug(600)  # a long capture, ended at once: seconds 0
            await a.capture_debug(0)
            turns_a.append(await closed_turn(a, "what is your name"))
            await a.end()
            await b.end()
            for sid in (sid_a, sid_b):
                await until(sid, lambda recs: any(
                    r.get("signal") == "ended" for r in recs))
        return sid_a, sid_b, turns_a, turns_b

    sid_a, sid_b, turns_a, turns_b = asyncio.run(asyncio.wait_for(scenario(), 120))
    recs_a, recs_b = records(sid_a), records(sid_b)
    debug_a = _debug(recs_a)
    # the captured session: its first turn's control commands, each as a debug record
    first_a = {r["reason"] for r in debug_a if r.get("turn_id") == turns_a[0]}
    assert {"control:turn_start", "control:turn_end"} <= first_a, first_a
    assert all(r["reason"].startswith(("control:", "capture_on:")) for r in debug_a)
    # the short capture ended by itself: nothing after its deadline, none in the next turn
    on = next(r for r in debug_a if r["reason"] == f"capture_on:{SHORT_S:g}s")
    deadline = on["runtime_timestamp_ms"] + SHORT_S * 1000
    later = [r for r in debug_a if r["runtime_timestamp_ms"] > deadline + 1]
    assert [r["reason"] for r in later] == ["capture_on:600s"], later
    assert not [r for r in debug_a if r.get("turn_id") == turns_a[1]]
    # a capture ended with seconds 0 records nothing more: the third turn has none
    assert not [r for r in debug_a if r.get("turn_id") == turns_a[2]]
    for tid in turns_a[1:]:
        assert any(r.get("signal") == "commit" and r.get("turn_id") == tid for r in recs_a)
    # the other session, concurrent with it, recorded none
    assert not _debug(recs_b)
    assert [r.get("turn_id") for r in recs_b if r.get("signal") == "commit"] == turns_b
    # debug records are side notes: the captured session validates and replays exactly
    rspp_cli.validates_and_replays(chat.timeline(sid_a), chat.spec)
