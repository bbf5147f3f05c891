"""The bounded send queue between a session and one slow or fast client connection.

Audio frames and protocol events share one FIFO (so a ``clear`` is never
overtaken by audio it clears) with two bounds: at most ``max_audio`` queued
audio frames (a slow client loses the oldest frames, counted as dropped and
reported as lateness; memory never grows) and at most ``max_events`` queued
events (beyond that the client is too slow to keep the session: ``overflowed``
is set and the endpoint closes the connection). ``drop_turn`` removes the
queued, not yet sent frames of a fenced turn.

A connection that can write without waiting (``rspp serve``'s WebSocket protocol)
installs :attr:`OutboundQueue.direct`: an item put while the queue is empty and its
reader waits is offered to it first and, when taken, leaves at once (the same checks
as the reader's, right there: no task wake-up per frame); the reader's path takes
whatever it declines (a connection that must wait, authority on hold), in order.

:class:`EgressPacer` is the runtime's one pacing clock: every live session's
egress is stepped from one loop timer, set to the earliest frame due among all
sessions (a session idle of reply audio holds no timer), so 300 sessions cost a
few timer wake-ups per frame period instead of 300 sleeping tasks.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rspp.transports._protocol import ServerEvent

__all__ = ["AudioFrame", "EgressPacer", "OutboundQueue", "Paced"]


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
        #: the reader waiting in :meth:`get` (a future of the loop it runs on)
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped_audio = 0
        self.overflowed = False
        self.closed = False
        self.high_water = 0
        #: takes an item at once instead of queueing it for the reader, only while nothing
        #: is queued and the reader waits (so nothing can overtake anything); True: taken
        #: (sent, or dropped by the same checks the reader applies), False: queue it
        self.direct: Callable[[AudioFrame | ServerEvent], bool] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def _taken(self, item: AudioFrame | ServerEvent) -> bool:
        """``direct`` took ``item``: nothing is queued, the reader waits (nothing in flight)."""
        waiter = self._waiter
        direct = self.direct
        return (direct is not None and not self._items and waiter is not None
                and not waiter.done() and not self.closed and direct(item))

    def put_audio(self, frame: AudioFrame) -> bool:
        """Queue a frame; when full the oldest queued frame is dropped (False)."""
        if self._taken(frame):
            return True
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

    def events_queued(self) -> int:
        """How many events (not audio frames) wait in the queue."""
        return self._events

    def put_event(self, event: ServerEvent) -> bool:
        """Queue an event; False (and ``overflowed``) when the event bound is exceeded."""
        if self._taken(event):
            return True
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
        n = len(self._items)
        if n > self.high_water:
            self.high_water = n
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> AudioFrame | ServerEvent | None:
        """The next item; None when closed (or overflowed) and drained."""
        while not self._items:
            if self.closed or self.overflowed:
                return None
            loop = self._loop
            if loop is None:  # once: asyncio.get_running_loop() costs a getpid() call
                loop = self._loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if isinstance(item, AudioFrame):
            self._audio -= 1
        elif item is not None:
            self._events -= 1
        return item


class Paced(Protocol):
    """A session's egress as the shared pacer drives it."""

    def pace(self, now: float) -> float | None:
        """Send every frame due by ``now``; the loop time to be stepped next (None: wait
        for a :meth:`EgressPacer.kick`, i.e. for reply audio)."""
        ...


log = logging.getLogger("rspp.transports.egress")
#: a timer fires this close to its time or later (uvloop: whole milliseconds)
_RESOLUTION_S = 0.001
_PACERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EgressPacer] = (
    weakref.WeakKeyDictionary())


class EgressPacer:
    """One pacing clock for every live session of an event loop (see the module docstring).

    A session asks to be stepped soon (:meth:`kick`: reply audio arrived while it was
    idle) or at a time (the return value of its ``pace``); the pacer keeps one timer at
    the earliest such time and, when it fires, steps every session that is due, each
    with the loop time read right before its step (so lateness counts the batch).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: (when, order, session); an entry is live only while ``_at[session]`` is its when
        self._heap: list[tuple[float, int, Paced]] = []
        self._at: dict[Paced, float] = {}
        self._order = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._soon: set[Paced] = set()
        self._soon_handle: asyncio.Handle | None = None
        self.steps = 0
        self.wakeups = 0

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop | None = None) -> EgressPacer:
        """The pacer of ``loop`` (the running loop by default)."""
        loop = loop or asyncio.get_running_loop()
        pacer = _PACERS.get(loop)
        if pacer is None:
            pacer = _PACERS[loop] = cls(loop)
        return pacer

    def __len__(self) -> int:
        return len(self._at) + len(self._soon)

    def kick(self, session: Paced) -> None:
        """Step ``session`` on the next loop iteration (its reply audio arrived)."""
        self._soon.add(session)
        if self._soon_handle is None:
            self._soon_handle = self._loop.call_soon(self._run_soon)

    def remove(self, session: Paced) -> None:
        """Never step ``session`` again (until it is kicked)."""
        self._soon.discard(session)
        self._at.pop(session, None)

    def _run_soon(self) -> None:
        self._soon_handle = None
        batch, self._soon = self._soon, set()
        for session in batch:
            self._at.pop(session, None)  # stepped now: a later timed entry is stale
            self._step(session)
        self._arm()

    def _step(self, session: Paced, at: float = 0.0) -> None:
        self.steps += 1
        # a timer may fire within the loop clock's resolution of its time (uvloop's clock
        # and timers count whole milliseconds): step it as of that time, not a spin later
        when = _guarded(session.pace, max(self._loop.time(), at))
        if when is not None:
            self._at[session] = when
            self._order += 1
            heapq.heappush(self._heap, (when, self._order, session))

    def _arm(self) -> None:
        heap, at = self._heap, self._at
        while heap and at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # stale: the session was stepped, kicked or removed since
        if not heap:
            return
        when = heap[0][0]
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self.wakeups += 1
        heap, at, loop = self._heap, self._at, self._loop
        horizon = loop.time() + _RESOLUTION_S
        while heap and heap[0][0] <= horizon:
            when, _, session = heapq.heappop(heap)
            if at.get(session) != when:
                continue
            del at[session]
            self._step(session, when)
        self._arm()


def _guarded(step: Callable[[float], float | None], now: float) -> float | None:
    try:
        return step(now)
    except Exception:  # one session's failure must not stop every session's egress
        log.exception("egress pacing step failed")
        return None
