"""Waiting for a session to move (the token route's long poll, F-095, F-113).

A client whose runtime went silent asks for a fresh token of its session naming where
it was (``moved_from``: runtime and lease epoch) and how long it will wait
(``wait_ms``). The control plane answers as soon as the session is placed elsewhere or
at a newer epoch - the moment the failover monitor (or a migration, a lease rotation,
the session's end) commits in this process - or when the wait is over (or its client
disconnected), with wherever the session is then. The client does not poll: one request
per move, answered by the commit that moved it.

:class:`PlacementWatch` is the in-process wake-up: writers call :meth:`changed` after
their transaction committed; a waiter registers before it reads the session, so a move
committed between its read and its wait still wakes it. Waiters re-read the store at
least every ``recheck_s`` (3 s) as well (a move made by another control-plane process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

__all__ = ["PlacementWatch"]

T = TypeVar("T")


class PlacementWatch:
    """Wakes the waiters of sessions whose placement changed (see the module docstring)."""

    def __init__(self, recheck_s: float = 3.0) -> None:
        self.recheck_s = recheck_s
        self._waiting: dict[str, tuple[asyncio.Event, int]] = {}
        self._closed = False

    def changed(self, session_ids: Iterable[str]) -> None:
        """The placement of ``session_ids`` changed (committed): wake their waiters."""
        for sid in session_ids:
            entry = self._waiting.pop(sid, None)
            if entry is not None:
                entry[0].set()

    def wake_all(self) -> None:
        """Answer every waiter now, and later ones at once (the control plane closes)."""
        self._closed = True
        self.changed(list(self._waiting))

    @property
    def closed(self) -> bool:
        """:meth:`wake_all` was called: the control plane is stopping."""
        return self._closed

    @property
    def waiting(self) -> int:
        """Sessions someone is waiting on now."""
        return len(self._waiting)

    def _register(self, sid: str) -> asyncio.Event:
        ev, n = self._waiting.get(sid, (asyncio.Event(), 0))
        self._waiting[sid] = (ev, n + 1)
        return ev

    def _release(self, sid: str, ev: asyncio.Event) -> None:
        entry = self._waiting.get(sid)
        if entry is None or entry[0] is not ev:
            return  # woken (and dropped) meanwhile
        if entry[1] <= 1:
            del self._waiting[sid]
        else:
            self._waiting[sid] = (ev, entry[1] - 1)

    async def until(self, session_id: str, read: Callable[[], Awaitable[T]],
                    done: Callable[[T], bool], wait_s: float,
                    gone: asyncio.Event | None = None) -> T:
        """``read()`` until ``done`` says the session moved, or ``wait_s`` passed, or
        ``gone`` is set (the waiting client disconnected); the last value read."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            ev = self._register(session_id)
            try:
                value = await read()
                left = deadline - loop.time()
                if done(value) or left <= 0 or self._closed or (gone and gone.is_set()):
                    return value
                wakes = [asyncio.ensure_future(ev.wait())]
                if gone is not None:
                    wakes.append(asyncio.ensure_future(gone.wait()))
                try:
                    await asyncio.wait(wakes, timeout=min(left, self.recheck_s),
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in wakes:
                        w.cancel()
                    await asyncio.gather(*wakes, return_exceptions=True)
            finally:
                self._release(session_id, ev)
