"""A long live session keeps a bounded window of finished turns (flat memory per turn).

Regression: ``LiveTransport.turns`` kept every turn of a session (its reply text
stream, audio buffer and counters) until the session ended, so a session's memory
grew with each turn it served. Finished turns past the last
``KEEP_FINISHED_TURNS`` are forgotten now; every turn still reaches the client whole.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rspp.client import LiveClient
from rspp.testing import TEXT_CHAT_SPEC
from rspp.transports import ReplyText, TurnEvent
from rspp.transports._live import KEEP_FINISHED_TURNS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]



async def test_a_long_session_keeps_only_its_last_finished_turns(serve, issue,
                                                                 tmp_path: Path) -> None:
    spec = tmp_path / "text_chat.yaml"
    spec.write_text(TEXT_CHAT_SPEC)
    turns = 3 * KEEP_FINISHED_TURNS
    sizes: list[int] = []
    async with serve(source=spec, as_is=True) as srv:
        async with await LiveClient.connect(srv.url("long1"), token=issue("long1")) as client:
            transport = srv.hub.sessions["long1"].transport
            replies: list[str] = []
            for n in range(turns):
                await client.send_text(f"what is {n} plus {n}")
                async for ev in client.events():
                    if isinstance(ev, ReplyText) and ev.final:
                        replies.append(ev.text)
                    if isinstance(ev, TurnEvent) and ev.state == "close":
                        assert ev.turn_id is not None
                        last = ev.turn_id
                        break
                sizes.append(len(transport.turns))
            # the latest finished turn is still there for late readers
            assert transport.turns[last].finished == "completed"
            assert transport.turns[last].text.text == replies[-1]
            await client.end()
    assert len(replies) == turns and all(replies), replies  # every reply reached the client
    # the window stops growing once it is full: memory per session is flat in its turns
    assert max(sizes) <= KEEP_FINISHED_TURNS + 1, sizes
    assert sizes[-1] == sizes[KEEP_FINISHED_TURNS + 1], sizes
