"""Typed text over the live transport: ``rspp serve`` with a text-only and a text + TTS spec.

A spec whose only entry is ``input.text`` (a text chat, no ``input.audio`` edge) is served
over WebSocket: a ``text`` message opens a turn, the reply text comes back, the turn
commits and closes. With a TTS behind the LLM the reply audio comes back too. ``rspp talk
--text`` is the client; audio sent to a text-only session is refused once with an error
naming ``audio`` and the session goes on. The served timelines validate and replay with
no divergence.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, route_session
from rspp.testing import with_patient_budgets
from rspp.transports import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    ErrorEvent,
    ReplyText,
    TurnEvent,
    read_wav,
)

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess


pytestmark = pytest.mark.e2e

KEY = "serve-text-admin-key"


TEXT_VOICE = with_patient_budgets("""name: text-voice
version: 1.0.0
profile: simple/v1
providers:
  llm: {primary: local, config: {price: 2.0}}            # USD per 1000 tokens (estimates)
  tts: {primary: espeak, timeout_ms: 20000, config: {price: 0.5}}  # per 1000 characters
nodes:
  - {id: llm, type: llm}
  - {id: segmenter, type: sentence_segmenter}
  - {id: tts, type: tts}
edges:
  - {from: input.text, to: llm.text}
  - {from: llm.text, to: segmenter.text}
  - {from: segmenter.text, to: tts.text}
  - {from: tts.audio, to: output.audio}
""")


class _Server:
    def __init__(self, srv: ServeProcess, timelines: Path, specs: dict[str, Path]) -> None:
        self.srv, self.timelines, self.specs = srv, timelines, specs

    @property
    def url(self) -> str:
        return self.srv.url


@pytest.fixture(scope="module")
def server(module_serve_process: Callable[..., ServeProcess],
           tmp_path_factory: pytest.TempPathFactory, text_chat_spec: str) -> _Server:
    """``rspp serve`` of the text chat (embedded CP); the text + TTS spec published beside it;
    tenant ``acme`` records at L2 (what a replay needs)."""
    d = tmp_path_factory.mktemp("serve-text")
    specs = {"text-chat": d / "text_chat.yaml", "text-voice": d / "text_voice.yaml"}
    specs["text-chat"].write_text(text_chat_spec)
    specs["text-voice"].write_text(TEXT_VOICE)
    srv = module_serve_process(str(specs["text-chat"]), "--db",
                               f"sqlite+aiosqlite:///{d / 'cp.db'}", "--api-key", KEY,
                               "--timeline-dir", str(d / "timelines"),
                               "--record-level", "L2").wait_ready()
    auth = {"Authorization": f"Bearer {KEY}"}
    published = httpx.post(f"{srv.url}/v1/pipelines", headers=auth, timeout=30,
                           json={"spec": TEXT_VOICE, "filename": "text_voice.yaml"})
    assert published.status_code == 201, published.text
    srv.set_policy(KEY, "acme", {"recording_level": "L2"})
    return _Server(srv, d / "timelines", specs)


def _rspp(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    env["RSPP_API_KEY"] = KEY
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _talk(server: _Server, pipeline: str, *args: str) -> list[dict[str, Any]]:
    res = _rspp("talk", "--server", server.url, "--tenant", "acme", "--pipeline", pipeline,
                "--json", *args)
    assert res.returncode == 0, res.stdout + res.stderr
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def _states(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        if e["type"] == "turn":
            out.setdefault(e["turn_id"], []).append(e["state"])
    return out


def _timeline(server: _Server, events: list[dict[str, Any]]) -> Path:
    """The session's timeline, complete: its last record (``ended``) is written."""
    sid = events[0]["session_id"]
    return server.timelines / f"{sid}.jsonl"


