"""Built-in speech nodes with real engines through the local runner.

F-064 (TTS before the full text), F-135 (spoken apology on failure), F-137
(text-only degrade), F-042 (explicit end of utterance), F-017 (endpointing /
VAD swapped by policy, downstream unchanged). Provider outages are real:
adapters pointed at a loopback port nobody listens on (connection refused).
"""

from __future__ import annotations

import asyncio
import json
import socket
import wave
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from rspp.kernel import Event, GraphBuilder, SessionActor
from rspp.nodes import NodeServices
from rspp.providers.offline import EspeakTTS, LocalResponderLLM
from rspp.runner import RunOptions, RunResult, run_local

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def synth(text: str) -> bytes:
    tts = EspeakTTS(sample_rate=16000)
    return b"".join([c.pcm async for c in tts.synthesize(text)])


def write(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)
    return path


def silence(ms: int) -> bytes:
    return b"\x00\x00" * (16 * ms)


@pytest.fixture(scope="module")
def phrases() -> dict[str, bytes]:
    async def make() -> dict[str, bytes]:
        return {"weather": await synth("what is the weather like today"),
                "name": await synth("what is your name")}
    return asyncio.run(make())


def spec_variant(tmp: Path, edit: Any) -> Path:
    data = json.loads(json.dumps(YAML(typ="safe").load(VOICE.read_text())))
    edit(data)
    path = tmp / "spec.json"
    path.write_text(json.dumps(data))
    return path


