"""Scripted faults and request recording shared by every fake provider server."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Fault", "FaultPlan", "RecordedRequest", "tone_pcm"]

FaultKind = Literal["status", "disconnect", "stall", "close", "stream_error", "truncate", "hold"]


@dataclass(frozen=True, slots=True)
class Fault:
    """What the fake does to one request/connection.

    * ``status``: answer ``status`` with the vendor's error body (``error_type``)
      and, when given, a ``Retry-After`` header.
    * ``disconnect``: drop the connection abruptly after ``after_items`` items.
    * ``stall``: wait ``seconds`` before the first byte/message.
    * ``close``: (WebSocket) close with ``code``/``reason`` after ``after_items``.
    * ``stream_error``: send the vendor's in-stream error event after ``after_items``.
    * ``truncate``: end the stream cleanly but without its terminator.
    * ``hold``: (OpenAI chat) after ``after_items`` items, keep the stream open (SSE
      comment lines keep it alive) until :meth:`FaultPlan.release`; then go on. A test
      holds a reply mid-stream for as long as it needs, without a clock.
    """

    kind: FaultKind
    status: int = 500
    error_type: str | None = None
    retry_after: float | None = None
    after_items: int = 0
    seconds: float = 0.0
    code: int = 1011
    reason: str = ""


@dataclass(slots=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: object = None


@dataclass(slots=True)
class FaultPlan:
    """A FIFO of faults; each new request/connection takes the next one (or none)."""

    _queue: deque[Fault] = field(default_factory=deque)
    #: applied to every request once the queue is empty (e.g. "always 503")
    sticky: Fault | None = None
    #: set when a stream reached its ``hold`` fault; ``released`` lets it go on. Both are
    #: used on the fake server's event loop
    held: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, *faults: Fault) -> None:
        self._queue.extend(faults)

    def next(self) -> Fault | None:
        if self._queue:
            return self._queue.popleft()
        return self.sticky

    def release(self) -> None:
        """Let every held stream (and every later ``hold``) go on."""
        self.released.set()

    def clear(self) -> None:
        self._queue.clear()
        self.sticky = None


def tone_pcm(seconds: float, sample_rate: int, *, freq: float = 440.0, amp: int = 8000) -> bytes:
    """Deterministic s16le mono sine tone (the fakes' stand-in for speech)."""
    count = max(0, int(seconds * sample_rate))
    out = bytearray()
    for i in range(count):
        value = int(amp * math.sin(2 * math.pi * freq * i / sample_rate))
        out += value.to_bytes(2, "little", signed=True)
    return bytes(out)
