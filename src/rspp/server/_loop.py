"""The event loop a runtime process runs on: uvloop (libuv), the stock asyncio loop as a fallback.

A runtime serving hundreds of live sessions spends most of its time in the event
loop itself (socket reads and writes, timers, task wake-ups); uvloop does that
work in C. ``rspp serve`` and the capacity benchmarks run on :func:`loop_factory`.
``RSPP_EVENT_LOOP=asyncio`` selects the stock loop (comparisons, debugging).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "loop_name", "run"]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """A new-loop factory: uvloop's unless ``RSPP_EVENT_LOOP=asyncio`` or uvloop is absent."""
    if os.environ.get("RSPP_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:  # a platform without uvloop wheels (Windows): the stock loop
            pass
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``uvloop`` or ``asyncio``: which loop runs ``loop`` (the running one by default)."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on :func:`loop_factory`'s loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