def timeline(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


async def run(
    spec: Path, wav: Path, tmp: Path, **kw: Any
) -> tuple[RunResult, list[dict[str, Any]]]:
    tl = tmp / "timeline.jsonl"
    result = await run_local(RunOptions(spec=spec, input=wav, timeline=tl, **kw))
    return result, timeline(tl)


def signals(lines: list[dict[str, Any]]) -> list[str]:
    return [ln["record"]["signal"] for ln in lines if ln["kind"] == "control_signal"]


async def test_tts_audio_starts_before_the_llm_finished_the_text() -> None:
    """F-064: the first sentence is audible while later tokens are still being generated."""
    g = (GraphBuilder("f064").node("llm", "llm").node("seg", "sentence_segmenter",
                                                     params={"min_chars": 1})
         .node("tts", "tts").edge("input.text", "llm.text").edge("llm.text", "seg.text")
         .edge("seg.text", "tts.text").edge("tts.audio", "output.audio").build())
    sid = "f064"
    services = NodeServices(
        providers={"local": LocalResponderLLM("local", token_delay_ms=120),
                   "espeak": EspeakTTS("espeak")},
        chains={"llm": ("local",), "tts": ("espeak",)}, session_id=sid)
    seen: list[tuple[str, bool]] = []
    done = asyncio.Event()
    session: SessionActor | None = None

    def sink(port: str, ev: Event) -> None:
        if session is None or ev.kind not in ("audio_chunk", "audio_end"):
            return
        llm_finished = bool(session.hosts["llm"].node.replies)  # type: ignore[attr-defined]
        seen.append((ev.kind, llm_finished))
        if ev.kind == "audio_end":
            done.set()

    import rspp.nodes  # noqa: F401

    session = SessionActor(g, session_id=sid, output_sink=sink, services=services)
    async with session:
        session.push(Event("text", "hello", turn_id="t1"), "text")
        await asyncio.wait_for(done.wait(), 30)
    chunks = [f for k, f in seen if k == "audio_chunk"]
    assert chunks and chunks[0] is False, "first audio must precede the end of the LLM reply"
    assert chunks[-1] is True  # the second sentence was synthesised after the reply ended
    assert seen[-1] == ("audio_end", True)


async def test_tts_outage_degrades_to_text_only(phrases: dict[str, bytes], tmp_path: Path) -> None:
    """F-137: TTS provider down -> text replies, ``degrade`` control signal, session goes on."""
    port = free_port()

    def edit(d: dict[str, Any]) -> None:
        d["providers"]["tts"] = {"primary": "down-tts", "config": {
            "adapter": "openai-tts", "base_url": f"http://127.0.0.1:{port}/v1"}}

    wav = write(tmp_path / "in.wav", phrases["weather"] + silence(300))
    result, lines = await run(spec_variant(tmp_path, edit), wav, tmp_path)
    turn = result.turns[0]
    assert turn.terminal == "commit" and turn.degraded
    assert "weather" in turn.reply
    assert result.output_seconds == 0.0
    sigs = signals(lines)
    assert "degrade" in sigs and "provider_error" in sigs
    assert sigs.index("degrade") < sigs.index("commit")


async def test_llm_failure_speaks_a_polite_apology_and_the_next_turn_works(
    phrases: dict[str, bytes], tmp_path: Path
) -> None:
    """F-135: error during generation -> apology through TTS; the next turn is served."""
    port = free_port()

    def edit(d: dict[str, Any]) -> None:
        d["providers"]["llm"] = {"primary": "down-llm", "config": {
            "adapter": "openai", "base_url": f"http://127.0.0.1:{port}/v1"}}
        for n in d["nodes"]:
            if n["id"] == "llm":
                n["fallback"] = {"node": "apology", "on": ["error", "timeout"]}
        d["nodes"].append({"id": "apology", "type": "error_speech",
                           "params": {"text": "Sorry, I could not answer that. Please try again."}})
        d["edges"].append({"from": "apology.audio", "to": "output.audio"})

    pcm = phrases["weather"] + silence(4000) + phrases["name"] + silence(300)
    result, lines = await run(spec_variant(tmp_path, edit), write(tmp_path / "in.wav", pcm),
                              tmp_path)
    assert len(result.turns) == 2
    for turn in result.turns:
        assert turn.terminal == "commit"
        assert turn.reply.startswith("Sorry, I could not answer that")
        assert turn.played_s > 1.0
    assert "fallback" in signals(lines)


async def test_explicit_end_of_utterance_bypasses_vad_silence(
    phrases: dict[str, bytes], tmp_path: Path
) -> None:
    """F-042: with endpointing too slow to fire, push-to-talk release still ends the turn."""
    def edit(d: dict[str, Any]) -> None:
        d["nodes"][0]["params"] = {"engine": "energy", "silence_ms": 5000}

    spec = spec_variant(tmp_path, edit)
    wav = write(tmp_path / "in.wav", phrases["weather"])
    no_eou, _ = await run(spec, wav, tmp_path)
    assert no_eou.turns == []
    release = len(phrases["weather"]) / 32000 + 0.1
    result, lines = await run(spec, wav, tmp_path, end_of_utterance_at_s=(release,))
    assert len(result.turns) == 1
    turn = result.turns[0]
    assert turn.terminal == "commit" and "weather" in turn.transcript
    proposals = [ln["record"] for ln in lines if ln["kind"] == "control_signal"
                 and ln["record"]["signal"] == "turn_open_proposed"]
    assert proposals[0]["reason"] == "explicit_end_of_utterance"


async def test_endpointing_policy_switch_changes_turn_boundaries(
    phrases: dict[str, bytes], tmp_path: Path
) -> None:
    """F-017: same downstream nodes; the VAD engine/endpointing policy decides the turns."""
    pcm = phrases["weather"] + silence(450) + phrases["name"] + silence(300)
    wav = write(tmp_path / "in.wav", pcm)

    def quick(d: dict[str, Any]) -> None:
        d["nodes"][0]["params"] = {"engine": "energy", "silence_ms": 300}

    def patient(d: dict[str, Any]) -> None:
        d["nodes"][0]["params"] = {"engine": "webrtc", "endpointing": "hangover",
                                   "silence_ms": 700, "max_silence_ms": 1000}

    short, _ = await run(spec_variant(tmp_path, quick), wav, tmp_path)
    long, _ = await run(spec_variant(tmp_path, patient), wav, tmp_path)
    assert len(short.turns) == 2
    assert "your" in short.turns[1].transcript
    assert len(long.turns) == 1
    assert "weather" in long.turns[0].transcript and "your" in long.turns[0].transcript
