"""Cancellation scopes (RK-16): session > turn > node > provider_invocation.

A :class:`CancelScope` is the :class:`~rspp.kernel._handles.CancelToken` a node
sees. :meth:`CancelScopeTree.cancel` *accepts* a cancel synchronously, in this
order, before it returns:

1. the scope and all its descendants are marked cancelled (reason code, mode);
2. the scope's egress fence is applied: from now on :meth:`EgressFence.admit`
   refuses every output of the scope (no ``output_accepted`` /
   ``playback_started``), F-175, F-033;
3. registered queue flushers run (queued output of the scope is dropped) and
   node reset hooks are queued for the next turn (F-038);
4. hard-mode tasks are cancelled at once; soft-mode tasks may finish their
   in-flight chunk within the grace window (75 ms in simple/v1) and are then
   force-terminated (F-041, F-037).

Audio already played before the commit point is never retracted: the fence
only ever refuses *future* outputs and reports the committed position (F-039).
Cancel latency is measured per node (acceptance -> task done) and end to end
(acceptance -> last task done), F-040.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rspp.contracts import CancelScopeKind, ControlSignal, Emitter, SignalName
from rspp.errors import RuntimeKernelError
from rspp.kernel._handles import Clock
from rspp.kernel._identity import RecordStamp

__all__ = [
    "CancelError",
    "CancelLatency",
    "CancelMode",
    "CancelReason",
    "CancelScope",
    "CancelScopeTree",
    "EgressFence",
    "propagate_cancel",
]

DEFAULT_GRACE_MS = 75
_PARENT_KIND = {
    CancelScopeKind.TURN: CancelScopeKind.SESSION,
    CancelScopeKind.NODE: CancelScopeKind.TURN,
    CancelScopeKind.PROVIDER_INVOCATION: CancelScopeKind.NODE,
}


class CancelError(RuntimeKernelError):
    """Invalid use of cancellation scopes (wrong nesting, unknown scope)."""


class CancelMode(StrEnum):
    SOFT = "soft"  # finish the in-flight chunk, then stop (within the grace window)
    HARD = "hard"  # stop now and clear buffered output


class CancelReason(StrEnum):
    """Reason codes of cancellations (F-035)."""

    BARGE_IN = "barge_in"
    TIMEOUT = "timeout"
    USER_CANCEL = "user_cancel"
    PROVIDER_ERROR = "provider_error"
    AUTHORITY_LOSS = "authority_loss"
    SESSION_END = "session_end"


@dataclass(slots=True)
class CancelLatency:
    """Timings of one accepted cancel, in nanoseconds of the injected clock."""

    scope_id: str
    reason: CancelReason
    mode: CancelMode
    accepted_ns: int
    fence_applied_ns: int
    node_stopped_ns: dict[str, int] = field(default_factory=dict)
    forced: list[str] = field(default_factory=list)
    acknowledged_ns: dict[str, int] = field(default_factory=dict)

    def node_ms(self) -> dict[str, float]:
        return {n: (t - self.accepted_ns) / 1e6 for n, t in self.node_stopped_ns.items()}

    @property
    def end_to_end_ms(self) -> float:
        last = max(self.node_stopped_ns.values(), default=self.fence_applied_ns)
        return (last - self.accepted_ns) / 1e6


class CancelScope:
    """One node of the cancellation tree; also the node-facing :class:`CancelToken`."""

    __slots__ = (
        "_cancelled",
        "_clock",
        "_latency",
        "_reason",
        "children",
        "flushers",
        "kind",
        "mode",
        "parent",
        "resets",
        "scope_id",
        "tasks",
    )

    def __init__(
        self,
        kind: CancelScopeKind,
        scope_id: str,
        parent: CancelScope | None,
        mode: CancelMode = CancelMode.HARD,
    ) -> None:
        self.kind = kind
        self.scope_id = scope_id
        self.parent = parent
        self.mode = mode
        self.children: dict[str, CancelScope] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self.flushers: list[Callable[[], int]] = []
        self.resets: list[Callable[[], None]] = []
        self._cancelled = False
        self._reason: CancelReason | None = None
        self._latency: CancelLatency | None = None
        self._clock: Clock | None = None

    # CancelToken protocol
    @property
    def cancelled(self) -> bool:
        scope: CancelScope | None = self
        while scope is not None:
            if scope._cancelled:
                return True
            scope = scope.parent
        return False

    @property
    def reason(self) -> str | None:
        scope: CancelScope | None = self
        while scope is not None:
            if scope._cancelled:
                return scope._reason.value if scope._reason else None
            scope = scope.parent
        return None

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise asyncio.CancelledError(self.reason)

    def acknowledge(self) -> None:
        """Cooperative node: "I saw the cancel and stopped" (F-036), timed into the latency."""
        scope: CancelScope | None = self
        while scope is not None and scope._latency is None:
            scope = scope.parent
        if scope is not None and scope._latency is not None and scope._clock is not None:
            scope._latency.acknowledged_ns.setdefault(self.scope_id, scope._clock.monotonic_ns())

    def walk(self) -> Iterable[CancelScope]:
        yield self
        for child in self.children.values():
            yield from child.walk()

    def register_task(self, task: asyncio.Task[Any]) -> None:
        """A task doing work of this scope; cancelled on cancel (hard) or after grace."""
        self.tasks.append(task)

    def on_flush(self, flusher: Callable[[], int]) -> None:
        """A callback dropping queued items of this scope; returns how many it dropped."""
        self.flushers.append(flusher)

    def on_reset(self, reset: Callable[[], None]) -> None:
        """A callback resetting node state so the next turn starts clean (F-038)."""
        self.resets.append(reset)


class EgressFence:
    """Per-scope output fence with a commit point (F-175, F-033, F-039).

    ``admit(scope)`` is called by the egress path before ``output_accepted`` /
    ``playback_started``; after cancel acceptance it returns False for every
    output of the cancelled scope. ``mark_played`` advances the commit point;
    played audio is never retracted.
    """

    __slots__ = ("blocked", "delivered", "played")

    def __init__(self) -> None:
        self.blocked: dict[str, int] = {}
        self.delivered: dict[str, int] = {}
        self.played: dict[str, int] = {}

    def admit(self, scope: CancelScope) -> bool:
        key = scope.scope_id
        if scope.cancelled:
            self.blocked[key] = self.blocked.get(key, 0) + 1
            return False
        self.delivered[key] = self.delivered.get(key, 0) + 1
        return True

    def mark_played(self, scope: CancelScope, position: int) -> None:
        """Commit point: everything up to ``position`` was played and stays played."""
        self.played[scope.scope_id] = max(self.played.get(scope.scope_id, 0), position)

    def commit_point(self, scope: CancelScope) -> int:
        return self.played.get(scope.scope_id, 0)


class CancelScopeTree:
    """The cancellation tree of one session, with timing and the cancel signals it emits."""

    def __init__(
        self,
        session_id: str,
        clock: Clock,
        *,
        grace_ms: int = DEFAULT_GRACE_MS,
        stamp: RecordStamp | None = None,
    ) -> None:
        if grace_ms < 0:
            raise CancelError(f"grace_ms={grace_ms}: must be >= 0 (simple/v1 uses 75)")
        self.clock = clock
        self.grace_ms = grace_ms
        self.stamp = stamp
        self.root = CancelScope(CancelScopeKind.SESSION, session_id, None)
        self.fence = EgressFence()
        self.latencies: list[CancelLatency] = []
        self.degraded = False
        self._enforcers: set[asyncio.Task[None]] = set()
        self._by_id: dict[str, CancelScope] = {session_id: self.root}

    def scope(self, scope_id: str) -> CancelScope:
        try:
            return self._by_id[scope_id]
        except KeyError:
            raise CancelError(f"unknown cancel scope '{scope_id}'") from None

    def open(
        self,
        kind: CancelScopeKind,
        scope_id: str,
        parent: CancelScope | None = None,
        mode: CancelMode = CancelMode.HARD,
    ) -> CancelScope:
        """Open a child scope (turn under session, node under turn, invocation under node)."""
        parent = parent if parent is not None else self.root
        if kind not in _PARENT_KIND or _PARENT_KIND[kind] is not parent.kind:
            raise CancelError(
                f"scope '{scope_id}' of kind {kind} cannot nest under {parent.kind} "
                "(tree is session > turn > node > provider_invocation)"
            )
        if scope_id in self._by_id:
            raise CancelError(f"cancel scope '{scope_id}' already exists; ids must be unique")
        child = CancelScope(kind, scope_id, parent, mode)
        parent.children[scope_id] = child
        self._by_id[scope_id] = child
        return child

    def close(self, scope: CancelScope) -> None:
        """Forget a finished scope (its fence counters stay)."""
        for s in list(scope.walk()):
            self._by_id.pop(s.scope_id, None)
        if scope.parent is not None:
            scope.parent.children.pop(scope.scope_id, None)

    def cancel(
        self,
        scope: CancelScope,
        reason: CancelReason,
    ) -> CancelLatency:
        """Accept a cancel: mark, fence, flush, stop tasks (see the module docstring)."""
        accepted = self.clock.monotonic_ns()
        for s in scope.walk():
            if not s._cancelled:
                s._cancelled = True
                s._reason = reason
        fence_at = self.clock.monotonic_ns()  # fence is the cancelled flag checked by admit()
        lat = CancelLatency(scope.scope_id, reason, scope.mode, accepted, fence_at)
        self.latencies.append(lat)
        scope._latency = lat
        scope._clock = self.clock
        for s in scope.walk():
            for flush in s.flushers:
                flush()
            for reset in s.resets:
                reset()
        soft: list[tuple[str, asyncio.Task[Any]]] = []
        for s in scope.walk():
            for task in s.tasks:
                if task.done():
                    continue
                task.add_done_callback(self._stopped(lat, s.scope_id))
                if s.mode is CancelMode.HARD:
                    task.cancel(reason.value)
                else:
                    soft.append((s.scope_id, task))
        if soft:
            enforcer = asyncio.get_running_loop().create_task(self._enforce_grace(lat, soft))
            self._enforcers.add(enforcer)
            enforcer.add_done_callback(self._enforcers.discard)
        return lat

    def cancel_signal(
        self, scope: CancelScope, reason: CancelReason, *, authority_epoch: int, turn_id: str | None
    ) -> ControlSignal:
        """The ``cancel`` control signal (RK-16) for an accepted cancel."""
        if self.stamp is None:
            raise CancelError("CancelScopeTree needs a RecordStamp to build cancel signals")
        return self.stamp.signal(
            SignalName.CANCEL,
            Emitter.RK_16,
            authority_epoch=authority_epoch,
            turn_id=turn_id,
            reason=f"{reason.value}:{scope.mode.value}",
            scope=scope.kind,
            node_id=(scope.scope_id if scope.kind is CancelScopeKind.NODE else None),
        )

    def _stopped(self, lat: CancelLatency, scope_id: str) -> Callable[[asyncio.Task[Any]], None]:
        def done(_task: asyncio.Task[Any]) -> None:
            lat.node_stopped_ns.setdefault(scope_id, self.clock.monotonic_ns())

        return done

    async def _enforce_grace(
        self, lat: CancelLatency, soft: list[tuple[str, asyncio.Task[Any]]]
    ) -> None:
        await self.clock.sleep(self.grace_ms / 1000)
        for scope_id, task in soft:
            if not task.done():
                lat.forced.append(scope_id)
                self.degraded = True
                task.cancel("forced_after_grace")

    def metrics(self) -> dict[str, dict[str, float]]:
        """Cancel-latency summary for metrics export (F-040, F-035).

        ``{"reasons": {reason: count}, "end_to_end": {"p95": ms, "p99": ms},
        "node:<id>": {"p95": ms, "p99": ms}}`` over every accepted cancel.
        """
        reasons: dict[str, float] = {}
        per_node: dict[str, list[float]] = {}
        e2e: list[float] = []
        for lat in self.latencies:
            reasons[lat.reason.value] = reasons.get(lat.reason.value, 0) + 1
            e2e.append(lat.end_to_end_ms)
            for node, ms in lat.node_ms().items():
                per_node.setdefault(node, []).append(ms)
        out: dict[str, dict[str, float]] = {"reasons": reasons, "end_to_end": _pcts(e2e)}
        for node, values in sorted(per_node.items()):
            out[f"node:{node}"] = _pcts(values)
        return out

    async def aclose(self) -> None:
        """Wait for pending grace enforcers (owned tasks are never fire-and-forget)."""
        while self._enforcers:
            await asyncio.gather(*list(self._enforcers), return_exceptions=True)


def _pcts(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p95": 0.0, "p99": 0.0}
    ordered = sorted(values)
    n = len(ordered)
    return {"p95": ordered[min(n - 1, n * 95 // 100)], "p99": ordered[min(n - 1, n * 99 // 100)]}


def propagate_cancel(
    origin: str, downstream: Mapping[str, Iterable[str]], upstream: Mapping[str, Iterable[str]]
) -> list[str]:
    """Nodes a cancel at ``origin`` reaches along edge directions (F-034).

    Fan-out: every downstream branch is cancelled. Fan-in: a merge node is
    cancelled only once *all* of its upstream inputs are cancelled (otherwise it
    keeps serving the live branches). Returns node ids in deterministic BFS order.
    """
    cancelled = {origin}
    order = [origin]
    frontier = [origin]
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for dst in sorted(downstream.get(node, ())):
                if dst in cancelled:
                    continue
                if all(u in cancelled for u in upstream.get(dst, (node,))):
                    cancelled.add(dst)
                    order.append(dst)
                    nxt.append(dst)
        frontier = nxt
    return order
