"""Per-runtime request coalescing: the calls of many sessions go to the control plane together.

A :class:`Coalescer` queues one call per key (a session id) and sends the queued calls
as one batch: the first call after a quiet spell goes out after ``linger_s``; the calls
made while a batch is in flight go out together in the next one, so at most one batch
per runtime is in flight and the control plane's request rate stays flat however many
sessions a runtime holds. A key queued again before its batch left keeps only its last
value (last writer wins); both callers get that value's result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from rspp.controlplane import CPError

__all__ = ["Coalescer", "batch_refused"]

V = TypeVar("V")
R = TypeVar("R")

#: sends one batch: key -> value; answers key -> result or the exception for that key
SendBatch = Callable[[dict[str, V]], Awaitable[dict[str, R | BaseException]]]


_UNANSWERED = object()


def batch_refused(exc: CPError) -> bool:
    """The control plane has no such batch route (an older one) or refuses it to this key
    (a tenant-scoped key): the caller goes back to one request per session."""
    return exc.status in (403, 404, 405) and exc.field != "server"


def _retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class Coalescer(Generic[V, R]):
    """Coalesces calls into batches (see the module docstring)."""

    def __init__(self, send: SendBatch[V, R], *, linger_s: float = 0.0,
                 name: str = "rspp-batch") -> None:
        self._send = send
        self.linger_s = linger_s
        self.name = name
        self.batches = 0
        self.calls = 0
        self._queued: dict[str, tuple[V, list[asyncio.Future[R]]]] = {}
        self._sender: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return len(self._queued)

    async def call(self, key: str, value: V) -> R:
        """Queue ``value`` under ``key`` and wait for its result (raises its exception)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[R] = loop.create_future()
        done.add_done_callback(_retrieved)  # a caller that gave up leaves no loose exception
        waiting = self._queued.get(key)
        waiters = [*waiting[1], done] if waiting is not None else [done]
        self._queued[key] = (value, waiters)
        self.calls += 1
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._run(), name=self.name)
        return await asyncio.shield(done)

    async def _run(self) -> None:
        while self._queued:
            # the first call of a quiet spell waits ``linger_s``; the calls made meanwhile
            # (and those made while the previous batch was in flight) join it
            await asyncio.sleep(self.linger_s)
            queued, self._queued = self._queued, {}
            try:
                results = await self._send({k: v for k, (v, _) in queued.items()})
            except Exception as exc:  # the whole batch failed: every caller hears why
                results = {k: exc for k in queued}
            self.batches += 1
            for key, (_, waiters) in queued.items():
                found = results.get(key, _UNANSWERED)
                for fut in waiters:
                    if fut.done():
                        continue
                    if found is _UNANSWERED:
                        fut.set_exception(LookupError(f"{key} was not answered"))
                    elif isinstance(found, BaseException):
                        fut.set_exception(found)
                    else:
                        fut.set_result(found)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        """Stop sending; callers still waiting are cancelled."""
        task, self._sender = self._sender, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for _, waiters in self._queued.values():
            for fut in waiters:
                fut.cancel()
        self._queued.clear()
