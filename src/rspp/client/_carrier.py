"""A phone carrier stand-in: one call over the Twilio Media Streams protocol (real WebSocket).

:class:`CarrierCall` is what a carrier does with a call after the voice webhook's
TwiML ``<Connect><Stream>``: it opens the stream, sends ``connected`` and ``start``
(call and stream ids, mu-law 8 kHz, the TwiML ``<Parameter>`` values as
``customParameters``), streams the caller's line as base64 mu-law ``media``
(20 ms, real time, silence between utterances), sends ``dtmf`` keypresses and
``stop`` on hang-up. The reply audio it receives goes into a playout buffer that
plays in real time: a ``mark`` is echoed once the audio queued before it has
played; ``clear`` drops the unplayed audio and echoes the pending marks at once, as
carriers do. Tests and the phone benchmark use it; it is also a way to try a phone
pipeline without a phone number.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

__all__ = ["CarrierCall", "CarrierStats"]

FRAME_BYTES = 160  # 20 ms of mu-law at 8 kHz
RATE = 8000


@dataclass(slots=True)
class CarrierStats:
    """What the carrier saw of one call."""

    media_in: int = 0
    bytes_in: int = 0
    marks_in: int = 0
    marks_echoed: int = 0
    clears: int = 0
    dropped_by_clear: int = 0
    #: names of the ``$`` marks echoed (a reply played to its end)
    replies_played: list[str] = field(default_factory=list)
    #: carrier message -> arrival time (loop clock), for latency measurements
    media_arrivals: list[float] = field(default_factory=list)


class CarrierCall:
    """One call's media stream, carrier side (see the module docstring)."""

    def __init__(self, ws: ClientConnection, call_sid: str, stream_sid: str) -> None:
        self.ws = ws
        self.call_sid, self.stream_sid = call_sid, stream_sid
        self.stats = CarrierStats()
        #: every reply byte received (mu-law), and what was played before any clear
        self.received = bytearray()
        self.played = bytearray()
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()
        self.on_message: Callable[[dict[str, Any]], None] | None = None
        self._seq = 1  # ``connected`` carries none, ``start`` is 1
        self._chunk = 0
        self._buffer: deque[tuple[float, str, bytes | str]] = deque()
        self._buffered_until = 0.0
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._speech = bytearray()
        self._line: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    @classmethod
    async def connect(cls, url: str, parameters: Mapping[str, str], *,
                      call_sid: str | None = None, open_timeout: float = 10.0) -> CarrierCall:
        """Open the stream and send ``connected`` + ``start`` with ``parameters``."""
        ws = await websockets.connect(url, open_timeout=open_timeout, max_size=2**20,
                                      proxy=None, compression=None)
        call = cls(ws, call_sid or f"CA{uuid.uuid4().hex}", f"MZ{uuid.uuid4().hex}")
        await call._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await call._send({
            "event": "start", "sequenceNumber": "1", "streamSid": call.stream_sid,
            "start": {"accountSid": "AC" + "0" * 32, "streamSid": call.stream_sid,
                      "callSid": call.call_sid, "tracks": ["inbound"],
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE,
                                      "channels": 1},
                      "customParameters": dict(parameters)}})
        call._tasks = [asyncio.create_task(call._receive(), name="carrier-receive"),
                       asyncio.create_task(call._playout(), name="carrier-playout")]
        return call

    async def __aenter__(self) -> CarrierCall:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # ------------------------------------------------------------ sending
    async def _send(self, msg: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send(json.dumps(msg, separators=(",", ":")))

    def _next(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def media(self, mulaw: bytes, chunk: int | None = None) -> None:
        """One ``media`` message of the caller's audio.

        ``chunk``: the chunk number to send (1-based; e.g. to replay a network's
        reordering, duplicates and losses); by default the next one.
        """
        if chunk is None:
            self._chunk += 1
            chunk = self._chunk
        else:
            self._chunk = max(self._chunk, chunk)
        await self._send({"event": "media", "sequenceNumber": self._next(),
                          "streamSid": self.stream_sid,
                          "media": {"track": "inbound", "chunk": str(chunk),
                                    "timestamp": str((chunk - 1) * 20),
                                    "payload": base64.b64encode(mulaw).decode()}})

    def say(self, mulaw: bytes) -> None:
        """Queue the caller's speech on the line (:meth:`start_line` sends it in real time)."""
        self._speech.extend(mulaw)

    def start_line(self) -> None:
        """Send the caller's line continuously, as a carrier does: 20 ms ``media`` messages
        in real time carrying the queued speech (:meth:`say`), silence (mu-law 0xFF)
        when there is none, until hang-up or close."""
        if self._line is None:
            self._line = asyncio.create_task(self._send_line(), name="carrier-line")
            self._tasks.append(self._line)

    async def _send_line(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        k = 0
        silence = b"\xff" * FRAME_BYTES
        while not self.closed.is_set():
            chunk = bytes(self._speech[:FRAME_BYTES]) if self._speech else silence
            del self._speech[:FRAME_BYTES]
            try:
                await self.media(chunk.ljust(FRAME_BYTES, b"\xff"))
            except ConnectionClosed:
                return
            k += 1
            await self._notify()
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))

    async def dtmf(self, digit: str) -> None:
        await self._send({"event": "dtmf", "sequenceNumber": self._next(),
                          "streamSid": self.stream_sid,
                          "dtmf": {"track": "inbound_track", "digit": digit}})

    async def hang_up(self) -> None:
        """``stop`` (the caller hung up); the line goes quiet, the server closes the stream."""
        if self._line is not None:
            self._line.cancel()
            await asyncio.gather(self._line, return_exceptions=True)
        with contextlib.suppress(ConnectionClosed):
            await self._send({"event": "stop", "sequenceNumber": self._next(),
                              "streamSid": self.stream_sid,
                              "stop": {"accountSid": "AC" + "0" * 32,
                                       "callSid": self.call_sid}})

    # ---------------------------------------------------------- receiving
    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                event = msg.get("event")
                now = loop.time()
                if event == "media":
                    data = base64.b64decode(msg["media"]["payload"])
                    self.stats.media_in += 1
                    self.stats.bytes_in += len(data)
                    self.stats.media_arrivals.append(now)
                    self.received.extend(data)
                    self._buffered_until = max(now, self._buffered_until) + len(data) / RATE
                    self._buffer.append((self._buffered_until, "media", data))
                elif event == "mark":
                    self.stats.marks_in += 1
                    self._buffer.append((max(now, self._buffered_until), "mark",
                                         str(msg["mark"]["name"])))
                elif event == "clear":
                    self.stats.clears += 1
                    await self._clear()
                self._wake.set()
                if self.on_message is not None:
                    self.on_message(msg)
                await self._notify()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason or ""
            self.closed.set()
            self._wake.set()
            await self._notify()

    async def _clear(self) -> None:
        pending = list(self._buffer)
        self._buffer.clear()
        self._buffered_until = 0.0
        for _, kind, item in pending:
            if kind == "media":
                self.stats.dropped_by_clear += 1
            else:
                await self._echo(str(item))

    async def _echo(self, name: str) -> None:
        self.stats.marks_echoed += 1
        if name.endswith("$"):
            self.stats.replies_played.append(name)
        with contextlib.suppress(ConnectionClosed):
            await self._send({"event": "mark", "sequenceNumber": self._next(),
                              "streamSid": self.stream_sid, "mark": {"name": name}})

    async def _playout(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed.is_set():
            if not self._buffer:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, kind, item = self._buffer[0]
            delay = due - loop.time()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue  # re-check: a clear may have emptied the buffer
            self._buffer.popleft()
            if kind == "media":
                self.played.extend(item if isinstance(item, bytes) else b"")
            else:
                await self._echo(str(item))
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Until ``predicate()`` holds (checked after every message and playout step).

        Raises ConnectionError when the stream closes first; bound it with
        ``asyncio.timeout``.
        """
        async with self._changed:
            await self._changed.wait_for(lambda: predicate() or self.closed.is_set())
        if not predicate():
            raise ConnectionError(f"the stream closed ({self.close_code} {self.close_reason}) "
                                  "before the awaited condition held")

    async def close(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.closed.set()
