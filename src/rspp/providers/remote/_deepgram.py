"""Deepgram live STT over WebSocket.

Wire format: connect ``{base_url}/v1/listen?encoding=linear16&sample_rate=..&
channels=1&interim_results=true&model=..`` with ``Authorization: Token KEY``;
send binary audio frames, ``{"type": "KeepAlive"}`` while idle and
``{"type": "CloseStream"}`` at the end. The server sends ``Results`` messages
(``channel.alternatives[0].transcript``, ``is_final``, ``speech_final``),
``Metadata`` and ``UtteranceEnd``, then closes normally.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import websockets
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from rspp.providers._base import STTProvider
from rspp.providers._invocation import ProviderInvocation
from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._secrets import Secret, SecretRef
from rspp.providers._types import AudioChunk, Capabilities, ProviderKind, Transcript
from rspp.providers.offline._espeak import resample_pcm
from rspp.providers.remote._common import key_header, key_source, vendor_outcome
from rspp.providers.remote._duplex import closed_error, uploading

__all__ = ["DeepgramSTT"]


class DeepgramSTT(STTProvider):
    capabilities = Capabilities(
        kind=ProviderKind.STT,
        streaming=True,
        languages=("en", "en-US", "es", "fr", "de", "*"),
        sample_rates=(8000, 16000, 24000, 48000),
        interim_results=True,
    )

    def __init__(
        self,
        provider_id: str = "deepgram",
        *,
        api_key: str | Secret | SecretRef | None = None,
        base_url: str = "wss://api.deepgram.com",
        model: str = "nova-2",
        language: str = "en-US",
        sample_rate: int = 16000,
        keepalive_s: float = 5.0,
        **kwargs: object,
    ) -> None:
        super().__init__(provider_id, **kwargs)  # type: ignore[arg-type]
        self._key = key_source(api_key)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.language = language
        self.sample_rate = sample_rate
        self.keepalive_s = keepalive_s

    def url(self) -> str:
        query = urlencode(
            {
                "encoding": "linear16",
                "sample_rate": self.sample_rate,
                "channels": 1,
                "interim_results": "true",
                "model": self.model,
                "language": self.language,
            }
        )
        return f"{self.base_url}/v1/listen?{query}"

    async def _send(
        self, ws: websockets.ClientConnection, audio: AsyncIterator[AudioChunk]
    ) -> None:
        """Forward audio; send KeepAlive while the source is idle, CloseStream at its end.

        The pending ``__anext__`` is never cancelled by the keep-alive timer (a
        cancelled ``__anext__`` would close the caller's audio generator).
        """
        iterator = audio.__aiter__()

        async def pull() -> AudioChunk:
            return await iterator.__anext__()

        pending: asyncio.Future[AudioChunk] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(pull())
                done, _ = await asyncio.wait({pending}, timeout=self.keepalive_s)
                if not done:
                    await ws.send(json.dumps({"type": "KeepAlive"}))
                    continue
                task, pending = pending, None
                try:
                    chunk = task.result()
                except StopAsyncIteration:
                    break
                await ws.send(resample_pcm(chunk.pcm, chunk.sample_rate, self.sample_rate))
            await ws.send(json.dumps({"type": "CloseStream"}))
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.wait({pending})

    async def _recognize(
        self, audio: AsyncIterator[AudioChunk], invocation: ProviderInvocation
    ) -> AsyncIterator[Transcript]:
        headers = key_header(self._key, "Authorization", "Token")
        async with websockets.connect(
            self.url(), additional_headers=headers, open_timeout=10, max_size=2**22
        ) as ws:
            async with uploading(self._send(ws, audio)) as sender:
                while True:
                    if sender.done() and sender.exception() is not None:
                        raise sender.exception()  # type: ignore[misc]
                    try:
                        raw = await ws.recv()
                    except ConnectionClosedOK:
                        if not sender.done():
                            raise ProviderCallError(
                                "server closed the stream before CloseStream",
                                outcome=Outcome.DISCONNECTED,
                                provider=self.provider_id,
                                code="ws_close_1000",
                            ) from None
                        return
                    except ConnectionClosed as exc:
                        raise closed_error(exc, self.provider_id, "websocket closed",
                                           lambda _: Outcome.BAD_REQUEST) from None
                    if isinstance(raw, bytes):
                        continue
                    message = json.loads(raw)
                    mtype = message.get("type")
                    if mtype == "Results":
                        alternatives = (message.get("channel") or {}).get("alternatives") or [{}]
                        best = alternatives[0]
                        text = str(best.get("transcript", ""))
                        is_final = bool(message.get("is_final"))
                        if text or is_final:
                            yield Transcript(
                                text=text,
                                is_final=is_final,
                                confidence=best.get("confidence"),
                                speech_final=bool(message.get("speech_final")),
                            )
                    elif mtype == "Error":
                        raise ProviderCallError(
                            str(message.get("description") or message.get("message", ""))[:200],
                            outcome=vendor_outcome(message.get("variant"), Outcome.INTERNAL),
                            provider=self.provider_id,
                            code=str(message.get("err_code") or "error"),
                        )
