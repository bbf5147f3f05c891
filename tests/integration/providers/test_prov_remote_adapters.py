"""Remote adapters against fake servers speaking the real wire protocols (F-055, F-063,
F-064, F-160): happy path, 401, 429 + Retry-After, 5xx, mid-stream disconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from rspp.providers import (
    AudioChunk,
    ChatMessage,
    LLMRequest,
    Outcome,
    ProviderCallError,
    Secret,
)
from rspp.providers.remote import (
    AnthropicLLM,
    DeepgramSTT,
    ElevenLabsTTS,
    OpenAIChatLLM,
    OpenAITTS,
)
from rspp.testing.fakes import Fault

pytestmark = pytest.mark.integration

REQUEST = LLMRequest(
    messages=(ChatMessage("system", "be brief"), ChatMessage("user", "what time is it")),
    max_tokens=64,
)


async def _audio(n: int = 40) -> AsyncIterator[AudioChunk]:
    for _ in range(n):
        yield AudioChunk(bytes(640), 16000)


async def _collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def _error(stream: AsyncIterator[Any]) -> ProviderCallError:
    with pytest.raises(ProviderCallError) as info:
        await _collect(stream)
    return info.value


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
async def test_llm_adapters_stream_and_normalise_errors(
    vendor: str, openai_fake: Any, anthropic_fake: Any, api_key_ref: str
) -> None:
    if vendor == "openai":
        fake, url = openai_fake
        llm: Any = OpenAIChatLLM(base_url=url, api_key=api_key_ref, model="gpt-test")
        overload_status = 503
    else:
        fake, url = anthropic_fake
        llm = AnthropicLLM(base_url=url, api_key=api_key_ref, model="claude-test")
        overload_status = 529
    try:
        deltas = await _collect(llm.stream(REQUEST))
        assert len(deltas) > 3
        assert "".join(deltas) == "You asked: what time is it. This is a scripted fake reply."
        body = fake.requests[-1].body
        assert body["stream"] is True and body["max_tokens"] == 64
        if vendor == "anthropic":
            assert body["system"] == "be brief"
            assert fake.requests[-1].headers["anthropic-version"] == "2023-06-01"

        fake.faults.push(Fault("status", status=429, retry_after=2))
        err = await _error(llm.stream(REQUEST))
        assert err.outcome is Outcome.RATE_LIMITED and err.retry_after_s == 2 and err.retryable

        fake.faults.push(Fault("status", status=overload_status))
        assert (await _error(llm.stream(REQUEST))).outcome is Outcome.OVERLOAD

        fake.faults.push(Fault("status", status=500))
        assert (await _error(llm.stream(REQUEST))).outcome is Outcome.INTERNAL

        fake.faults.push(Fault("disconnect", after_items=2))
        inv = llm.new_invocation()
        got: list[str] = []
        with pytest.raises(ProviderCallError) as info:
            async for delta in llm.stream(REQUEST, invocation=inv):
                got.append(delta)
        assert info.value.outcome is Outcome.DISCONNECTED and len(got) == 2
        assert inv.outcome is Outcome.DISCONNECTED

        fake.faults.push(Fault("truncate", after_items=1))
        assert (await _error(llm.stream(REQUEST))).outcome is Outcome.DISCONNECTED

        fake.faults.push(Fault("stream_error", after_items=1, error_type="overloaded_error"))
        assert (await _error(llm.stream(REQUEST))).outcome is Outcome.OVERLOAD
    finally:
        await llm.aclose()
    bad: Any = (
        OpenAIChatLLM(base_url=url, api_key=Secret("wrong-key-000"))
        if vendor == "openai"
        else AnthropicLLM(base_url=url, api_key=Secret("wrong-key-000"))
    )
    try:
        err = await _error(bad.stream(REQUEST))
        assert err.outcome is Outcome.AUTH_ERROR and not err.retryable and err.code == "401"
    finally:
        await bad.aclose()


async def test_llm_stall_times_out_on_the_invocation_timeout(
    openai_fake: Any, api_key_ref: str
) -> None:
    fake, url = openai_fake
    llm = OpenAIChatLLM(base_url=url, api_key=api_key_ref)
    fake.faults.push(Fault("stall", seconds=2.0))
    try:
        inv = llm.new_invocation()
        with pytest.raises(ProviderCallError) as info:
            await _collect(llm.stream(REQUEST, invocation=inv, timeout_ms=150))
        assert info.value.outcome is Outcome.TIMEOUT and inv.outcome is Outcome.TIMEOUT
    finally:
        await llm.aclose()


async def test_deepgram_streams_interims_then_final_and_normalises_errors(
    deepgram_fake: Any, api_key_ref: str
) -> None:
    fake, url = deepgram_fake
    stt = DeepgramSTT(base_url=url, api_key=api_key_ref, keepalive_s=0.05)
    transcripts = await _collect(stt.stream(_audio()))
    assert [t.is_final for t in transcripts][-1] is True
    assert transcripts[-1].text == "what is the weather today" and transcripts[-1].speech_final
    interims = [t for t in transcripts if not t.is_final]
    assert len(interims) >= 3 and interims[0].text == "what"
    assert fake.requests[-1].headers["Authorization"].startswith("Token ")
    assert "encoding=linear16" in fake.requests[-1].path
    assert fake.audio_bytes == 40 * 640

    async def slow_audio() -> AsyncIterator[AudioChunk]:
        import asyncio

        yield AudioChunk(bytes(640), 16000)
        await asyncio.sleep(0.2)
        yield AudioChunk(bytes(640), 16000)

    await _collect(stt.stream(slow_audio()))
    assert fake.keepalives >= 1

    fake.faults.push(Fault("status", status=429, retry_after=1.5))
    err = await _error(stt.stream(_audio()))
    assert err.outcome is Outcome.RATE_LIMITED and err.retry_after_s == 1.5
    fake.faults.push(Fault("status", status=503))
    assert (await _error(stt.stream(_audio()))).outcome is Outcome.OVERLOAD
    fake.faults.push(Fault("disconnect", after_items=2))
    assert (await _error(stt.stream(_audio()))).outcome is Outcome.DISCONNECTED
    fake.faults.push(Fault("close", after_items=1, code=1011, reason="NET-0001"))
    err = await _error(stt.stream(_audio()))
    assert err.outcome is Outcome.DISCONNECTED and err.code == "ws_close_1011"
    bad = DeepgramSTT(base_url=url, api_key=Secret("wrong-key-000"))
    assert (await _error(bad.stream(_audio()))).outcome is Outcome.AUTH_ERROR


async def test_elevenlabs_streams_audio_before_text_ends_and_normalises_errors(
    elevenlabs_fake: Any, api_key_ref: str
) -> None:
    import asyncio

    fake, url = elevenlabs_fake
    tts = ElevenLabsTTS(base_url=url, api_key=api_key_ref, sample_rate=16000)
    text_done = asyncio.Event()
    audio_before_text_end = 0

    async def llm_text() -> AsyncIterator[str]:
        yield "Hello there. "
        await asyncio.sleep(0.3)
        yield "How are "
        yield "you today?"
        text_done.set()

    chunks = []
    async for chunk in tts.stream(llm_text()):
        if not text_done.is_set():
            audio_before_text_end += 1
        chunks.append(chunk)
    assert audio_before_text_end >= 1  # F-064: playback can start before the full text
    assert len(chunks) >= 2 and all(c.sample_rate == 16000 for c in chunks)
    assert fake.texts == ["Hello there. ", "How are ", "you today?"]
    assert fake.requests[-1].headers["xi-api-key"]
    assert "output_format=pcm_16000" in fake.requests[-1].path

    fake.faults.push(Fault("status", status=429, retry_after=3))
    err = await _error(tts.synthesize("Hi."))
    assert err.outcome is Outcome.RATE_LIMITED and err.retry_after_s == 3
    fake.faults.push(Fault("stream_error", after_items=0, error_type="quota_exceeded"))
    assert (await _error(tts.synthesize("Hi."))).outcome is Outcome.RATE_LIMITED

    async def pieces() -> AsyncIterator[str]:
        for piece in ("One. ", "Two. ", "Three."):
            yield piece

    fake.faults.push(Fault("disconnect", after_items=1))
    got: list[AudioChunk] = []
    with pytest.raises(ProviderCallError) as info:
        async for chunk in tts.stream(pieces()):
            got.append(chunk)
    assert info.value.outcome is Outcome.DISCONNECTED and len(got) == 1  # mid-stream
    fake.faults.push(Fault("status", status=500))
    assert (await _error(tts.synthesize("Hi."))).outcome is Outcome.INTERNAL
    bad = ElevenLabsTTS(base_url=url, api_key=Secret("wrong-key-000"))
    assert (await _error(bad.synthesize("Hi."))).outcome is Outcome.AUTH_ERROR


async def test_openai_tts_streams_pcm_per_sentence(openai_fake: Any, api_key_ref: str) -> None:
    fake, url = openai_fake
    tts = OpenAITTS(base_url=url, api_key=api_key_ref)
    try:
        chunks = await _collect(tts.synthesize("First sentence. Second one!"))
        assert sum(len(c.pcm) for c in chunks) > 0 and all(len(c.pcm) % 2 == 0 for c in chunks)
        inputs = [r.body["input"] for r in fake.requests if r.path.endswith("/audio/speech")]
        assert inputs == ["First sentence.", "Second one!"]
        fake.faults.push(Fault("status", status=429, retry_after=1))
        assert (await _error(tts.synthesize("Hi."))).outcome is Outcome.RATE_LIMITED
        fake.faults.push(Fault("disconnect", after_items=1))
        assert (await _error(tts.synthesize("A long sentence here."))).outcome is (
            Outcome.DISCONNECTED
        )
    finally:
        await tts.aclose()
