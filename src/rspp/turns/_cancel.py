"""Cancellation scopes (RK-16): session > turn > node > provider_invocation.

A :class:`CancelScope` is the :class:`~rspp.kernel._handles.CancelToken` a node
sees. :meth:`CancelScopeTree.cancel` *accepts* a cancel synchronously, in this
order, before it returns:

1. the scope and all its descendants are marked cancelled (reason code, mode);
2. the scope's egress fence is applied: from now on :meth:`EgressFence.admit`
   refuses every output of the scope (no ``output_accepted`` /
   ``playback_started``), F-175, F-033.

What happens to the work of the cancelled turn is not this module's: the turn
driver hands the accepted cancel to :class:`~rspp.turns._node_scopes.NodeScopes`
(hard nodes stopped at once, soft nodes within their grace window, then
force-stopped: F-041, F-037, per-node cancel latency F-040) and to the kernel's
``cancel_turn`` (queued data of the turn flushed, turn-scoped node state gone
before the next turn: F-038).

Audio already played before the commit point is never retracted: the fence
only ever refuses *future* outputs and reports the committed position (F-039).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

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


class CancelScope:
    """One node of the cancellation tree; also the node-facing :class:`CancelToken`."""

    __slots__ = ("_cancelled", "_clock", "_latency", "_reason", "children", "kind", "mode",
                 "parent", "scope_id")

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

    def walk(self) -> list[CancelScope]:
        """This scope and its descendants, depth first (parents before their children)."""
        stack = [self]
        out: list[CancelScope] = []
        while stack:  # pre-order, children in insertion order (no generator per level)
            scope = stack.pop()
            out.append(scope)
            stack.extend(reversed(scope.children.values()))
        return out


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
    """The cancellation tree of one session: scopes, their fence, the cancel signals."""

    def __init__(self, session_id: str, clock: Clock, *, stamp: RecordStamp | None = None
                 ) -> None:
        self.clock = clock
        self.stamp = stamp
        self.root = CancelScope(CancelScopeKind.SESSION, session_id, None)
        self.fence = EgressFence()
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
        for s in scope.walk():
            self._by_id.pop(s.scope_id, None)
        if scope.parent is not None:
            scope.parent.children.pop(scope.scope_id, None)

    def cancel(self, scope: CancelScope, reason: CancelReason) -> CancelLatency:
        """Accept a cancel: mark the scope and its descendants, fence (module docstring).

        The returned :class:`CancelLatency` is filled in by whoever stops the scope's work
        (per-node stop times, forced nodes, acknowledgements: ``NodeScopes``).
        """
        accepted = self.clock.monotonic_ns()
        for s in scope.walk():
            if not s._cancelled:
                s._cancelled = True
                s._reason = reason
        fence_at = self.clock.monotonic_ns()  # fence is the cancelled flag checked by admit()
        lat = CancelLatency(scope.scope_id, reason, scope.mode, accepted, fence_at)
        scope._latency = lat
        scope._clock = self.clock
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
