"""Concurrency limit of one external node type, shared by every session of a runtime (F-123).

At most ``max_concurrency`` calls are in the node's child processes at once; further calls
wait in a FIFO queue of at most ``max_queue`` (0: none) for at most ``queue_timeout_ms``;
a call that finds the queue full, or waits past the timeout, is rejected with
:class:`~rspp.kernel.ResourceLimitError` (taxonomy ``resource_limit_exceeded``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from rspp.kernel import ResourceLimitError

__all__ = ["CallLimiter", "LimiterStats"]


@dataclass
class LimiterStats:
    admitted: int = 0
    queued: int = 0
    rejected: int = 0
    max_active: int = 0


class CallLimiter:
    """A bounded FIFO semaphore that rejects instead of growing."""

    def __init__(self, label: str, max_concurrency: int, max_queue: int,
                 queue_timeout_s: float) -> None:
        self.label = label
        self.max_concurrency = max(1, max_concurrency)
        self.max_queue = max(0, max_queue)
        self.queue_timeout_s = queue_timeout_s
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.stats = LimiterStats()

    def _admit(self) -> None:
        self.active += 1
        self.stats.admitted += 1
        self.stats.max_active = max(self.stats.max_active, self.active)

    async def acquire(self) -> bool:
        """Take a slot; True when the call had to wait in the queue for it."""
        if self.active < self.max_concurrency and not self._waiters:
            self._admit()
            return False
        if len(self._waiters) >= self.max_queue:
            self.stats.rejected += 1
            raise ResourceLimitError(
                f"external node {self.label}: {self.active} calls in flight "
                f"(max_concurrency={self.max_concurrency}) and {len(self._waiters)} queued "
                f"(max_queue={self.max_queue}); call rejected")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self.stats.queued += 1
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await fut
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just as the wait timed out
            self.stats.rejected += 1
            raise ResourceLimitError(
                f"external node {self.label}: queued longer than queue_timeout_ms="
                f"{int(self.queue_timeout_s * 1000)}; call rejected") from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed to us as we were cancelled
            raise
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)
        return True

    def release(self) -> None:
        """End one call; its slot goes to the oldest waiter."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                self.stats.admitted += 1
                fut.set_result(None)  # the slot moves over: ``active`` is unchanged
                return
        self.active = max(0, self.active - 1)
