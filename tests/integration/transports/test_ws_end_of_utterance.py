"""Push-to-talk over the WebSocket endpoint: the client's ``end_of_utterance`` (F-042)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from rspp.client import LiveClient
from rspp.transports import ReplyText, TurnEvent

from .conftest import VOICE, assert_replays

pytestmark = pytest.mark.integration


async def test_end_of_utterance_opens_the_turn_with_no_silence_after_it(
    serve, speech, issue, tmp_path: Path
) -> None:
    """The VAD waits 5 s of silence; the client sends 0.2 s, then ``end_of_utterance`` and
    no more audio until the turn opened: only the client's signal can have opened it."""
    source = tmp_path / "push_to_talk.yaml"
    source.write_text(VOICE.read_text().replace("silence_ms: 500}", "silence_ms: 5000}", 1))
    got: list[Any] = []
    async with serve(source=source) as srv:
        async with await LiveClient.connect(srv.url("p1"), token=issue("p1")) as client:
            await client.stream_pcm(speech["question"][0] + bytes(6400))
            await client.end_of_utterance()

            async def until_closed() -> None:
                async for item in client.events():
                    got.append(item)
                    if isinstance(item, TurnEvent) and item.state == "open":
                        await client.end()

            await asyncio.wait_for(until_closed(), 120)  # a guard against a hang, not a clock
        assert client.close_code == 1000, client.close_reason
    states = [e.state for e in got if isinstance(e, TurnEvent)]
    assert states == ["open", "commit", "close"]
    assert [e for e in got if isinstance(e, ReplyText)]
    timeline = srv.factory.timeline_for("p1")
    assert timeline is not None
    records = [json.loads(x)["record"] for x in timeline.read_text().splitlines()]
    proposals = [r["reason"] for r in records if r.get("signal") == "turn_open_proposed"]
    assert proposals == ["explicit_end_of_utterance"]
    assert_replays(timeline, srv.spec)
