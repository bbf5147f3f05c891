"""Clock implementations: the real system clock and a deterministic virtual clock.

The kernel never reads time any other way than through an injected
:class:`~rspp.kernel._handles.Clock`. :class:`SystemClock` reads the OS clocks;
:class:`VirtualClock` keeps its own time that only moves when a test calls
:meth:`VirtualClock.advance` or when a coroutine sleeps on it (sleeping
advances virtual time deterministically, in wake-up order).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

from rspp.errors import RSPPError

__all__ = ["ClockError", "SystemClock", "VirtualClock"]

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


class ClockError(RSPPError):
    """Invalid use of a clock (for example a negative sleep or advance)."""


class SystemClock:
    """The real clock: ``time.monotonic_ns``, ``time.time_ns`` and ``asyncio.sleep``."""

    __slots__ = ()

    #: monotonic nanoseconds from the OS (never goes backwards); the builtin itself (read
    #: for every event: no Python frame around it)
    monotonic_ns = staticmethod(time.monotonic_ns)

    def wall_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch."""
        return time.time_ns() // _NS_PER_MS

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of real time on the running event loop."""
        if seconds < 0:
            raise ClockError(f"sleep(seconds={seconds!r}): seconds must be >= 0")
        await asyncio.sleep(seconds)


class VirtualClock:
    """Deterministic virtual time for tests and replays.

    ``monotonic_ns`` starts at ``start_monotonic_ns`` and ``wall_ms`` at
    ``start_wall_ms``; both move together and only forward.

    ``await clock.sleep(s)`` registers a timer. With ``auto_advance=True`` (the
    default) the sleeper yields to the event loop once per step (so every task
    that is runnable gets to run and reach its own sleep) and then jumps virtual
    time to the earliest pending deadline; wake-ups happen in deadline order
    (ties in registration order) and sleeping never waits for real time. Note
    the jump is eager: a task blocked on something other than this clock (a
    queue fed by real I/O) does not hold virtual time back. With
    ``auto_advance=False`` sleepers wake only when a test calls :meth:`advance`
    (or :meth:`advance_ns`) far enough.
    """

    def __init__(
        self,
        *,
        start_monotonic_ns: int = 0,
        start_wall_ms: int = 1_700_000_000_000,
        auto_advance: bool = True,
    ) -> None:
        if start_monotonic_ns < 0:
            raise ClockError("start_monotonic_ns must be >= 0")
        self._now_ns = start_monotonic_ns
        self._start_ns = start_monotonic_ns
        self._start_wall_ms = start_wall_ms
        self._auto_advance = auto_advance
        self._seq = itertools.count()
        self._timers: list[tuple[int, int, asyncio.Future[None]]] = []

    # -- Clock protocol -------------------------------------------------
    def monotonic_ns(self) -> int:
        """Current virtual monotonic time in nanoseconds."""
        return self._now_ns

    def wall_ms(self) -> int:
        """Current virtual wall-clock time in Unix milliseconds."""
        return self._start_wall_ms + (self._now_ns - self._start_ns) // _NS_PER_MS

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of virtual time (see the class docstring)."""
        if seconds < 0:
            raise ClockError(f"sleep(seconds={seconds!r}): seconds must be >= 0")
        deadline = self._now_ns + round(seconds * _NS_PER_S)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._timers, (deadline, next(self._seq), fut))
        try:
            if deadline <= self._now_ns:
                self._fire_due()
            elif self._auto_advance:
                # Each step lets every runnable task run (and reach its own
                # sleep) before time jumps to the earliest pending deadline.
                while not fut.done():
                    await asyncio.sleep(0)
                    if not fut.done():
                        self._advance_to_next()
            await fut
        except asyncio.CancelledError:
            self._timers = [t for t in self._timers if t[2] is not fut]
            heapq.heapify(self._timers)
            raise

    def call_later(self, seconds: float, callback: Callable[[], object]) -> asyncio.Future[None]:
        """Passive timer: run ``callback`` once virtual time reaches ``now + seconds``.

        Unlike :meth:`sleep` it never advances time by itself (used for timeouts:
        a deadline must not pull time forward). Cancel the returned future to disarm.
        """
        if seconds < 0:
            raise ClockError(f"call_later(seconds={seconds!r}): seconds must be >= 0")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: None if f.cancelled() else callback())
        heapq.heappush(
            self._timers, (self._now_ns + round(seconds * _NS_PER_S), next(self._seq), fut)
        )
        return fut

    # -- test controls --------------------------------------------------
    def advance(self, ms: float) -> None:
        """Move virtual time forward by ``ms`` milliseconds, waking due sleepers."""
        self.advance_ns(round(ms * _NS_PER_MS))

    def advance_ns(self, ns: int) -> None:
        """Move virtual time forward by ``ns`` nanoseconds, waking due sleepers."""
        if ns < 0:
            raise ClockError(f"advance by {ns} ns: virtual time never goes backwards")
        self._now_ns += ns
        self._fire_due()

    def jump_if_idle(self, target_ns: int) -> bool:
        """Move virtual time to ``target_ns`` (when it is later) if no sleeper is due by
        then, so nobody wakes: :meth:`advance_ns` without the wake-up pass. False (time
        unchanged) when a pending sleeper's deadline is ``<= target_ns``."""
        timers = self._timers
        if timers:
            self._drop_done()
            if timers and timers[0][0] <= target_ns:
                return False
        if target_ns > self._now_ns:
            self._now_ns = target_ns
        return True

    @property
    def pending_timers(self) -> int:
        """Number of sleepers not yet woken."""
        return sum(1 for _, _, f in self._timers if not f.done())

    def next_deadline_ns(self) -> int | None:
        """Earliest pending sleeper deadline, or None when nobody sleeps."""
        self._drop_done()
        return self._timers[0][0] if self._timers else None

    # -- internals ------------------------------------------------------
    def _drop_done(self) -> None:
        while self._timers and self._timers[0][2].done():
            heapq.heappop(self._timers)

    def _advance_to_next(self) -> None:
        self._drop_done()
        if self._timers:
            deadline = self._timers[0][0]
            if deadline > self._now_ns:
                self._now_ns = deadline
        self._fire_due()

    def _fire_due(self) -> None:
        while self._timers and self._timers[0][0] <= self._now_ns:
            _, _, fut = heapq.heappop(self._timers)
            if not fut.done():
                fut.set_result(None)