def test_talk_types_to_a_text_only_pipeline_and_every_turn_commits(
    server: _Server, rspp_cli: RsppCli, timeline_ended: Callable[..., Any]
) -> None:
    events = _talk(server, "text-chat", "--text", "what is your name",
                   "--text", "what time is it")
    assert events[0]["type"] == "ready"
    states = _states(events)
    assert list(states.values()) == [["open", "commit", "close"]] * 2, states
    first, second = states
    reply = {t: [e for e in events if e["type"] == "reply_text" and e["turn_id"] == t]
             for t in states}
    for texts in reply.values():  # coalesced deltas (not one a token), then the final text
        deltas = [e["text"] for e in texts if not e.get("final")]
        assert texts[-1]["final"] and [e for e in texts if e.get("final")] == texts[-1:]
        assert "".join(deltas).strip() == texts[-1]["text"]
        assert len(deltas) < len(texts[-1]["text"].split()), deltas
    assert "name is" in reply[first][-1]["text"] and "It is" in reply[second][-1]["text"], reply
    assert not [e for e in events if e["type"] in ("error", "transcript")]
    timeline = _timeline(server, events)
    asyncio.run(timeline_ended(timeline, 30))
    records = [json.loads(x)["record"] for x in timeline.read_text().splitlines()]
    proposals = [r["reason"] for r in records if r.get("signal") == "turn_open_proposed"]
    assert proposals == ["text_input", "text_input"]
    rspp_cli.validates_and_replays(timeline, server.specs["text-chat"])


def test_talk_types_to_a_text_and_tts_pipeline_and_gets_reply_audio(
    server: _Server, tmp_path: Path, rspp_cli: RsppCli, timeline_ended: Callable[..., Any]
) -> None:
    reply = tmp_path / "reply.wav"
    events = _talk(server, "text-voice", "--text", "what is your name", "--output", str(reply))
    states = _states(events)
    assert list(states.values()) == [["open", "commit", "close"]], states
    assert "name is" in " ".join(e["text"] for e in events if e["type"] == "reply_text")
    pcm, rate = read_wav(reply)
    assert rate == 16000 and len(pcm) > 16000  # more than half a second of speech
    timeline = _timeline(server, events)
    asyncio.run(timeline_ended(timeline, 30))
    signals = [json.loads(x)["record"].get("signal") for x in timeline.read_text().splitlines()]
    assert "playback_started" in signals and "playback_completed" in signals
    rspp_cli.validates_and_replays(timeline, server.specs["text-voice"])


def test_audio_to_a_text_only_session_is_refused_once_and_text_still_works(
    server: _Server
) -> None:
    async def session() -> list[Any]:
        target = await route_session(server.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="text-chat")
        got: list[Any] = []
        async with await LiveClient.connect(target.url, token=target.token) as client:
            for _ in range(5):  # 100 ms of microphone audio: the pipeline takes none
                await client.send_audio(bytes(640))
            await client.send_text("what is your name")
            async for ev in client.events():
                got.append(ev)
                if isinstance(ev, TurnEvent) and ev.state == "close":
                    await client.end()
        return got

    got = asyncio.run(asyncio.wait_for(session(), 90))
    errors = [e for e in got if isinstance(e, ErrorEvent)]
    assert [(e.field, e.fatal) for e in errors] == [("audio", False)], errors
    assert "no audio input" in errors[0].message and "`text`" in errors[0].message
    assert [e.state for e in got if isinstance(e, TurnEvent)] == ["open", "commit", "close"]
    assert "name is" in "".join(e.text for e in got if isinstance(e, ReplyText))


def test_talk_needs_either_speech_or_text() -> None:
    both = _rspp("talk", "--server", "http://127.0.0.1:9", "--input", "q.wav", "--text", "hi")
    assert both.returncode == 2 and "pass --input WAV (speak) or --text TEXT" in both.stderr
    neither = _rspp("talk", "--server", "http://127.0.0.1:9")
    assert neither.returncode == 2 and "--input" in neither.stderr


def test_a_webrtc_peer_types_to_a_text_only_pipeline(server: _Server) -> None:
    """A browser-like peer: its microphone track keeps sending (the text chat refuses that
    audio once on the data channel, and the media loop lives on), and typed text on the
    data channel is a turn that commits."""
    pytest.importorskip("aiortc", reason="WebRTC needs the extra: pip install 'rspp[webrtc]'")
    from rspp.testing import WebRTCPeer

    async def run() -> WebRTCPeer:
        target = await route_session(server.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="text-chat")
        assert target.token is not None
        peer = WebRTCPeer()
        try:
            resp = await peer.connect(server.url, target.session_id, target.token)
            assert resp.status_code == 200, resp.text
            await peer.until(lambda: peer.of("error", field="audio"))  # the microphone runs
            peer.send({"type": "text", "text": "what is your name"})
            await peer.until(lambda: peer.of("turn", state="close"))
            return peer
        finally:
            await peer.close()

    peer = asyncio.run(run())
    assert [e["state"] for e in peer.of("turn")] == ["open", "commit", "close"]
    assert "name is" in "".join(e["text"] for e in peer.of("reply_text"))
    assert len(peer.of("error")) == 1 and not peer.of("error")[0]["fatal"]


