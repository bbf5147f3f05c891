"""Offline speech: espeak-ng TTS -> WAV -> pocketsphinx STT recognises key words; streaming
partials, sentence-by-sentence TTS before the full text exists (F-064), prompt cancel,
VADs, and ``rspp say`` (F-125 partial)."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rspp.cli import _audio
from rspp.contracts import ControlSignal, SignalName
from rspp.providers import (
    AudioChunk,
    CostCaps,
    CostMeter,
    InvocationContext,
    InvocationPolicy,
    Outcome,
    STTController,
)
from rspp.providers.offline import EnergyVAD, EspeakTTS, PocketsphinxSTT, WebRtcVAD

pytestmark = pytest.mark.integration


def _say_app() -> typer.Typer:
    app = typer.Typer()
    _audio.register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps `say` a named subcommand
        """Unused."""

    return app


def _read_wav(path: Path) -> tuple[int, bytes]:
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        return wav.getframerate(), wav.readframes(wav.getnframes())


async def _frames(pcm: bytes, rate: int, frame_ms: int = 20) -> AsyncIterator[AudioChunk]:
    step = rate * frame_ms // 1000 * 2
    for offset in range(0, len(pcm), step):
        yield AudioChunk(pcm[offset : offset + step], rate)


def test_rspp_say_writes_a_16k_mono_wav_and_rejects_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "q.wav"
    result = runner.invoke(_say_app(), ["say", "What is the weather today", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rate, pcm = _read_wav(out)
    assert rate == 16000 and len(pcm) / 32000 > 0.8
    bad_rate = runner.invoke(_say_app(), ["say", "hi", "-o", str(out), "--rate", "12345"])
    assert bad_rate.exit_code == 2 and "--rate 12345" in bad_rate.output
    bad_dir = runner.invoke(_say_app(), ["say", "hi", "-o", str(tmp_path / "no" / "x.wav")])
    assert bad_dir.exit_code == 2 and "does not exist" in bad_dir.output
    empty = runner.invoke(_say_app(), ["say", "  ", "-o", str(out)])
    assert empty.exit_code == 2 and "TEXT is empty" in empty.output


async def test_espeak_wav_is_recognised_by_pocketsphinx_with_partials(tmp_path: Path) -> None:
    out = tmp_path / "weather.wav"
    args = ["say", "What is the weather today", "-o", str(out)]
    result = await asyncio.to_thread(CliRunner().invoke, _say_app(), args)
    assert result.exit_code == 0, result.output
    rate, pcm = _read_wav(out)
    stt = PocketsphinxSTT()
    inv = stt.new_invocation()
    transcripts = [t async for t in stt.stream(_frames(pcm, rate), invocation=inv)]
    final = transcripts[-1]
    assert final.is_final and all(not t.is_final for t in transcripts[:-1])
    assert len(transcripts) >= 2  # at least one partial before the final
    assert {"what", "is", "weather"} <= set(final.text.split())
    assert inv.outcome is Outcome.SUCCESS and inv.metrics.bytes_in == len(pcm)
    assert inv.metrics.time_to_first_output_ms is not None


async def test_stt_controller_with_audio_cap_and_24k_input_resampled() -> None:
    tts = EspeakTTS(sample_rate=24000)
    pcm = b"".join([c.pcm async for c in tts.synthesize("What is the weather today")])
    ctl = STTController(
        {"pocketsphinx": PocketsphinxSTT()},
        InvocationPolicy(providers=("pocketsphinx",), timeout_ms=20_000),
        InvocationContext(session_id="s", pipeline_version="v", authority_epoch=1),
    )
    final = [t async for t in ctl.stream(_frames(pcm, 24000))][-1]
    assert {"what", "weather"} <= set(final.text.split())

    signals: list[ControlSignal] = []
    meter = CostMeter("s", CostCaps(stt_audio_seconds_per_turn=0.3))
    capped = STTController(
        {"pocketsphinx": PocketsphinxSTT()},
        InvocationPolicy(providers=("pocketsphinx",), timeout_ms=20_000),
        InvocationContext(session_id="s", pipeline_version="v", authority_epoch=1),
        sink=signals.append,
        meter=meter,
    )
    meter.begin_turn()
    short = [t async for t in capped.stream(_frames(pcm, 24000))][-1]
    assert "weather" not in short.text.split()  # audio past the cap never reached the STT
    assert capped.invocations[-1].metrics.bytes_in <= 24000 * 2 * 0.32
    assert [s.signal for s in signals] == [SignalName.BUDGET_EXHAUSTED]
    assert meter.summary().stt_audio_seconds == pytest.approx(0.3, abs=0.021)


async def test_tts_streams_sentence_by_sentence_before_text_is_complete() -> None:
    tts = EspeakTTS()
    more_text = asyncio.Event()
    audio_while_waiting = 0

    async def llm_text() -> AsyncIterator[str]:
        for token in ("Hello", " there.", " I am"):
            yield token
        await more_text.wait()
        yield " still talking."

    chunks: list[AudioChunk] = []
    async for chunk in tts.stream(llm_text()):
        chunks.append(chunk)
        if not more_text.is_set():
            audio_while_waiting += 1
            if audio_while_waiting == 3:
                more_text.set()
    assert audio_while_waiting >= 3  # first sentence audio before the rest of the text
    assert len(chunks) > audio_while_waiting
    assert all(c.sample_rate == 16000 and len(c.pcm) % 2 == 0 for c in chunks)


async def test_tts_cancel_stops_audio_promptly() -> None:
    tts = EspeakTTS()
    inv = tts.new_invocation()
    got = 0
    async for _chunk in tts.synthesize("One two three. " * 6, invocation=inv):
        got += 1
        if got == 2:
            inv.cancel_scope.cancel("barge_in")
    assert got == 2 and inv.outcome is Outcome.CANCELLED


async def test_vads_separate_speech_from_silence() -> None:
    tts = EspeakTTS()
    speech = b"".join([c.pcm async for c in tts.synthesize("Hello there")])
    frame = 640
    voiced = [speech[i : i + frame] for i in range(0, len(speech) - frame, frame)]
    silence = bytes(frame)
    for vad in (EnergyVAD(), WebRtcVAD(aggressiveness=2)):
        assert not vad.is_speech(silence)
        assert sum(vad.is_speech(f) for f in voiced) > len(voiced) // 3
    with pytest.raises(ValueError, match="10, 20 or 30 ms"):
        EnergyVAD().is_speech(bytes(100))


async def test_tts_character_cap_truncates_text_and_is_auditable() -> None:
    from rspp.providers import TTSController

    signals: list[ControlSignal] = []
    meter = CostMeter("s", CostCaps(tts_chars_per_turn=12))
    ctl = TTSController(
        {"espeak": EspeakTTS()},
        InvocationPolicy(providers=("espeak",)),
        InvocationContext(session_id="s", pipeline_version="v", authority_epoch=1),
        sink=signals.append,
        meter=meter,
    )

    async def text() -> AsyncIterator[str]:
        for piece in ("Hello there. ", "This part is over the cap."):
            yield piece

    meter.begin_turn()
    capped = b"".join([c.pcm async for c in ctl.stream(text())])
    full = b"".join([c.pcm async for c in EspeakTTS().stream(text())])
    assert 0 < len(capped) < len(full) // 2
    assert ctl.invocations[-1].metrics.bytes_in == 12
    assert [s.signal for s in signals] == [SignalName.BUDGET_EXHAUSTED]
    assert "tts_chars" in (signals[0].reason or "") and meter.summary().tts_characters == 12
