"""Fallback clock used when no :class:`rspp.kernel._handles.Clock` is injected."""

from __future__ import annotations

import asyncio
import time

__all__ = ["LoopClock"]


class LoopClock:
    """Reads the OS clocks; implements the ``Clock`` protocol structurally."""

    __slots__ = ()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
