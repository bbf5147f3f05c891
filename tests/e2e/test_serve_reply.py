"""A reply on two outputs, its text deltas, and the commit point of a cancel, in ``rspp serve``.

The spec sends the LLM's reply to ``output.text`` and speaks it through a TTS to
``output.audio`` (OpenAI-compatible fakes; the TTS answers each sentence a second late,
so the next sentence waits for it), with ``transport.commit_ms: 400``. Served by a real
``rspp serve`` (embedded control plane) to a :class:`~rspp.client.LiveClient`:

* turn 1 plays out: the text's end of stream comes long before the audio, yet the turn
  commits only after the last audio frame and the final reply text (the reply ends when
  every output carrying it ended; the first end used to commit the turn before any
  audio, which was then dropped); the reply text arrives as coalesced deltas (fewer than
  the LLM's tokens, concatenated they are the reply) and one ``final`` with all of it,
  sent once although two outputs carry the reply;
* turn 2 is interrupted while it plays: exactly 400 ms (20 frames) of its audio after the
  play position still arrive after the abort, no ``clear`` is sent, and the timeline's
  ``playback_cancelled`` says what was committed (F-039).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.client import LiveClient, route_session
from rspp.testing.fakes import FakeOpenAI
from rspp.testing.fakes._faults import Fault
from rspp.testing.fakes._server import serve_asgi
from rspp.transports import AudioOut, Clear, ReplyText, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

KEY = "serve-reply-e2e-admin-key"
RATE = 16000
COMMIT_MS = 400
REPLY = "Here is a fairly long answer to your question. It has two sentences to speak."

SPEC = """name: two-outputs
version: 1.0.0
profile: simple/v1
budgets: {{turn_ms: 60000, node_ms: 20000, path_ms: 30000, edge_ms: 20000,
          provider_timeout_ms: 20000}}
providers:
  llm:
    primary: openai
    timeout_ms: 20000
    config: {{api_key: env://OPENAI_API_KEY, model: fake, base_url: "{llm}/v1"}}
  tts:
    primary: openai-tts
    timeout_ms: 20000
    config: {{api_key: env://OPENAI_API_KEY, model: fake, voice: alloy, base_url: "{tts}/v1"}}
nodes:
  - {{id: llm, type: llm}}
  - {{id: segmenter, type: sentence_segmenter}}
  - {{id: tts, type: tts}}
edges:
  - {{from: input.text, to: llm.text}}
  - {{from: llm.text, to: output.text}}
  - {{from: llm.text, to: segmenter.text}}
  - {{from: segmenter.text, to: tts.text, buffer: {{max_queue_ms: 20000}}}}
  - {{from: tts.audio, to: output.audio}}
transport:
  commit_ms: {commit_ms}
"""


async def _until_close(client: LiveClient, events: list[Any], *,
                       interrupt_after_frames: int | None = None, end: bool = False) -> None:
    """Collect one turn's events up to its ``close`` (optionally interrupt it once
    ``interrupt_after_frames`` of its audio frames arrived; ``end``: then end the session
    and collect up to the session's end)."""
    frames = 0
    async for ev in client.events():
        if isinstance(ev, AudioOut | ReplyText | TurnEvent | Clear):
            events.append(ev)
        if isinstance(ev, AudioOut):
            frames += 1
            if frames == interrupt_after_frames:
                await client.interrupt()
        if isinstance(ev, TurnEvent) and ev.state == "close":
            if not end:
                return
            await client.end()  # the session ends once the committed audio played


async def test_a_two_output_reply_commits_after_its_audio_and_a_cancel_keeps_the_commit_point(
        serve_process: Callable[..., ServeProcess], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    llm, tts = FakeOpenAI(reply=lambda _: REPLY), FakeOpenAI()
    tts.faults.sticky = Fault("stall", seconds=1.0)  # every sentence's audio comes 1 s late
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    async with serve_asgi(llm.app) as llm_url, serve_asgi(tts.app) as tts_url:
        spec = tmp_path / "two-outputs.yaml"
        spec.write_text(SPEC.format(llm=llm_url, tts=tts_url, commit_ms=COMMIT_MS))
        timelines = tmp_path / "timelines"
        srv = await asyncio.to_thread(lambda: serve_process(
            str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}", "--api-key", KEY,
            "--timeline-dir", str(timelines)).wait_ready())
        target = await route_session(srv.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="two-outputs")
        played: list[Any] = []
        cut: list[Any] = []
        async with await LiveClient.connect(target.url, token=target.token,
                                            sample_rate=RATE) as client:
            await client.send_text("tell me something")
            await _until_close(client, played)
            await client.send_text("and again")
            await _until_close(client, cut, interrupt_after_frames=10, end=True)
        code, _, err = await asyncio.to_thread(srv.terminate)
    assert code == 0, err

    # turn 1: commit after the last audio frame and after the final reply text
    states = [(e.state, e.reason) for e in played if isinstance(e, TurnEvent)]
    assert states == [("open", None), ("commit", None), ("close", None)], states
    commit = next(i for i, e in enumerate(played) if isinstance(e, TurnEvent)
                  and e.state == "commit")
    audio = [i for i, e in enumerate(played) if isinstance(e, AudioOut)]
    texts = [(i, e) for i, e in enumerate(played) if isinstance(e, ReplyText)]
    assert audio and max(audio) < commit
    assert texts and max(i for i, _ in texts) < commit
    # the whole reply was heard: 30 ms of tone a character, both sentences
    played_s = sum(len(played[i].data) for i in audio) / 2 / RATE
    assert played_s >= 0.03 * (len(REPLY) - 1), played_s
    # the text: coalesced deltas, then one final with the whole reply (not sent twice)
    deltas = [e.text for _, e in texts if not e.final]
    finals = [e.text for _, e in texts if e.final]
    assert finals == [REPLY] and texts[-1][1].final
    assert "".join(deltas) == REPLY
    assert 1 < len(deltas) < len(REPLY.split(" ")), deltas  # fewer than the LLM's tokens

    # turn 2: interrupted while it played; the commit point's audio arrives after the abort
    states = [(e.state, e.reason) for e in cut if isinstance(e, TurnEvent)]
    assert states == [("open", None), ("abort", "cancelled"), ("close", None)], states
    tid = cut[0].turn_id
    abort = next(i for i, e in enumerate(cut) if isinstance(e, TurnEvent) and e.state == "abort")
    after = [e for e in cut[abort:] if isinstance(e, AudioOut)]
    assert len(after) == COMMIT_MS // 20
    assert all(len(e.data) == 2 * RATE // 50 for e in after)  # whole 20 ms frames
    assert not [e for e in cut if isinstance(e, Clear)]  # nothing the client holds is dropped
    records = [json.loads(x)["record"] for x in
               (timelines / f"{target.session_id}.jsonl").read_text().splitlines()]
    [reason] = [r["reason"] for r in records if r.get("signal") == "playback_cancelled"
                and r["turn_id"] == tid]
    assert reason.endswith(f",committed_frames:{COMMIT_MS // 20}"), reason
    assert not [r for r in records if r.get("signal") == "playback_completed"
                and r["turn_id"] == tid]
