"""Failure matrix row "lease loss / stale output": authority moves while the reply plays.

``rspp serve`` (embedded control plane) and the real client: a routed session is
answering when an operator rotates its lease through the control-plane API. The
runtime follows the new epoch: the playing turn ends ``deauthorized_drain``,
``abort(authority_loss)``, ``close`` (T8); nothing of it is accepted or played after
the drain (gate 4: accepted stale-epoch outputs = 0); the next question is answered
at the new epoch; the timeline satisfies the contract.
"""

from __future__ import annotations

from pathlib import Path

from rspp.transports import ReplyText

from .conftest import (
    Embedded,
    ask_first_question,
    assert_lifecycles,
    assert_valid,
    session_timeline,
    signals,
    turn_event,
)


async def test_lease_rotation_mid_reply_fences_the_turn_and_the_next_turn_runs_on_the_new_epoch(
    embedded: Embedded, question: tuple[bytes, Path], tmp_path: Path
) -> None:
    srv, api = embedded.srv, embedded.api
    route, talker, opened = await ask_first_question(api, question[0])
    sid = route["session_id"]
    await talker.until(lambda ev: isinstance(ev, ReplyText))  # the reply is playing
    change = await api.call("POST", f"/v1/leases/{sid}/rotate")
    assert change["lease"]["epoch"] == 2
    aborted = await talker.until(turn_event("abort", opened.turn_id))
    assert aborted.reason == "authority_loss"
    mark = len(talker.events)
    talker.say()
    second = await talker.until(turn_event("open"), since=mark)
    await talker.until(turn_event("commit", second.turn_id), since=mark)
    await talker.finish()

    lines = await session_timeline(tmp_path, sid)
    lifecycles = assert_lifecycles(lines)
    assert lifecycles[opened.turn_id] == [("turn_open", None),
                                          ("deauthorized_drain", "lease_rotated"),
                                          ("abort", "authority_loss"), ("close", None)]
    assert lifecycles[second.turn_id] == [("turn_open", None), ("commit", None),
                                          ("close", None)]
    drained = next(i for i, ln in enumerate(lines) if ln["kind"] == "control_signal"
                   and ln["record"]["signal"] == "deauthorized_drain")
    stale = [ln["record"] for ln in lines[drained:] if ln["kind"] == "control_signal"
             and ln["record"]["signal"] in ("output_accepted", "playback_started")
             and ln["record"].get("turn_id") == opened.turn_id]
    assert stale == []  # gate 4: no output of the fenced turn after the drain
    epochs = {s["signal"]: s["authority_epoch"] for s in signals(lines, "turn_open")
              if s["turn_id"] == second.turn_id}
    assert epochs == {"turn_open": 2}
    timeline = tmp_path / "timelines" / f"{sid}.jsonl"
    assert_valid(timeline)
    status = await api.call("GET", f"/v1/sessions/{sid}")
    assert status["lease_epoch"] == 2
    assert await srv.stop() == 0
