"""The conformance suite every STT/LLM/TTS adapter must pass (F-055, F-063, F-064, F-065,
F-160): declares capabilities, streams, cancels promptly, normalises errors, reports metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rspp.providers import (
    AudioChunk,
    ChatMessage,
    LLMProvider,
    LLMRequest,
    Outcome,
    ProviderCallError,
    ProviderKind,
    STTProvider,
    TTSProvider,
)
from rspp.providers.offline import EspeakTTS

pytestmark = pytest.mark.conformance

# every adapter of each kind (the conftest factory knows how to build and break each one)
LLM_ADAPTERS = ["local-responder", "openai", "anthropic", "openai-completions",
                "openai-completions-batched"]
STT_ADAPTERS = ["pocketsphinx", "deepgram"]
TTS_ADAPTERS = ["espeak", "elevenlabs", "openai-tts"]

REQUEST = LLMRequest(messages=(ChatMessage("user", "tell me something about the sea"),))
LABELS = {"provider", "kind", "outcome"}
_SPEECH: dict[str, bytes] = {}


async def _speech() -> bytes:
    if "pcm" not in _SPEECH:
        tts = EspeakTTS()
        _SPEECH["pcm"] = b"".join(
            [c.pcm async for c in tts.synthesize("What is the weather today")]
        )
    return _SPEECH["pcm"]


async def _frames(pcm: bytes, *, channels: int = 1) -> AsyncIterator[AudioChunk]:
    for offset in range(0, len(pcm), 640):
        yield AudioChunk(pcm[offset : offset + 640], 16000, channels)


async def _text(*pieces: str, forever: bool = False) -> AsyncIterator[str]:
    for piece in pieces:
        yield piece
    if forever:
        await asyncio.Event().wait()


def _check_metrics(adapter: Any, outcome: Outcome) -> None:
    inv = adapter.recorder.invocations[-1]
    assert inv.outcome is outcome and set(inv.labels()) == LABELS
    m = inv.metrics
    assert m.latency_ms is not None and m.latency_ms >= 0
    if outcome is Outcome.SUCCESS:
        assert m.time_to_first_output_ms is not None and m.bytes_in > 0 and m.bytes_out > 0
        assert m.items_out >= 1


@pytest.mark.parametrize("name", LLM_ADAPTERS)
async def test_llm_adapter_conformance(name: str, adapter_factory: Callable[[str], Any]) -> None:
    async with adapter_factory(name) as adapter:
        llm = adapter.provider
        assert isinstance(llm, LLMProvider) and llm.capabilities.kind is ProviderKind.LLM
        assert llm.capabilities.streaming
        deltas = [d async for d in llm.stream(REQUEST)]
        assert len(deltas) >= 3 and "".join(deltas).strip()
        _check_metrics(adapter, Outcome.SUCCESS)

        inv = llm.new_invocation()
        got = []
        async for delta in llm.stream(REQUEST, invocation=inv):
            got.append(delta)
            inv.cancel_scope.cancel("barge_in")
        assert len(got) == 1 and inv.outcome is Outcome.CANCELLED
        _check_metrics(adapter, Outcome.CANCELLED)

        failing, outcome, extra = await adapter.make_fail()
        with pytest.raises(ProviderCallError) as info:
            _ = [d async for d in failing.stream(REQUEST, timeout_ms=extra.get("timeout_ms"))]
        assert info.value.outcome is outcome and info.value.retryable is outcome.retryable
        if "retry_after_s" in extra:
            assert info.value.retry_after_s == extra["retry_after_s"]
        _check_metrics(adapter, outcome)


@pytest.mark.parametrize("name", STT_ADAPTERS)
async def test_stt_adapter_conformance(name: str, adapter_factory: Callable[[str], Any]) -> None:
    pcm = await _speech()
    async with adapter_factory(name) as adapter:
        stt = adapter.provider
        assert isinstance(stt, STTProvider) and stt.capabilities.kind is ProviderKind.STT
        assert 16000 in stt.capabilities.sample_rates and stt.capabilities.interim_results
        transcripts = [t async for t in stt.stream(_frames(pcm))]
        assert transcripts[-1].is_final and transcripts[-1].text
        assert any(not t.is_final for t in transcripts)  # streaming partials
        _check_metrics(adapter, Outcome.SUCCESS)

        inv = stt.new_invocation()
        got = []
        async for transcript in stt.stream(_frames(pcm), invocation=inv):
            got.append(transcript)
            inv.cancel_scope.cancel("barge_in")
        assert len(got) == 1 and not got[0].is_final and inv.outcome is Outcome.CANCELLED

        failing, outcome, extra = await adapter.make_fail()
        channels = 2 if extra.get("stereo") else 1
        with pytest.raises(ProviderCallError) as info:
            _ = [t async for t in failing.stream(_frames(pcm, channels=channels))]
        assert info.value.outcome is outcome
        if "retry_after_s" in extra:
            assert info.value.retry_after_s == extra["retry_after_s"]
        _check_metrics(adapter, outcome)


@pytest.mark.parametrize("name", TTS_ADAPTERS)
async def test_tts_adapter_conformance(name: str, adapter_factory: Callable[[str], Any]) -> None:
    async with adapter_factory(name) as adapter:
        tts = adapter.provider
        assert isinstance(tts, TTSProvider) and tts.capabilities.kind is ProviderKind.TTS
        assert tts.capabilities.incremental_input  # F-064
        chunks = [c async for c in tts.stream(_text("Hello there. ", "How are you?"))]
        assert chunks and all(c.sample_rate in tts.capabilities.sample_rates for c in chunks)
        assert all(len(c.pcm) % 2 == 0 for c in chunks)
        _check_metrics(adapter, Outcome.SUCCESS)

        # audio for the first sentence arrives while the text stream is still open,
        # and an explicit cancel ends the stream promptly even though input never ends
        inv = tts.new_invocation()
        got = []

        async def consume() -> None:
            async for chunk in tts.stream(_text("Hello there. ", forever=True), invocation=inv):
                got.append(chunk)
                inv.cancel_scope.cancel("barge_in")

        await asyncio.wait_for(consume(), timeout=30)
        assert len(got) == 1 and inv.outcome is Outcome.CANCELLED

        failing, outcome, extra = await adapter.make_fail()
        with pytest.raises(ProviderCallError) as info:
            _ = [c async for c in failing.synthesize("Hi there.")]
        assert info.value.outcome is outcome
        if "retry_after_s" in extra:
            assert info.value.retry_after_s == extra["retry_after_s"]
        _check_metrics(adapter, outcome)
