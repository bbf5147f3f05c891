"""The provider conformance suite: one STT, LLM or TTS adapter as the runtime builds it.

The adapter is created by the provider registry from ``type`` and options, exactly as a
spec's ``providers`` section creates it (base URLs and API keys from the environment:
``OPENAI_BASE_URL``, ``DEEPGRAM_API_KEY``...), so a third party's OpenAI-compatible
server is checked by pointing the base URL at it. The checks: declared capabilities,
incremental streaming, a prompt cancel, a spent deadline normalised to the ``timeout``
outcome (checked before the next output is awaited: deterministic), and
per-invocation metrics with the standard labels.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from rspp.conformance._suite import (
    QUESTION,
    Check,
    Violation,
    run_checks,
    spoken,
)
from rspp.providers import (
    AudioChunk,
    ChatMessage,
    LLMProvider,
    LLMRequest,
    Outcome,
    Provider,
    ProviderCallError,
    ProviderKind,
    ProviderMetricsRecorder,
    STTProvider,
    TTSProvider,
    create_provider,
)

if TYPE_CHECKING:
    from rspp.conformance._profile import Profile
    from rspp.conformance._report import SuiteResults

__all__ = ["check_provider"]

REQUEST = LLMRequest(messages=(ChatMessage("user", "tell me something about the sea"),))
RATE = 16000
LABELS = {"provider", "kind", "outcome"}
CALL_S = 60.0


async def _frames(pcm: bytes) -> AsyncIterator[AudioChunk]:
    for offset in range(0, len(pcm), 640):
        yield AudioChunk(pcm[offset:offset + 640], RATE, 1)


async def _text(*pieces: str, forever: bool = False) -> AsyncIterator[str]:
    for piece in pieces:
        yield piece
    if forever:
        await asyncio.Event().wait()


class _ProviderDriver:
    def __init__(self, kind: ProviderKind, provider: Provider,
                 recorder: ProviderMetricsRecorder) -> None:
        self.kind, self.p, self.rec = kind, provider, recorder
        self.pcm = b""

    async def _speech(self) -> bytes:
        if not self.pcm:
            self.pcm = await spoken(QUESTION, RATE)
        return self.pcm

    def _stream(self, invocation: Any = None, timeout_ms: int | None = None,
                forever: bool = False) -> AsyncIterator[Any]:
        p = self.p
        if isinstance(p, LLMProvider):
            return p.stream(REQUEST, invocation=invocation, timeout_ms=timeout_ms)
        if isinstance(p, STTProvider):
            return p.stream(_frames(self.pcm), invocation=invocation, timeout_ms=timeout_ms)
        if isinstance(p, TTSProvider):
            return p.stream(_text("Hello there. ", "How are you?", forever=forever),
                            invocation=invocation, timeout_ms=timeout_ms)
        raise Violation(f"{type(p).__name__} is no STT, LLM or TTS provider")

    async def capabilities(self) -> str:
        caps = self.p.capabilities
        want = {ProviderKind.LLM: LLMProvider, ProviderKind.STT: STTProvider,
                ProviderKind.TTS: TTSProvider}[self.kind]
        if not isinstance(self.p, want) or caps.kind is not self.kind:
            raise Violation(f"declares kind {caps.kind}, is a {type(self.p).__name__}")
        if not caps.streaming:
            raise Violation("capabilities.streaming is false")
        if self.kind is ProviderKind.STT and RATE not in caps.sample_rates:
            raise Violation(f"capabilities.sample_rates {caps.sample_rates} lack {RATE}")
        if self.kind is ProviderKind.TTS and not caps.incremental_input:
            raise Violation("capabilities.incremental_input is false (text must stream in)")
        return f"{caps.kind.value}, streaming, rates {list(caps.sample_rates)}"

    async def streaming(self) -> str:
        await self._speech()
        items = [x async for x in self._stream()]
        if self.kind is ProviderKind.LLM:
            if len(items) < 2 or not "".join(items).strip():
                raise Violation(f"{len(items)} delta(s): a reply must stream in pieces")
            return f"{len(items)} deltas"
        if self.kind is ProviderKind.STT:
            if not items or not items[-1].is_final or not items[-1].text:
                raise Violation("no final transcript at the end of the stream")
            if all(t.is_final for t in items):
                raise Violation("no interim transcript before the final one")
            return f"{len(items)} transcripts, final {items[-1].text!r}"
        rates = self.p.capabilities.sample_rates
        if not items or any(c.sample_rate not in rates or len(c.pcm) % 2 for c in items):
            raise Violation(f"{len(items)} chunk(s), each PCM16 at a declared rate expected")
        return f"{len(items)} audio chunks"

    async def cancel(self) -> str:
        await self._speech()
        inv = self.p.new_invocation()
        got = []
        async with asyncio.timeout(CALL_S):
            async for item in self._stream(invocation=inv, forever=True):
                got.append(item)
                inv.cancel_scope.cancel("barge_in")
        if inv.outcome is not Outcome.CANCELLED or len(got) != 1:
            raise Violation(f"after a cancel at the first output: {len(got)} outputs, "
                            f"outcome {inv.outcome}")
        return "stopped at the first output, outcome cancelled"

    async def errors(self) -> str:
        await self._speech()
        try:
            async with asyncio.timeout(CALL_S):
                _ = [x async for x in self._stream(timeout_ms=0, forever=True)]
        except ProviderCallError as exc:
            if exc.outcome is not Outcome.TIMEOUT or exc.retryable is not True:
                raise Violation(f"a spent deadline ended as {exc.outcome} "
                                f"(retryable={exc.retryable}), not timeout") from None
            return "a spent deadline (timeout_ms 0): ProviderCallError(timeout, retryable)"
        except TimeoutError:
            raise Violation(f"a spent deadline was not enforced within {CALL_S:g} s") from None
        raise Violation("a spent deadline (timeout_ms 0) ended without an error")

    async def metrics(self) -> str:
        if not self.rec.invocations:
            await self.streaming()
        bad = [i for i in self.rec.invocations
               if set(i.labels()) != LABELS or i.metrics.latency_ms is None]
        if bad:
            raise Violation(f"{len(bad)} invocation(s) without labels {sorted(LABELS)} or "
                            "latency")
        ok = [i for i in self.rec.invocations if i.outcome is Outcome.SUCCESS]
        if not ok or any(i.metrics.time_to_first_output_ms is None or i.metrics.bytes_in <= 0
                         or i.metrics.bytes_out <= 0 for i in ok):
            raise Violation("a successful invocation needs time to first output and bytes "
                            "in and out")
        outcomes = sorted({str(i.outcome and i.outcome.value) for i in self.rec.invocations})
        return f"{len(self.rec.invocations)} invocations recorded ({', '.join(outcomes)})"


async def check_provider(kind: str, config: Mapping[str, object], profile: Profile,
                         skip: tuple[str, ...] = (), env: Mapping[str, str] | None = None
                         ) -> SuiteResults:
    """Run ``profile``'s categories against the adapter ``config["type"]`` of ``kind``
    (raises PolicyError naming the field for an unknown adapter or option)."""
    rec = ProviderMetricsRecorder()
    provider = create_provider(kind, config, path="provider", env=env, metrics=rec)
    d = _ProviderDriver(ProviderKind(kind), provider, rec)
    checks: dict[str, Check] = {
        "capabilities": d.capabilities, "streaming": d.streaming, "cancel": d.cancel,
        "error_normalisation": d.errors, "metrics": d.metrics,
    }
    try:
        return await run_checks(profile, f"{kind} adapter {config.get('type')}", checks, skip,
                                timeout_s=CALL_S * 2)
    finally:
        close = getattr(provider, "aclose", None)
        if close is not None:
            await close()
