"""Shedding records and the automatic degrade posture of a running session (F-148, F-048).

Every run of data an edge sheds under overload (a bound exceeded: items, bytes, time
in queue, latency contribution, or a block that hit ``max_block_time``; not a
cancel or a merge) becomes the contract's shed records, in order: the ``shed``
decision outcome (RK-25, phase ``scheduling_point``, scope ``edge_enqueue``) and the
``shed`` signal (RK-25), both with reason ``<bound>:<edge>:<count>``; the edge's
``drop_notice`` lineage marker precedes them.

With an ``overload`` policy in the spec, sustained shedding (``shed_threshold``
sheds within ``window_ms``) puts the session in its degraded posture: a ``degrade``
signal (RK-17, reason ``overload_degraded:<n>_sheds:<modality>=<provider>,...``) and
the next turns use the declared ``degrade_providers``. After ``recover_after_ms``
without a shed the session recovers (``degrade`` signal, reason
``overload_recovered:<quiet>ms``) and the normal providers come back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from rspp.contracts import (
    Emitter,
    OutcomeEmitter,
    OutcomeKind,
    OutcomePhase,
    OutcomeScope,
    SignalName,
)
from rspp.kernel._buffer import EdgeBuffer
from rspp.kernel._handles import Clock
from rspp.kernel._identity import RecordStamp
from rspp.kernel._session import SessionActor

__all__ = ["OverloadPosture"]


class OverloadPosture:
    """Shed records of one session plus its degrade posture (see the module docstring)."""

    def __init__(self, session: SessionActor, stamp: RecordStamp,
                 emit: Callable[[msgspec.Struct], None], *, epoch: Callable[[], int],
                 policy: Any = None) -> None:
        self.clock: Clock = session.clock
        self.stamp = stamp
        self._emit = emit
        self._epoch = epoch
        self.policy = policy
        self.sheds = 0
        self.degraded = False
        #: called with the providers to use (``{}``: back to normal) when the posture changes
        self.on_change: Callable[[Mapping[str, str]], None] | None = None
        self._recent: deque[int] = deque()
        self._last_shed_ns = 0
        self._watch: asyncio.Task[None] | None = None
        for buf in (*session.edge_buffers.values(), *(b for b, _ in session.entries.values())):
            buf.on_shed = self._shed

    @property
    def providers(self) -> Mapping[str, str]:
        """The providers the posture asks for now (empty unless degraded)."""
        if not self.degraded or self.policy is None:
            return {}
        return {str(k): str(v) for k, v in self.policy.degrade_providers.items()}

    def _shed(self, buf: EdgeBuffer, reason: str, first: int, last: int,
              turn_id: str | None) -> None:
        n = last - first + 1
        why = f"{reason}:{buf.edge_id}:{n}"
        self.sheds += n
        self._emit(self.stamp.outcome(OutcomeKind.SHED, OutcomePhase.SCHEDULING_POINT,
                                      OutcomeScope.EDGE_ENQUEUE, OutcomeEmitter.RK_25,
                                      reason=why, turn_id=turn_id))
        self._emit(self.stamp.signal(SignalName.SHED, Emitter.RK_25,
                                     authority_epoch=self._epoch(), turn_id=turn_id,
                                     reason=why, edge_id=buf.edge_id, session_scoped=True))
        p = self.policy
        if p is None:
            return
        now = self.clock.monotonic_ns()
        self._last_shed_ns = now
        recent = self._recent
        recent.append(now)
        horizon = now - p.window_ms * 1_000_000
        while recent and recent[0] < horizon:
            recent.popleft()
        if not self.degraded and len(recent) >= p.shed_threshold:
            self.degraded = True
            chosen = ",".join(f"{m}={pid}" for m, pid in sorted(self.providers.items()))
            self._signal(f"overload_degraded:{len(recent)}_sheds_in_{p.window_ms}ms:{chosen}")
            if self.on_change is not None:
                self.on_change(self.providers)
            self._start_watch()

    def _signal(self, reason: str) -> None:
        self._emit(self.stamp.signal(SignalName.DEGRADE, Emitter.RK_17,
                                     authority_epoch=self._epoch(), reason=reason))

    def _start_watch(self) -> None:
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(self._recover(),
                                                                  name="overload-recovery")

    async def _recover(self) -> None:
        """Wait until ``recover_after_ms`` passed without a shed, then leave the posture."""
        quiet_ns = self.policy.recover_after_ms * 1_000_000
        while True:
            due = self._last_shed_ns + quiet_ns - self.clock.monotonic_ns()
            if due <= 0:
                break
            await self.clock.sleep(due / 1e9)
        self.degraded = False
        self._recent.clear()
        self._signal(f"overload_recovered:{self.policy.recover_after_ms}ms_without_shed")
        if self.on_change is not None:
            self.on_change({})

    async def aclose(self) -> None:
        task, self._watch = self._watch, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
