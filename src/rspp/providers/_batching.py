"""Dynamic batching of compatible provider calls across a runtime's sessions (F-051).

Some provider protocols take many inputs in one request and answer each by its index
(the OpenAI Completions API takes ``prompt`` as an array and streams ``choices[]`` with
their ``index``; vLLM, llama.cpp server and TGI speak it). A server that batches on the
accelerator answers a batch of N at nearly the cost of one, so a runtime that serves many
sessions can send one request for the calls that arrive together.

:class:`ProviderBatcher` is the runtime-wide collector. An adapter submits one call
(:meth:`ProviderBatcher.submit`) under a *key* naming what must match for calls to share a
request (endpoint, model, generation parameters, credentials). Calls of one key wait in a
lane until one of:

* the lane holds ``max_batch_size`` calls (sent at once);
* the earliest *due time* among them passes. A call's due time is its arrival plus
  ``max_wait_ms``, capped at :data:`BUDGET_SHARE` of the call's own time limit (its
  attempt's timeout, which is the turn's remaining budget when that is smaller): a call
  with a tight latency budget makes its lane flush early, it is never held for the
  others.

The lane's calls then go out as one :class:`Batch` through the adapter's ``send``, run as
a task the batcher owns; the adapter hands each answer back by index
(:meth:`Batch.deliver`, :meth:`Batch.finish`, :meth:`Batch.fail`). Each call reads its own
:class:`BatchMember` stream, bounded (:data:`MEMBER_BOUND` pieces; a call that falls that
far behind fails alone, it never stalls the others). A call that leaves (its session
cancelled it, barge-in) is dropped from its lane if not yet sent, or its answers are
discarded if it was; once every call of a sent batch has left, the request is cancelled.
A failure of the whole request (HTTP status, disconnect) fails every call still waiting
for its answer; a failure the protocol reports per choice fails that call only.

:class:`BatchStats` counts batch sizes and the time calls waited to be sent, per provider
id, for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from rspp.providers._normalise import normalise_error
from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._policy import PolicyError

__all__ = [
    "BUDGET_SHARE",
    "MEMBER_BOUND",
    "WAIT_BUCKETS_MS",
    "Batch",
    "BatchMember",
    "BatchStats",
    "BatchingPolicy",
    "ProviderBatcher",
]

#: a call waits in the batcher at most this share of its own time limit
BUDGET_SHARE = 0.1
#: answer pieces a call may have unread before it fails alone (``overload``)
MEMBER_BOUND = 4096
#: the largest ``max_batch_size`` and ``max_wait_ms`` a spec may set
MAX_BATCH_SIZE = 256
MAX_WAIT_MS = 60_000
#: buckets of the wait-time histogram (ms)
WAIT_BUCKETS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0)

_DEFAULT_SIZE = 8
_DEFAULT_WAIT_MS = 10.0

T = TypeVar("T")
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class BatchingPolicy:
    """``batching:`` of a provider entry: how many calls one request takes, how long the
    first of them may wait for the others."""

    max_batch_size: int = _DEFAULT_SIZE
    max_wait_ms: float = _DEFAULT_WAIT_MS

    @classmethod
    def from_config(cls, value: object, path: str = "batching") -> BatchingPolicy:
        """Decode ``{max_batch_size: N, max_wait_ms: M}``; a bad value raises a
        :class:`~rspp.providers.PolicyError` naming ``path.field``."""
        if not isinstance(value, Mapping):
            raise PolicyError(f"{path}={value!r}: must be a mapping such as "
                              "{max_batch_size: 8, max_wait_ms: 10}")
        unknown = sorted(str(k) for k in value if k not in ("max_batch_size", "max_wait_ms"))
        if unknown:
            raise PolicyError(f"{path}.{unknown[0]}: unknown field; batching takes "
                              "max_batch_size and max_wait_ms")
        size = value.get("max_batch_size", _DEFAULT_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
            raise PolicyError(f"{path}.max_batch_size={size!r}: must be an integer from 1 "
                              f"to {MAX_BATCH_SIZE}")
        wait = value.get("max_wait_ms", _DEFAULT_WAIT_MS)
        if (isinstance(wait, bool) or not isinstance(wait, int | float)
                or not 0 <= wait <= MAX_WAIT_MS or not math.isfinite(wait)):
            raise PolicyError(f"{path}.max_wait_ms={wait!r}: must be a number of "
                              f"milliseconds from 0 to {MAX_WAIT_MS}")
        return cls(max_batch_size=size, max_wait_ms=float(wait))

    def hold_s(self, time_limit_ms: float | None) -> float:
        """How long a call with ``time_limit_ms`` left may wait to be sent (seconds)."""
        wait = self.max_wait_ms
        if time_limit_ms is not None:
            wait = min(wait, BUDGET_SHARE * max(0.0, time_limit_ms))
        return wait / 1000


class _Done:
    """End of a member's answer stream."""


