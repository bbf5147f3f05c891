"""The event loop a replay on virtual time runs on: runnable callbacks first, I/O polled
only when nothing is runnable.

asyncio's loop asks the selector for I/O events on every iteration, with a zero timeout
while callbacks are ready. A replay on virtual time wakes the loop ~27 times per turn
(node workers, the kernel scheduler, the rig's settling yields), so it made a system
call per wake-up to learn that nothing happened: it has no I/O of its own (the recording
is read synchronously, the clock is virtual). :class:`ReadyFirstSelector` answers "no
events" without asking the kernel while the loop's ready queue is non-empty; once
nothing is runnable it polls (and blocks) as asyncio's does.

What this changes is only *when* I/O readiness is noticed, never the order of the
callbacks that are ready: timers (``call_later``/``call_at``: the node watchdogs, the
driver's bounded waits) move to the ready queue on every iteration exactly as before,
and ``call_soon_threadsafe`` puts its callback straight into the ready queue (the
self-pipe byte it writes only wakes a blocked poll). I/O completions on virtual time
land at no recorded point anyway, so a replay's output cannot depend on when they are
seen. Real-time replays (``--real-time``: network providers, the system clock) keep
asyncio's default loop.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["ReadyFirstSelector", "new_replay_loop", "run_replay"]

_T = TypeVar("_T")


class ReadyFirstSelector(selectors.DefaultSelector):
    """The platform selector, skipping the zero-timeout poll while callbacks are ready."""

    #: the loop's ready queue (set by :func:`new_replay_loop`)
    ready: Any = ()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout == 0 and self.ready:
            return []  # something is runnable: asyncio would only have polled
        result: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
        return result


def new_replay_loop() -> asyncio.AbstractEventLoop:
    """A selector event loop over a :class:`ReadyFirstSelector`."""
    selector = ReadyFirstSelector()
    loop = asyncio.SelectorEventLoop(selector)
    selector.ready = loop._ready  # type: ignore[attr-defined]
    return loop


def run_replay(main: Coroutine[Any, Any, _T], *, real_time: bool = False) -> _T:
    """``asyncio.run(main)``, on :func:`new_replay_loop` unless ``real_time``."""
    if real_time:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=new_replay_loop) as runner:
        return runner.run(main)