def test_a_json_and_a_msgpack_session_share_the_endpoint_and_both_decode(
    server: _Server
) -> None:
    """F-030: per connection the client negotiates the encoding (WebSocket subprotocol):
    a debug session in JSON and a production one in MessagePack run at the same time over
    the same endpoint; each side decodes the other (the question opens a turn, the reply
    comes back) in the negotiated encoding."""
    async def session(msgpack: bool) -> tuple[str | None, list[Any]]:
        target = await route_session(server.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="text-chat")
        got: list[Any] = []
        async with await LiveClient.connect(target.url, token=target.token,
                                            msgpack=msgpack) as client:
            negotiated = client.ws.subprotocol
            await client.send_text("what is your name")
            async for ev in client.events():  # decoded as the negotiated encoding
                got.append(ev)
                if isinstance(ev, TurnEvent) and ev.state == "close":
                    await client.end()
        return negotiated, got

    async def both() -> list[tuple[str | None, list[Any]]]:
        return list(await asyncio.gather(session(False), session(True)))

    (json_proto, json_events), (mp_proto, mp_events) = asyncio.run(
        asyncio.wait_for(both(), 120))
    assert (json_proto, mp_proto) == (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)
    for events in (json_events, mp_events):
        assert [e.state for e in events if isinstance(e, TurnEvent)] == [
            "open", "commit", "close"]
        assert "name is" in "".join(e.text for e in events if isinstance(e, ReplyText))
        assert not [e for e in events if isinstance(e, ErrorEvent)]


def test_an_ended_session_has_a_tenant_scoped_usage_summary(server: _Server) -> None:
    """F-075: a two-turn served session reports its summary when it ends; the control plane
    serves it to its tenant (not another) and exports it with the tenant's audit log."""
    events = _talk(server, "text-voice", "--text", "what is your name", "--text", "hello")
    sid = events[0]["session_id"]
    assert len(_states(events)) == 2
    auth = {"Authorization": f"Bearer {KEY}"}

    async def reported() -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.url, headers=auth, timeout=30) as http:
            while True:  # the runtime reports it right after the session closed
                got = await http.get(f"/v1/sessions/{sid}/summary")
                if got.status_code != 404:
                    return got
                await asyncio.sleep(0.05)

    summary = asyncio.run(asyncio.wait_for(reported(), 60))
    assert summary.status_code == 200, summary.text
    doc = summary.json()
    assert (doc["session_id"], doc["tenant_id"], doc["turns"]) == (sid, "acme", 2)
    llm, tts = doc["by_provider"]["local"], doc["by_provider"]["espeak"]
    assert doc["llm_tokens"] == llm["llm_tokens"] > 0 and doc["stt_audio_seconds"] == 0.0
    assert doc["tts_characters"] == tts["tts_characters"] > 0
    # the spec's prices: 2.0 USD per 1000 LLM tokens, 0.5 per 1000 TTS characters
    assert llm["estimated_cost_usd"] == round(llm["llm_tokens"] * 2.0 / 1000, 6) > 0
    assert tts["estimated_cost_usd"] == round(tts["tts_characters"] * 0.5 / 1000, 6) > 0
    assert doc["estimated_cost_usd"] == round(llm["estimated_cost_usd"]
                                              + tts["estimated_cost_usd"], 6)
    other = httpx.post(f"{server.url}/v1/keys", headers=auth, timeout=30,
                       json={"role": "viewer", "tenant_id": "globex"}).json()["key"]
    refused = httpx.get(f"{server.url}/v1/sessions/{sid}/summary", timeout=30,
                        headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403
    exported = httpx.get(f"{server.url}/v1/audit", headers=auth, timeout=30,
                         params={"tenant_id": "acme"}).json()["entries"]
    assert [e["detail"] for e in exported
            if e["action"] == "session.summary" and e["subject"] == sid] == [doc]