_DONE = _Done()


class BatchMember(Generic[T]):
    """One call waiting in (or sent with) a batch: its input and its answer stream."""

    __slots__ = ("_end", "_error", "_items", "_lane", "_wake", "arrived", "batch", "due",
                 "input", "left", "provider_id", "sent_at")

    def __init__(self, item: T, *, provider_id: str, arrived: float, due: float) -> None:
        self.input = item
        self.provider_id = provider_id
        self.arrived = arrived
        self.due = due
        self.sent_at: float | None = None
        self.batch: Batch[T] | None = None
        self._lane: Hashable = None
        self.left = False
        self._items: deque[str] = deque()
        self._wake = asyncio.Event()
        self._end: _Done | None = None
        self._error: ProviderCallError | None = None

    @property
    def finished(self) -> bool:
        return self._end is not None

    def _push(self, piece: str) -> None:
        if self.finished or self.left:
            return
        if len(self._items) >= MEMBER_BOUND:
            self._close(ProviderCallError(
                f"the call fell {MEMBER_BOUND} pieces behind its batch", outcome=Outcome.OVERLOAD,
                provider=self.provider_id, code="batch_member_overflow"))
            return
        self._items.append(piece)
        self._wake.set()

    def _close(self, error: ProviderCallError | None = None) -> None:
        if self.finished:
            return
        self._end, self._error = _DONE, error
        self._wake.set()

    async def answers(self) -> AsyncIterator[str]:
        """The call's answer pieces; raises the call's error if it failed."""
        while True:
            while self._items:
                yield self._items.popleft()
            if self._end is not None:
                if self._error is not None:
                    raise self._error
                return
            self._wake.clear()
            await self._wake.wait()


class Batch(Generic[T]):
    """The calls one request carries; the adapter answers them by index."""

    def __init__(self, batch_id: str, members: tuple[BatchMember[T], ...]) -> None:
        self.batch_id = batch_id
        self.members = members
        self.task: asyncio.Task[None] | None = None

    @property
    def inputs(self) -> tuple[T, ...]:
        return tuple(m.input for m in self.members)

    @property
    def size(self) -> int:
        return len(self.members)

    def wanted(self, index: int) -> bool:
        """Whether call ``index`` still waits for answers (it neither ended nor left)."""
        if not 0 <= index < len(self.members):
            return False
        m = self.members[index]
        return not (m.finished or m.left)

    def deliver(self, index: int, piece: str) -> None:
        if 0 <= index < len(self.members):
            self.members[index]._push(piece)

    def finish(self, index: int) -> None:
        if 0 <= index < len(self.members):
            self.members[index]._close()

    def fail(self, index: int, error: ProviderCallError) -> None:
        if 0 <= index < len(self.members):
            self.members[index]._close(error)

    def fail_open(self, error: ProviderCallError) -> None:
        """Fail every call still waiting for its answer."""
        for m in self.members:
            m._close(error)

    def _left(self, member: BatchMember[T]) -> None:
        """``member`` left; once no call wants answers and one left before its end, the
        request is cancelled (when every call got its end, the response is read to its
        end instead: the connection is kept)."""
        if member.finished or self.task is None:
            return
        if all(m.left or m.finished for m in self.members):
            self.task.cancel()


Send = Callable[[Batch[T]], Awaitable[None]]


