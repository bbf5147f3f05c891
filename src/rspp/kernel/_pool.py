"""Shared execution pool: per-key concurrency limits with fairness keys (F-105, F-109).

Async node workers of every session acquire a slot of their node's pool key
(node type by default) before processing. When a key is saturated, waiters
queue per fairness key (for example the tenant or session) and freed slots go
round-robin across fairness keys, so one noisy session cannot starve others.

Fairness is measured per fairness key (F-174, NF-033): slots granted, times it
had to wait, and the most grants that went to other keys while one of its
waiters queued (``max_overtaken``). Round-robin bounds that by the number of
other keys with waiters; a larger value is a starvation incident.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["ExecutionPool", "FairnessStats", "PoolKeyStats", "TurnPoolWaits"]

#: turns a session's :class:`TurnPoolWaits` remembers before it forgets the oldest
_MAX_TURNS = 1024


class TurnPoolWaits:
    """What one session's turns waited for shared pool slots (F-105 isolation).

    Each limited acquire of a turn's work adds the time it took (queued or not); the
    turn driver takes a turn's total into its OR-02 evidence (``pool_wait_ms``) at the
    terminal. Bounded: a turn never taken (work after its terminal) is forgotten once
    ``_MAX_TURNS`` newer turns have waited.
    """

    __slots__ = ("_ns",)

    def __init__(self) -> None:
        self._ns: dict[str, int] = {}

    def add(self, turn_id: str | None, ns: int) -> None:
        if turn_id is None:
            return
        waits = self._ns
        if turn_id in waits:
            waits[turn_id] += ns
            return
        if len(waits) >= _MAX_TURNS:
            del waits[next(iter(waits))]
        waits[turn_id] = ns

    def take(self, turn_id: str) -> int:
        """The turn's total wait in whole milliseconds (0: none), forgotten afterwards."""
        return self._ns.pop(turn_id, 0) // 1_000_000


class FairnessStats:
    """One fairness key's service at one pool key (see the module docstring)."""

    __slots__ = ("granted", "max_overtaken", "overtaken", "waited")

    def __init__(self) -> None:
        self.granted = self.waited = self.max_overtaken = self.overtaken = 0


class PoolKeyStats:
    __slots__ = ("acquired", "active", "limit", "max_active", "waited", "workers_reused")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.active = self.max_active = self.acquired = self.waited = 0
        self.workers_reused = 0

    def as_dict(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in self.__slots__}


class _Key:
    __slots__ = ("fair", "order", "stats", "waiters")

    def __init__(self, limit: int | None) -> None:
        self.stats = PoolKeyStats(limit)
        self.waiters: dict[str, deque[asyncio.Future[None]]] = {}
        self.order: deque[str] = deque()
        self.fair: dict[str, FairnessStats] = {}

    def granted(self, fairness_key: str) -> None:
        """A slot went to ``fairness_key``: every other key still waiting was overtaken."""
        mine = self.fair.setdefault(fairness_key, FairnessStats())
        mine.granted += 1
        mine.overtaken = 0
        for other, q in self.waiters.items():
            if other != fairness_key and any(not f.done() for f in q):
                st = self.fair.setdefault(other, FairnessStats())
                st.overtaken += 1
                st.max_overtaken = max(st.max_overtaken, st.overtaken)


class ExecutionPool:
    """Process-wide slots shared by all sessions of a runtime."""

    def __init__(self, limits: dict[str, int] | None = None) -> None:
        self._keys: dict[str, _Key] = {}
        for key, limit in (limits or {}).items():
            self.set_limit(key, limit)

    def set_limit(self, key: str, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"pool limit for {key!r} must be >= 1 (got {limit})")
        k = self._keys.get(key)
        if k is None:
            self._keys[key] = _Key(limit)
        else:
            k.stats.limit = limit

    def limited(self, key: str) -> bool:
        k = self._keys.get(key)
        return k is not None and k.stats.limit is not None

    async def acquire(self, key: str, fairness_key: str = "") -> None:
        """Take a slot of ``key``; waits (fairly) when the limit is reached."""
        k = self._keys.get(key)
        if k is None:
            k = self._keys[key] = _Key(None)
        st = k.stats
        if st.limit is None or st.active < st.limit:
            self._take(st)
            k.granted(fairness_key)
            return
        st.waited += 1
        k.fair.setdefault(fairness_key, FairnessStats()).waited += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        q = k.waiters.get(fairness_key)
        if q is None:
            q = k.waiters[fairness_key] = deque()
        if not q:
            k.order.append(fairness_key)
        q.append(fut)
        try:
            await fut  # the releaser already counted this slot as ours
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(key)
            elif fut in q:
                q.remove(fut)
            raise

    def _take(self, st: PoolKeyStats) -> None:
        st.active += 1
        st.acquired += 1
        if st.active > st.max_active:
            st.max_active = st.active

    def release(self, key: str) -> None:
        """Free a slot; hands it to the next fairness key in round-robin order."""
        k = self._keys[key]
        st = k.stats
        st.active -= 1
        while k.order:
            fk = k.order.popleft()
            q = k.waiters[fk]
            while q:
                fut = q.popleft()
                if not fut.done():
                    if q:
                        k.order.append(fk)
                    self._take(st)
                    st.workers_reused += 1
                    fut.set_result(None)
                    k.granted(fk)
                    return
        return

    def stats(self, key: str) -> dict[str, int | None]:
        k = self._keys.get(key)
        return k.stats.as_dict() if k else PoolKeyStats(None).as_dict()

    def fairness(self, key: str) -> dict[str, FairnessStats]:
        """Per fairness key: slots granted, waits and the most it was overtaken."""
        k = self._keys.get(key)
        return dict(k.fair) if k else {}

    def waiting(self, key: str) -> int:
        """Acquires of ``key`` queued now."""
        k = self._keys.get(key)
        return 0 if k is None else sum(1 for q in k.waiters.values() for f in q
                                       if not f.done())

    def keys(self) -> list[str]:
        return sorted(self._keys)
