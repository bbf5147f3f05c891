"""Replay of a recorded offline-assistant session (issue Done-when; F-029, F-072, F-127, NF-009).

The session is the real offline voice assistant (``pipelines/examples/
voice_assistant.yaml``: energy VAD, pocketsphinx STT, local responder LLM,
sentence segmenter, espeak-ng TTS) on a live kernel session with the turn
driver, recorded by :class:`SessionRig` in real time from a WAV spoken by
``rspp say``. Playback replays run on virtual time with the recorded STT/LLM/TTS
outputs. ``rspp run`` does not record ingress events or provider outputs yet,
so the recording comes from the replay rig, not from the runner.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import msgspec
import pytest
import typer
from typer.testing import CliRunner

import rspp.nodes  # noqa: F401  (registers the built-in node types)
from rspp.cli._replay import register
from rspp.contracts import DivergenceClass, ReplayMode
from rspp.kernel import AudioFormat, Event, EventKind
from rspp.observability import JsonLinesFileSink, as_lines
from rspp.replay import ReplayOptions, RigOptions, load_recording, replay
from rspp.runner import node_session, record_session
from rspp.spec import GraphDefinition, compile_spec, load_spec

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
STRICT = ("ORDERING", "PLAN", "OUTCOME", "AUTHORITY")


def frames(wav: Path, chunk_ms: int = 20, tail_s: float = 1.5) -> list[tuple[int, Event]]:
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        pcm = w.readframes(w.getnframes()) + bytes(int(rate * tail_s) * 2)
    n = rate * chunk_ms // 1000
    fmt = AudioFormat(rate, 1)
    return [(i * chunk_ms, Event(EventKind.AUDIO_CHUNK, pcm[i * 2 * n:(i + 1) * 2 * n],
                                 audio_format=fmt, sample_index=i * n))
            for i in range(len(pcm) // (2 * n))]


def v2_spec(root: Path) -> Path:
    """Version 1.1.0: the transcript goes through a redaction node hiding 'weather'."""
    text = VOICE.read_text().replace("version: 1.0.0", "version: 1.1.0")
    text = text.replace("  - id: tts\n    type: tts\n", "  - id: tts\n    type: tts\n"
                        "  - id: redact\n    type: redaction\n"
                        "    params: {patterns: [], custom: {topic: weather}}\n")
    text = text.replace("  - {from: stt.final, to: output.transcript}",
                        "  - {from: stt.final, to: redact.text}\n"
                        "  - {from: redact.text, to: output.transcript}")
    path = root / "voice_assistant_v2.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("offline-replay")
    wav = root / "q.wav"
    res = subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", "say",
                          "what is the weather like today", "-o", str(wav)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    gd = compile_spec(load_spec(VOICE))

    async def go() -> None:
        # real time: the offline providers work in threads; budgets are reported, not
        # enforced (a file source on a busy machine must not fail its turn for slowness)
        lines = await record_session(gd, frames(wav), options=RigOptions(
            real_time=True, enforce_budgets=False))
        sink = JsonLinesFileSink(root / "session.jsonl")
        await sink.write(lines)
        await sink.close()

    asyncio.run(go())
    return root / "session.jsonl"


def texts(lines: list[Any], edge: str) -> list[str]:
    return [ln.payload["text"] for ln in as_lines(lines)
            if ln.record.get("edge_id") == edge and ln.payload and ln.payload.get("text")]


def voice() -> GraphDefinition:
    return compile_spec(load_spec(VOICE))


async def test_recorded_offline_session_is_complete(recorded: Path) -> None:
    rec = load_recording(recorded)
    signals = [ln.record.get("signal") for ln in rec.lines if ln.kind == "control_signal"]
    assert signals.count("commit") == 1 and "abort" not in signals
    assert {"stt", "llm", "tts"} <= set(rec.provider_lines)
    transcript = texts(rec.lines, "output.transcript")
    assert len(transcript) == 1 and "weather" in transcript[0]
    assert any(ln.payload and ln.payload.get("data") for ln in rec.provider_lines["tts"])


async def test_playback_five_times_zero_strict_divergence(recorded: Path) -> None:
    """Done-when: 5 playback replays -> zero ORDERING/PLAN/OUTCOME/AUTHORITY divergence."""
    baseline = load_recording(recorded)
    for _ in range(5):
        result = await replay(baseline, voice(), options=ReplayOptions(),
                              session_factory=node_session)
        counts = {c.name: n for c, n in result.report.counts.items()}
        assert all(counts[k] == 0 for k in STRICT), result.report.findings
        assert result.report.passed
        assert result.provider_outputs_served > 10  # transcript, LLM tokens, TTS audio
        assert texts(result.lines, "output.transcript") == texts(baseline.lines,
                                                                 "output.transcript")
        audio = [ln.payload["data"] for ln in as_lines(result.lines)
                 if ln.record.get("edge_id") == "output.audio" and ln.payload
                 and ln.payload.get("data")]
        recorded_audio = [ln.payload["data"] for ln in baseline.lines
                          if ln.record.get("edge_id") == "output.audio" and ln.payload
                          and ln.payload.get("data")]
        assert len(audio) == len(recorded_audio) > 0


async def test_real_time_resimulation_runs_the_real_providers(recorded: Path) -> None:
    """F-151 step 2: the real STT/LLM/TTS run again (real time) for the recorded input.

    Re-simulating thread-based providers in real time is not bit-exact (STT batching
    follows scheduling: partial and even final transcripts may vary - NF-009's transcript
    variance); the lifecycle, authority and plan inputs are the same and the turn commits.
    """
    baseline = load_recording(recorded)
    result = await replay(baseline, voice(), session_factory=node_session,
                          options=ReplayOptions(mode=ReplayMode.RE_SIMULATE_NODES,
                                                real_time=True))
    assert result.provider_outputs_served == 0
    counts = {c.name: n for c, n in result.report.counts.items()}
    assert counts["AUTHORITY"] == 0 and counts["PROVIDER_CHOICE"] == 0, result.report.findings
    plan = [f for f in result.report.findings if f.divergence_class is DivergenceClass.PLAN]
    assert all(f.message == "plan_hash differs (fields: determinism)" for f in plan), plan
    assert not [f for f in result.report.findings if f.message == "terminal outcome differs"]
    transcript = texts(result.lines, "output.transcript")
    assert len(transcript) == 1 and "weather" in transcript[0]
    assert texts(result.lines, "llm.text")  # the local LLM answered again
    assert any(ln.payload and ln.payload.get("data") for ln in as_lines(result.lines)
               if ln.record.get("edge_id") == "tts.audio")  # espeak spoke again


async def test_changed_spec_shows_plan_and_outcome(recorded: Path, tmp_path: Path) -> None:
    """Done-when / F-072: v1.1.0 with transcript redaction -> PLAN and OUTCOME divergences."""
    result = await replay(recorded, compile_spec(load_spec(v2_spec(tmp_path))),
                          session_factory=node_session,
                          options=ReplayOptions())
    plan = [f for f in result.report.findings if f.divergence_class is DivergenceClass.PLAN]
    outcome = [f for f in result.report.findings if f.divergence_class is DivergenceClass.OUTCOME]
    assert len(plan) == 1 and "pipeline_version" in plan[0].message
    assert any("[redacted topic]" in (f.actual or "") for f in outcome), outcome
    assert result.report.counts[DivergenceClass.ORDERING] == 0
    assert not result.report.passed


def test_cli_gate_on_offline_recording(recorded: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """F-127: the CI command passes on v1 and fails (exit 1) on the changed spec."""
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        pass

    runner = CliRunner()
    ok = runner.invoke(app, ["replay", str(recorded), "--spec", str(VOICE)])
    assert ok.exit_code == 0, ok.stdout + ok.stderr
    report = tmp_path / "report.json"
    bad = runner.invoke(app, ["replay", str(recorded), "--spec", str(v2_spec(tmp_path)),
                              "--report", str(report)])
    assert bad.exit_code == 1, bad.stdout + bad.stderr
    doc = json.loads(report.read_text())
    assert doc["divergences"]["PLAN"] == 1 and doc["divergences"]["OUTCOME"] >= 1
    assert msgspec.json.decode(report.read_bytes())["failing_classes"][:2] == ["PLAN", "OUTCOME"]
    # without --spec the recorded pipeline (voice-assistant@1.0.0) is found under ./pipelines
    monkeypatch.chdir(REPO)
    found = runner.invoke(app, ["replay", str(recorded)])
    assert found.exit_code == 0, found.stdout + found.stderr
    assert "PASS" in found.stdout
