"""OpenAI TTS: ``POST {base_url}/audio/speech`` streaming raw PCM.

With ``response_format: "pcm"`` the body is 24 kHz signed 16-bit mono PCM,
streamed with chunked transfer. Incoming text is cut into sentences and each
sentence is one request, so audio starts before the full text exists (F-064).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from rspp.providers._base import TTSProvider
from rspp.providers._invocation import ProviderInvocation
from rspp.providers._secrets import Secret, SecretRef
from rspp.providers._sentences import speak_by_sentence
from rspp.providers._types import AudioChunk, Capabilities, ProviderKind
from rspp.providers.remote._common import error_from_response, key_header, key_source

__all__ = ["OpenAITTS"]

OPENAI_PCM_RATE = 24000


class OpenAITTS(TTSProvider):
    capabilities = Capabilities(
        kind=ProviderKind.TTS,
        streaming=True,
        languages=("*",),
        sample_rates=(OPENAI_PCM_RATE,),
        incremental_input=True,
        voices=("alloy", "ash", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer"),
        max_input_chars=4096,  # the speech endpoint's documented input limit
    )

    def __init__(
        self,
        provider_id: str = "openai-tts",
        *,
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        base_url: str = "https://api.openai.com/v1",
        api_key: str | Secret | SecretRef | None = None,
        client: httpx.AsyncClient | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(provider_id, **kwargs)  # type: ignore[arg-type]
        self.model = model
        self.voice = voice
        self.base_url = base_url.rstrip("/")
        self._key = key_source(api_key)
        #: a client passed in (the runtime's shared pool, F-105) is its owner's to close
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _speak(self, sentence: str) -> AsyncIterator[AudioChunk]:
        headers = key_header(self._key, "Authorization", "Bearer")
        body = {
            "model": self.model,
            "voice": self.voice,
            "input": sentence,
            "response_format": "pcm",
        }
        async with self._client.stream(
            "POST", f"{self.base_url}/audio/speech", json=body, headers=headers
        ) as response:
            if response.status_code != 200:
                raise await error_from_response(response, self.provider_id)
            carry = b""
            async for data in response.aiter_bytes():
                data = carry + data
                cut = len(data) - len(data) % 2
                carry = data[cut:]
                if cut:
                    yield AudioChunk(data[:cut], OPENAI_PCM_RATE)

    async def _synthesize(
        self, text: AsyncIterator[str], invocation: ProviderInvocation
    ) -> AsyncIterator[AudioChunk]:
        async for chunk in speak_by_sentence(text, self._speak):
            yield chunk
