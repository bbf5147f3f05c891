"""ElevenLabs streaming TTS over WebSocket (``stream-input``).

Wire format: connect ``{base_url}/v1/text-to-speech/{voice_id}/stream-input?
model_id=..&output_format=pcm_16000`` with header ``xi-api-key``. Send the
beginning-of-stream message ``{"text": " ", "voice_settings": {...}}``, then
``{"text": "..."}`` pieces as they arrive (``flush`` at sentence ends), then
the end-of-stream message ``{"text": ""}``. The server answers
``{"audio": <base64 PCM>, "isFinal": null, ...}`` and finally
``{"isFinal": true}``; errors arrive as ``{"error": ..., "message": ...}``
and/or a close frame (1008 policy violation for auth/quota problems).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

import websockets
from websockets.exceptions import ConnectionClosed

from rspp.providers._base import TTSProvider
from rspp.providers._invocation import ProviderInvocation
from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._secrets import Secret, SecretRef
from rspp.providers._types import AudioChunk, Capabilities, ProviderKind
from rspp.providers.remote._common import key_header, key_source, vendor_outcome
from rspp.providers.remote._duplex import closed_error, uploading

__all__ = ["ElevenLabsTTS"]

_RATES = (8000, 16000, 22050, 24000, 44100)


class ElevenLabsTTS(TTSProvider):
    capabilities = Capabilities(
        kind=ProviderKind.TTS,
        streaming=True,
        languages=("*",),
        sample_rates=_RATES,
        incremental_input=True,
    )

    def __init__(
        self,
        provider_id: str = "elevenlabs",
        *,
        voice_id: str = "21m00Tcm4TlvDq8ikWAM",
        model_id: str = "eleven_flash_v2_5",
        api_key: str | Secret | SecretRef | None = None,
        base_url: str = "wss://api.elevenlabs.io",
        sample_rate: int = 16000,
        **kwargs: object,
    ) -> None:
        super().__init__(provider_id, **kwargs)  # type: ignore[arg-type]
        if sample_rate not in _RATES:
            raise ProviderCallError(
                f"sample_rate={sample_rate} is not an ElevenLabs pcm format; use one of {_RATES}",
                outcome=Outcome.BAD_REQUEST,
                provider=provider_id,
                code="sample_rate",
            )
        self._key = key_source(api_key)
        self.voice_id = voice_id
        self.model_id = model_id
        self.base_url = base_url.rstrip("/")
        self.sample_rate = sample_rate

    def url(self) -> str:
        query = urlencode({"model_id": self.model_id, "output_format": f"pcm_{self.sample_rate}"})
        return f"{self.base_url}/v1/text-to-speech/{quote(self.voice_id)}/stream-input?{query}"

    @staticmethod
    async def _send(ws: websockets.ClientConnection, text: AsyncIterator[str]) -> None:
        await ws.send(
            json.dumps({"text": " ", "voice_settings": {"stability": 0.5, "similarity_boost": 0.8}})
        )
        async for piece in text:
            if piece:
                flush = piece.rstrip().endswith((".", "!", "?"))
                await ws.send(json.dumps({"text": piece, "flush": flush}))
        await ws.send(json.dumps({"text": ""}))

    def _error(self, message: dict[str, object]) -> ProviderCallError:
        etype = str(message.get("error") or "error")
        return ProviderCallError(
            str(message.get("message") or etype)[:200],
            outcome=vendor_outcome(etype, Outcome.INTERNAL),
            provider=self.provider_id,
            code=etype,
        )

    async def _synthesize(
        self, text: AsyncIterator[str], invocation: ProviderInvocation
    ) -> AsyncIterator[AudioChunk]:
        headers = key_header(self._key, "xi-api-key")
        async with websockets.connect(
            self.url(), additional_headers=headers, open_timeout=10, max_size=2**24
        ) as ws:
            async with uploading(self._send(ws, text)):
                while True:
                    try:
                        raw = await ws.recv()
                    except ConnectionClosed as exc:
                        raise closed_error(
                            exc, self.provider_id, "websocket closed before isFinal",
                            lambda reason: vendor_outcome(reason.split(" ")[0],
                                                          Outcome.AUTH_ERROR)) from None
                    if isinstance(raw, bytes):
                        continue
                    message = json.loads(raw)
                    if message.get("error"):
                        raise self._error(message)
                    audio = message.get("audio")
                    if audio:
                        yield AudioChunk(base64.b64decode(audio), self.sample_rate)
                    if message.get("isFinal"):
                        return