@dataclass(slots=True)
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs, ``+Inf`` last (Prometheus histogram form)."""
        out, acc = [], 0
        for bound, n in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            acc += n
            out.append((bound, acc))
        return out


class BatchStats:
    """Batch sizes and per-call wait per provider id (read by the ``/metrics`` collector)."""

    def __init__(self) -> None:
        self.sizes: dict[str, _Histogram] = {}
        self.waits: dict[str, _Histogram] = {}
        #: requests sent and calls they carried, per provider id
        self.requests: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def sent(self, provider_id: str, size: int, waits_ms: list[float]) -> None:
        size_buckets = tuple(float(2 ** i) for i in range(9))  # 1 .. 256
        self.sizes.setdefault(provider_id, _Histogram(size_buckets)).observe(size)
        hist = self.waits.setdefault(provider_id, _Histogram(WAIT_BUCKETS_MS))
        for wait in waits_ms:
            hist.observe(wait)
        self.requests[provider_id] = self.requests.get(provider_id, 0) + 1
        self.calls[provider_id] = self.calls.get(provider_id, 0) + size


class _Lane(Generic[T]):
    __slots__ = ("pending", "send", "size", "timer")

    def __init__(self, size: int, send: Send[T]) -> None:
        self.size = size
        self.send = send
        self.pending: list[BatchMember[T]] = []
        self.timer: asyncio.TimerHandle | None = None


class ProviderBatcher:
    """Collects compatible calls of a runtime's sessions into batched requests (F-051).

    One per runtime process (``rspp serve``); an adapter configured with ``batching``
    and given none builds its own. :meth:`aclose` cancels the requests in flight.
    """

    def __init__(self) -> None:
        self._lanes: dict[Hashable, _Lane[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.stats = BatchStats()

    def submit(self, key: Hashable, item: T, *, provider_id: str, policy: BatchingPolicy,
               time_limit_ms: float | None, send: Send[T]) -> BatchMember[T]:
        """Queue one call under ``key``; its answers come through the returned member.

        ``send`` is the adapter's request for a batch of this key (the first call's is used
        for the lane); the member must be released with :meth:`leave`."""
        if self._closed:
            raise ProviderCallError("the runtime is stopping", outcome=Outcome.DISCONNECTED,
                                    provider=provider_id, code="batcher_closed")
        loop = asyncio.get_running_loop()
        now = loop.time()
        member = BatchMember(item, provider_id=provider_id, arrived=now,
                             due=now + policy.hold_s(time_limit_ms))
        lane_key = (key, policy.max_batch_size)
        lane: _Lane[T] | None = self._lanes.get(lane_key)
        if lane is None:
            lane = _Lane(policy.max_batch_size, send)
            self._lanes[lane_key] = lane
        member._lane = lane_key
        lane.pending.append(member)
        if len(lane.pending) >= lane.size:
            self._flush(lane_key)
        else:
            self._arm(lane_key, lane, loop)
        return member

    def leave(self, member: BatchMember[T]) -> None:
        """The call is done with its answers (read to the end, failed, or cancelled)."""
        if member.left:
            return
        member.left = True
        if member.batch is not None:
            member.batch._left(member)
            return
        lane = self._lanes.get(member._lane)
        if lane is not None and member in lane.pending:
            lane.pending.remove(member)
            if not lane.pending:
                self._drop(member._lane)
            else:
                self._arm(member._lane, lane, asyncio.get_running_loop())

    def _arm(self, lane_key: Hashable, lane: _Lane[T], loop: asyncio.AbstractEventLoop) -> None:
        due = min(m.due for m in lane.pending)
        if lane.timer is not None:
            if lane.timer.when() <= due:
                return
            lane.timer.cancel()
        lane.timer = loop.call_at(due, self._flush, lane_key)

    def _drop(self, lane_key: Hashable) -> None:
        lane = self._lanes.pop(lane_key, None)
        if lane is not None and lane.timer is not None:
            lane.timer.cancel()

    def _flush(self, lane_key: Hashable) -> None:
        lane = self._lanes.get(lane_key)
        if lane is None:
            return
        self._drop(lane_key)
        members = tuple(lane.pending)
        if not members:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        batch: Batch[Any] = Batch(f"batch-{next(_ids)}", members)
        for m in members:
            m.batch, m.sent_at = batch, now
        self.stats.sent(members[0].provider_id, len(members),
                        [(now - m.arrived) * 1000 for m in members])
        batch.task = loop.create_task(self._run(batch, lane.send))
        self._tasks.add(batch.task)
        batch.task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _run(batch: Batch[T], send: Send[T]) -> None:
        provider = batch.members[0].provider_id
        try:
            await send(batch)
        except asyncio.CancelledError:
            batch.fail_open(ProviderCallError(
                "the batched request was cancelled", outcome=Outcome.CANCELLED,
                provider=provider, code="batch_cancelled"))
            raise
        except Exception as exc:
            batch.fail_open(normalise_error(exc, provider))
        batch.fail_open(ProviderCallError(
            "the batched response ended without an answer for this call",
            outcome=Outcome.DISCONNECTED, provider=provider, code="batch_no_answer"))

    @property
    def in_flight(self) -> int:
        """Batched requests being sent now."""
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel queued calls and requests in flight (the runtime is stopping)."""
        self._closed = True
        for lane_key in list(self._lanes):
            lane = self._lanes[lane_key]
            self._drop(lane_key)
            for m in lane.pending:
                m._close(ProviderCallError("the runtime is stopping",
                                           outcome=Outcome.DISCONNECTED,
                                           provider=m.provider_id, code="batcher_closed"))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
