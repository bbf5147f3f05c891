"""Typed controllers per modality, with cost caps applied around the stream (F-058)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterable, AsyncIterator

from rspp.providers._base import LLMProvider, STTProvider, TTSProvider
from rspp.providers._controller import InvocationController, ReplayableInput
from rspp.providers._cost import UsageKind
from rspp.providers._invocation import ProviderInvocation
from rspp.providers._types import AudioChunk, LLMRequest, Transcript

__all__ = ["LLMController", "STTController", "TTSController"]


class LLMController(InvocationController[LLMProvider]):
    """Streams LLM text; truncates the reply at the token cap."""

    def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        async def gen() -> AsyncIterator[str]:
            self._precheck(UsageKind.LLM_TOKENS)

            def start(
                p: LLMProvider, inv: ProviderInvocation, timeout_ms: int
            ) -> AsyncIterator[str]:
                return p.stream(request, invocation=inv, timeout_ms=timeout_ms)

            async with contextlib.aclosing(self._run(start)) as stream:
                async for delta in stream:
                    inv = self.invocations[-1]
                    if self.meter is not None:
                        allowance = self.meter.allowance(UsageKind.LLM_TOKENS)
                        if allowance is not None and allowance < 1:
                            inv.truncated = True
                            self._enforce(UsageKind.LLM_TOKENS, "truncate", inv.invocation_id)
                            return
                        self.meter.charge(UsageKind.LLM_TOKENS, inv.provider_id, 1)
                    yield delta

        return gen()


class STTController(InvocationController[STTProvider]):
    """Streams transcripts; stops sending audio at the audio-seconds cap."""

    def stream(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        async def capped() -> AsyncIterator[AudioChunk]:
            async for chunk in audio:
                if self.meter is not None:
                    allowance = self.meter.allowance(UsageKind.STT_AUDIO_SECONDS)
                    if allowance is not None and allowance <= 0:
                        current = self.current
                        self._enforce(
                            UsageKind.STT_AUDIO_SECONDS,
                            "truncate",
                            current.invocation_id if current else None,
                        )
                        return
                    pid = self.current.provider_id if self.current else "unknown"
                    self.meter.charge(UsageKind.STT_AUDIO_SECONDS, pid, chunk.duration_s)
                yield chunk

        async def gen() -> AsyncIterator[Transcript]:
            self._precheck(UsageKind.STT_AUDIO_SECONDS)
            replay = ReplayableInput(capped())

            def start(
                p: STTProvider, inv: ProviderInvocation, timeout_ms: int
            ) -> AsyncIterator[Transcript]:
                return p.stream(replay.fresh(), invocation=inv, timeout_ms=timeout_ms)

            async with contextlib.aclosing(self._run(start)) as stream:
                async for transcript in stream:
                    yield transcript

        return gen()


class TTSController(InvocationController[TTSProvider]):
    """Streams audio; truncates the text at the character cap."""

    def stream(self, text: AsyncIterable[str]) -> AsyncIterator[AudioChunk]:
        async def capped() -> AsyncIterator[str]:
            async for piece in text:
                if self.meter is not None:
                    allowance = self.meter.allowance(UsageKind.TTS_CHARS)
                    if allowance is not None and allowance < len(piece):
                        keep = piece[: math.floor(allowance)]
                        current = self.current
                        self._enforce(
                            UsageKind.TTS_CHARS,
                            "truncate",
                            current.invocation_id if current else None,
                        )
                        if keep:
                            self.meter.charge(UsageKind.TTS_CHARS, self._pid(), len(keep))
                            yield keep
                        return
                    self.meter.charge(UsageKind.TTS_CHARS, self._pid(), len(piece))
                yield piece

        async def gen() -> AsyncIterator[AudioChunk]:
            self._precheck(UsageKind.TTS_CHARS)
            replay = ReplayableInput(capped())

            def start(
                p: TTSProvider, inv: ProviderInvocation, timeout_ms: int
            ) -> AsyncIterator[AudioChunk]:
                return p.stream(replay.fresh(), invocation=inv, timeout_ms=timeout_ms)

            async with contextlib.aclosing(self._run(start)) as stream:
                async for chunk in stream:
                    yield chunk

        return gen()

    def _pid(self) -> str:
        return self.current.provider_id if self.current else "unknown"
