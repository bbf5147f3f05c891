"""Fake Deepgram live STT and ElevenLabs stream-input TTS WebSocket servers.

Real ``websockets`` servers on loopback speaking the documented messages:
handshake auth (401 / 429 with Retry-After), Results/KeepAlive/CloseStream for
Deepgram, BOS/text/EOS with base64 audio and ``isFinal`` for ElevenLabs, plus
scripted close codes and abrupt disconnects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from http import HTTPStatus

import websockets
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from rspp.testing.fakes._faults import Fault, FaultPlan, RecordedRequest, tone_pcm
from rspp.testing.fakes._server import serve_websocket

__all__ = ["FakeDeepgram", "FakeElevenLabs"]


class _WsFakeBase:
    auth_header = "authorization"

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.faults = FaultPlan()
        self.requests: list[RecordedRequest] = []
        self._current: dict[int, Fault | None] = {}

    def _expected_auth(self) -> str | None:
        return self.api_key

    def _process_request(
        self, connection: websockets.ServerConnection, request: Request
    ) -> Response | None:
        self.requests.append(RecordedRequest(request.path, dict(request.headers.raw_items())))
        expected = self._expected_auth()
        if expected is not None and request.headers.get(self.auth_header) != expected:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid credentials\n")
        fault = self.faults.next()
        if fault is not None and fault.kind == "status":
            response = connection.respond(HTTPStatus(fault.status), f"fake status {fault.status}\n")
            if fault.retry_after is not None:
                headers = Headers(response.headers)
                headers["Retry-After"] = f"{fault.retry_after:g}"
                response.headers = headers
            return response
        self._current[id(connection)] = fault
        return None

    def fault_for(self, connection: websockets.ServerConnection) -> Fault | None:
        return self._current.pop(id(connection), None)

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Run the fake; yields its ``ws://127.0.0.1:port`` base URL."""
        async with serve_websocket(self._handler, process_request=self._process_request) as url:
            yield url

    async def _handler(self, ws: websockets.ServerConnection) -> None:
        raise NotImplementedError

    @staticmethod
    async def _stalled(ws: websockets.ServerConnection, fault: Fault | None
                       ) -> list[str | bytes] | None:
        """Apply a ``stall`` fault: answer nothing for ``fault.seconds`` while still reading
        (and keeping) what the client sends, so a close (the client's, or the server's own
        on exit) ends the stall at once instead of the handler sleeping it out. Returns the
        messages held (to be handled after the stall), or ``None``: the connection closed."""
        if fault is None or fault.kind != "stall":
            return []
        held: list[str | bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + fault.seconds
        while (left := deadline - loop.time()) > 0:
            try:
                held.append(await asyncio.wait_for(ws.recv(), left))
            except TimeoutError:
                break
            except websockets.ConnectionClosed:
                return None
        return held

    @staticmethod
    async def _messages(ws: websockets.ServerConnection, held: list[str | bytes]
                        ) -> AsyncIterator[str | bytes]:
        """The messages held during a stall, then the connection's own."""
        for message in held:
            yield message
        async for message in ws:
            yield message

    @staticmethod
    async def _ended(ws: websockets.ServerConnection, fault: Fault) -> bool:
        """Apply a fault that ends the stream here: ``disconnect`` drops the connection
        (no close frame), ``close`` closes it with the fault's code and reason."""
        if fault.kind == "disconnect":
            ws.transport.abort()
            return True
        if fault.kind == "close":
            await ws.close(fault.code, fault.reason)
            return True
        return False


class FakeDeepgram(_WsFakeBase):
    """``/v1/listen``: interim Results every ``interim_every_s`` of audio, final on CloseStream."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        transcript: str = "what is the weather today",
        interim_every_s: float = 0.2,
    ) -> None:
        super().__init__(api_key=api_key)
        self.transcript = transcript
        self.interim_every_s = interim_every_s
        self.keepalives = 0
        self.audio_bytes = 0

    def _expected_auth(self) -> str | None:
        return None if self.api_key is None else f"Token {self.api_key}"

    def _results(self, text: str, *, is_final: bool, start: float, duration: float) -> str:
        return json.dumps(
            {
                "type": "Results",
                "channel_index": [0, 1],
                "duration": duration,
                "start": start,
                "is_final": is_final,
                "speech_final": is_final,
                "channel": {
                    "alternatives": [{"transcript": text, "confidence": 0.98, "words": []}]
                },
                "metadata": {"request_id": "fake", "model_info": {"name": "fake"}},
            }
        )

    async def _handler(self, ws: websockets.ServerConnection) -> None:
        fault = self.fault_for(ws)
        if ws.request is None or not ws.request.path.startswith("/v1/listen"):
            await ws.close(1008, "unknown path")
            return
        query = ws.request.path.partition("?")[2]
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        rate = int(params.get("sample_rate", "16000"))
        words = self.transcript.split()
        received = 0
        sent_interims = 0
        held = await self._stalled(ws, fault)
        if held is None:
            return
        async for message in self._messages(ws, held):
            if isinstance(message, bytes):
                received += len(message)
                self.audio_bytes += len(message)
                seconds = received / (2 * rate)
                while seconds >= (sent_interims + 1) * self.interim_every_s:
                    if (fault is not None and sent_interims == fault.after_items
                            and await self._ended(ws, fault)):
                        return
                    sent_interims += 1
                    partial = " ".join(words[: min(len(words), sent_interims)])
                    await ws.send(
                        self._results(partial, is_final=False, start=0.0, duration=seconds)
                    )
                continue
            control = json.loads(message)
            if control.get("type") == "KeepAlive":
                self.keepalives += 1
            elif control.get("type") == "CloseStream":
                seconds = received / (2 * rate)
                await ws.send(
                    self._results(self.transcript, is_final=True, start=0.0, duration=seconds)
                )
                await ws.send(json.dumps({"type": "Metadata", "duration": seconds, "channels": 1}))
                await ws.close(1000)
                return


class FakeElevenLabs(_WsFakeBase):
    """``/v1/text-to-speech/{voice}/stream-input``: base64 PCM per flushed text, then isFinal."""

    auth_header = "xi-api-key"

    def __init__(self, *, api_key: str | None = None, seconds_per_char: float = 0.02) -> None:
        super().__init__(api_key=api_key)
        self.seconds_per_char = seconds_per_char
        self.texts: list[str] = []

    async def _handler(self, ws: websockets.ServerConnection) -> None:
        fault = self.fault_for(ws)
        path = ws.request.path if ws.request is not None else ""
        if "/stream-input" not in path:
            await ws.close(1008, "unknown path")
            return
        query = path.partition("?")[2]
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        fmt = params.get("output_format", "pcm_16000")
        rate = int(fmt.split("_")[1]) if fmt.startswith("pcm_") else 16000
        held = await self._stalled(ws, fault)
        if held is None:
            return
        messages = self._messages(ws, held)
        try:
            first = json.loads(await anext(messages))
        except StopAsyncIteration:
            return
        if first.get("text") != " ":
            await ws.close(1008, "invalid_request first message must be BOS with text ' '")
            return
        buffer = ""
        chunks = 0
        async for message in messages:
            data = json.loads(message)
            text = data.get("text", "")
            if text == "":
                pending = [buffer] if buffer.strip() else []
                buffer = ""
            else:
                self.texts.append(text)
                buffer += text
                if not data.get("flush") and len(buffer) < 40:
                    continue
                pending, buffer = [buffer], ""
            for piece in pending:
                if fault is not None and chunks == fault.after_items:
                    if await self._ended(ws, fault):
                        return
                    if fault.kind == "stream_error":
                        etype = fault.error_type or "quota_exceeded"
                        await ws.send(
                            json.dumps({"message": f"fake {etype}", "error": etype, "code": 1008})
                        )
                        await ws.close(1008, etype)
                        return
                chunks += 1
                pcm = tone_pcm(self.seconds_per_char * len(piece), rate)
                await ws.send(
                    json.dumps(
                        {
                            "audio": base64.b64encode(pcm).decode(),
                            "isFinal": None,
                            "normalizedAlignment": {"chars": list(piece)},
                        }
                    )
                )
            if text == "":
                await ws.send(json.dumps({"isFinal": True}))
                await ws.close(1000)
                return
