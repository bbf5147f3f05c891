"""A served session whose TTS provider is slow still plays its whole reply and commits.

Regression: typed text -> OpenAI-compatible LLM fake ("Sure.") -> sentence segmenter ->
OpenAI-compatible TTS fake, in a real ``rspp serve`` (embedded control plane) with a
live WebSocket client. The LLM's end-of-stream marker reaches the segmenter -> tts edge
right after the sentence; while the TTS worker is held by a slow synthesis (first audio
2.5 s late, or 0.9 s between audio chunks) the marker waits in that edge longer than
its time-in-queue bound (1000 ms in simple/v1) and used to be shed as stale: the TTS
never ended the reply (no ``audio_end``), playback never completed and the turn
waited out its budget and aborted. End-of-stream markers are never shed now; the
turn commits as soon as its (late) audio has played.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rspp.client import LiveClient, route_session
from rspp.testing.fakes import FakeOpenAI
from rspp.testing.fakes._faults import Fault
from rspp.testing.fakes._server import serve_asgi
from rspp.transports import AudioOut, Clear, ReplyText, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

KEY = "slow-tts-e2e-admin-key"
RATE = 16000


async def _typed_turn(client: LiveClient, text: str) -> tuple[list[object], float]:
    """Type one turn; its events up to ``close`` and the seconds to its first audio."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.send_text(text)
    events: list[object] = []
    first: float | None = None
    async for ev in client.events():
        if isinstance(ev, AudioOut) and first is None:
            first = loop.time() - started
        if isinstance(ev, AudioOut | ReplyText | TurnEvent | Clear):
            events.append(ev)
        if isinstance(ev, TurnEvent) and ev.state == "close":
            break
    assert first is not None, events
    return events, first


async def _served_turn(llm: FakeOpenAI, tts: FakeOpenAI, text: str, *, name: str,
                       serve_process: Callable[..., ServeProcess], tmp_path: Path,
                       fake_openai_spec: Callable[..., str]) -> tuple[list[object], float]:
    """One typed turn of a served session of the fakes' spec: :func:`_typed_turn`'s answer.

    The turn budget is far above the slow reply (the machine may be busy): a turn ends
    because its playback completed, never because the budget ran out."""
    async with serve_asgi(llm.app) as llm_url, serve_asgi(tts.app) as tts_url:
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(fake_openai_spec(llm_url, tts_url, name=name, turn_ms=60000,
                                         timeout_ms=20000))
        srv = await asyncio.to_thread(lambda: serve_process(
            str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}", "--api-key", KEY,
            "--timeline-dir", str(tmp_path / "timelines")).wait_ready())
        target = await route_session(srv.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name=name)
        async with await LiveClient.connect(target.url, token=target.token,
                                            sample_rate=RATE) as client:
            turn = await _typed_turn(client, text)
            await client.end()
        code, _, err = await asyncio.to_thread(srv.terminate)
    assert code == 0, err
    return turn


@pytest.mark.parametrize("slowness", ["first_audio_2.5s_late", "0.9s_between_chunks"])
async def test_a_slow_tts_reply_plays_completely_and_its_turn_commits(
        slowness: str, serve_process: Callable[..., ServeProcess], tmp_path: Path,
        fake_openai_spec: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    llm, tts = FakeOpenAI(reply=lambda _: "Sure."), FakeOpenAI()
    if slowness == "first_audio_2.5s_late":
        tts.faults.sticky = Fault("stall", seconds=2.5)
        late_s = 2.5
    else:
        tts.token_delay_s = 0.9  # "Sure." is 0.15 s of tone in two chunks: 1.8 s to stream
        late_s = 0.9
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    events, first_audio_s = await _served_turn(
        llm, tts, "hello", name="slow-tts", serve_process=serve_process, tmp_path=tmp_path,
        fake_openai_spec=fake_openai_spec)
    assert first_audio_s >= late_s  # the provider really was slow
    states = [(ev.state, ev.reason) for ev in events if isinstance(ev, TurnEvent)]
    # not an abort on the budget, no clear
    assert states == [("open", None), ("commit", None), ("close", None)], states
    assert not [ev for ev in events if isinstance(ev, Clear)]
    # one delta (the sentence) and the final text of the reply
    assert [(ev.text, ev.final) for ev in events if isinstance(ev, ReplyText)] == [
        ("Sure.", False), ("Sure.", True)]
    audio = [ev for ev in events if isinstance(ev, AudioOut)]
    commit = next(i for i, ev in enumerate(events)
                  if isinstance(ev, TurnEvent) and ev.state == "commit")
    assert not [ev for ev in events[commit:] if isinstance(ev, AudioOut)]  # all played first
    # the whole reply played: 0.15 s of tone ("Sure.", 30 ms a character), resampled
    played_s = sum(len(a.data) for a in audio) / 2 / RATE
    assert played_s >= 0.15, played_s


async def test_every_sentence_of_a_long_reply_is_spoken_while_the_tts_is_slow(
        serve_process: Callable[..., ServeProcess], tmp_path: Path,
        fake_openai_spec: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A sentence waiting behind a slow synthesis is spoken, however long it waits.

    Four sentences stream out of the LLM 0.7 s apart; every synthesis stalls 2.5 s, so
    the second sentence waits on the segmenter -> tts edge for seconds. simple/v1 used to
    shed it once it had queued 1000 ms (``max_queue_ms_exceeded``): the turn committed
    with a silently shortened reply. Text edges now age out only with their turn's budget.
    """
    sentences = ["One.", "Two.", "Three.", "Four."]
    llm = FakeOpenAI(reply=lambda _: " ".join(sentences), token_delay_s=0.7)
    tts = FakeOpenAI()
    tts.faults.sticky = Fault("stall", seconds=2.5)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    events, _ = await _served_turn(
        llm, tts, "count to four", name="slow-tts-long", serve_process=serve_process,
        tmp_path=tmp_path, fake_openai_spec=fake_openai_spec)
    states = [(ev.state, ev.reason) for ev in events if isinstance(ev, TurnEvent)]
    assert states == [("open", None), ("commit", None), ("close", None)], states
    # every sentence reached the TTS provider, in order, and its audio was played
    spoken = [r.body["input"] for r in tts.requests if isinstance(r.body, dict)]
    assert spoken == sentences, spoken
    played_s = sum(len(ev.data) for ev in events if isinstance(ev, AudioOut)) / 2 / RATE
    expected_s = sum(0.03 * len(s) for s in sentences)  # the fake's tone per character
    assert played_s >= expected_s - 0.01, (played_s, expected_s)
