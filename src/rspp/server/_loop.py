"""The event loop a runtime process runs on: uvloop (libuv), the stock asyncio loop as a fallback.

A runtime serving hundreds of live sessions spends most of its time in the event
loop itself (socket reads and writes, timers, task wake-ups); uvloop does that
work in C. ``rspp serve`` and the capacity benchmarks run on :func:`loop_factory`.
``RSPP_EVENT_LOOP=asyncio`` selects the stock loop (comparisons, debugging).

:func:`settle_heap` runs once the runtime has started. Live media allocates only
short-lived objects per frame and no reference cycles (every collection of a
streaming runtime finds nothing to free), but a full collection visits every tracked
object: with the start-up heap (modules, classes, the app, ~130k objects) it stalls
the loop of a runtime of hundreds of sessions for tens of milliseconds, every frame
of every session late at once. The start-up heap is moved out of the collector's
reach (``gc.freeze``) and the youngest generation collected less often, so fewer
objects that die within a few frames are promoted towards a full collection.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "loop_name", "run", "settle_heap"]

#: allocations (net) between two collections of the youngest generation (CPython: 700)
GC_YOUNG_THRESHOLD = 10_000

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


def settle_heap() -> int:
    """After start-up: freeze the heap out of the collector's scans and collect the
    youngest generation every :data:`GC_YOUNG_THRESHOLD` allocations (see the module
    docstring). Returns how many objects are frozen. Calling it again freezes what was
    allocated since (the start-up of a later component)."""
    gc.collect()
    gc.freeze()
    young, *older = gc.get_threshold()
    if young:  # 0: the collector is disabled; left so
        gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)
    return gc.get_freeze_count()
