"""The bounded send queue between a session and one slow or fast client connection.

Audio frames and protocol events share one FIFO (so a ``clear`` is never
overtaken by audio it clears) with two bounds: at most ``max_audio`` queued
audio frames (a slow client loses the oldest frames, counted as dropped and
reported as lateness; memory never grows) and at most ``max_events`` queued
events (beyond that the client is too slow to keep the session: ``overflowed``
is set and the endpoint closes the connection). ``drop_turn`` removes the
queued, not yet sent frames of a fenced turn.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from rspp.transports._protocol import ServerEvent

__all__ = ["AudioFrame", "OutboundQueue"]


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One paced reply frame: turn, per-connection sequence number, PCM16.

    ``mark`` (acknowledged playback only): after sending the frame, ask the client
    to echo this name once the listener has heard it (a carrier ``mark``); a frame
    with empty ``pcm`` carries only a mark (the end of a turn's audio).
    """

    turn_id: str | None
    seq: int
    pcm: bytes
    mark: str | None = None


class OutboundQueue:
    """Bounded FIFO of :class:`AudioFrame` and events (see the module docstring)."""

    def __init__(self, max_audio: int = 50, max_events: int = 512) -> None:
        self.max_audio, self.max_events = max_audio, max_events
        self._items: deque[AudioFrame | ServerEvent | None] = deque()
        self._audio = 0
        self._events = 0
        self._ready = asyncio.Event()
        self.dropped_audio = 0
        self.overflowed = False
        self.closed = False
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._items)

    def put_audio(self, frame: AudioFrame) -> bool:
        """Queue a frame; when full the oldest queued frame is dropped (False)."""
        dropped = False
        if self._audio >= self.max_audio:
            for i, item in enumerate(self._items):
                if isinstance(item, AudioFrame):
                    del self._items[i]
                    self._audio -= 1
                    self.dropped_audio += 1
                    dropped = True
                    break
        self._items.append(frame)
        self._audio += 1
        self._wake()
        return not dropped

    def put_event(self, event: ServerEvent) -> bool:
        """Queue an event; False (and ``overflowed``) when the event bound is exceeded."""
        if self._events >= self.max_events:
            self.overflowed = True
            self._wake()
            return False
        self._items.append(event)
        self._events += 1
        self._wake()
        return True

    def drop_turn(self, turn_id: str) -> int:
        """Remove the queued frames of ``turn_id`` (cancel fence); returns how many."""
        keep = [i for i in self._items
                if not (isinstance(i, AudioFrame) and i.turn_id == turn_id)]
        n = len(self._items) - len(keep)
        if n:
            self._items = deque(keep)
            self._audio -= n
        return n

    def close(self) -> None:
        """No more items: ``get`` returns None once the queue is empty."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self.high_water = max(self.high_water, len(self._items))
        self._ready.set()

    async def get(self) -> AudioFrame | ServerEvent | None:
        """The next item; None when closed (or overflowed) and drained."""
        while not self._items:
            if self.closed or self.overflowed:
                return None
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if isinstance(item, AudioFrame):
            self._audio -= 1
        elif item is not None:
            self._events -= 1
        return item
