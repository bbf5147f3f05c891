"""Failure matrix row "transport disconnect / stall": the network drops mid-turn.

``rspp serve`` and the real client: the client's socket is cut (no close handshake)
while a turn is open. The session records ``disconnected``; after the stall timeout
``stall``, and the open turn ends ``abort(transport_disconnect)``, ``close``. The client
reconnects with its token inside the resume window: the same session resumes
(``connected``/``resumed``), the next question is answered and committed, and the
timeline satisfies the contract.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rspp.client import LiveClient, session_url

from .conftest import (
    Embedded,
    Talker,
    ask_first_question,
    assert_lifecycles,
    assert_valid,
    read_timeline_lenient,
    session_timeline,
    signals,
    turn_event,
)


async def test_disconnect_stalls_and_aborts_the_open_turn_and_a_reconnect_resumes_the_session(
    embedded: Embedded, question: tuple[bytes, Path], tmp_path: Path
) -> None:
    srv, api = embedded.srv, embedded.api
    route, talker, opened = await ask_first_question(api, question[0])
    sid = route["session_id"]
    await talker.abort()
    path = tmp_path / "timelines" / f"{sid}.jsonl"
    async with asyncio.timeout(60):  # the server stalls the session and aborts the turn
        while True:
            lines = read_timeline_lenient(path) if path.exists() else []
            if any(s.get("reason") == "transport_disconnect" for s in signals(lines, "abort")):
                break
            await asyncio.sleep(0.05)
    again = await LiveClient.connect(session_url(route["endpoint"], sid), token=route["token"])
    assert again.ready.resumed and again.ready.session_id == sid
    talker = Talker(again, question[0])
    talker.say()
    second = await talker.until(turn_event("open"))
    await talker.until(turn_event("commit", second.turn_id))
    await talker.finish()

    lines = await session_timeline(tmp_path, sid)
    lifecycles = assert_lifecycles(lines)
    assert lifecycles[opened.turn_id][-2:] == [("abort", "transport_disconnect"), ("close", None)]
    assert lifecycles[second.turn_id] == [("turn_open", None), ("commit", None), ("close", None)]
    names = [(s["signal"], s.get("reason")) for s in signals(
        lines, "connected", "disconnected", "stall", "abort", "ended")]
    cut = [n for n, _ in names].index("disconnected")
    assert [n for n, _ in names[cut:cut + 3]] == ["disconnected", "stall", "abort"], names
    assert ("connected", "resumed") in names[cut:]
    assert names[-1][0] == "ended"
    assert_valid(path)
    assert await srv.stop() == 0
