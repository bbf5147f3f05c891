"""Node-level cancel scopes of a running session (F-034, F-041, F-037, F-040).

Every turn the driver opens gets one ``node`` scope per node that a cancel at the
transport reaches: :func:`~rspp.turns._cancel.propagate_cancel` from ``input``
along the graph's edges (fan-out: every branch; fan-in: a merge only once all
of its inputs are cancelled). Nodes it does not reach (a source node fed by no
transport port) keep working: their work belongs to no turn the transport
cancelled.

When the turn is cancelled the scope tree marks the turn and its node scopes
cancelled, and :meth:`NodeScopes.cancel` walks the reached nodes in
propagation order, emitting one ``cancel`` signal per node (``scope: node``,
``reason: <reason>:<mode>``) and acting on each node's in-flight work of that
turn according to the node's cancel mode:

* ``hard``: the in-flight ``process`` call is interrupted at once (its queued
  input of the turn is flushed by the kernel cancel that follows);
* ``soft``: the in-flight event may finish within the node's grace window
  (``cancel_grace_ms``, default ``budgets.cancel_grace_ms``); a node still busy
  with it when the window ends is force-stopped and the session marked degraded
  (a ``degrade`` signal, reason ``cancel_grace_exceeded:<node>``).

How each node stopped is an audit record on the TelemetryLane
(``cancel_stop:<mode>:<stopped|completed_in_grace|forced_after_grace|idle>``) and a
per-node stop time in the turn's :class:`~rspp.turns._cancel.CancelLatency`
(cancel latency per node, F-040). A node's ``ctx.cancel`` is a token that reads
the scope of the turn whose event the node is processing; a cooperative node checks
``ctx.cancel.cancelled`` in its loop and calls ``ctx.cancel.acknowledge()`` when it
stops (a ``cancel_ack`` audit record, F-036).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from rspp.contracts import CancelScopeKind, Emitter, SignalName
from rspp.kernel._events import Event
from rspp.kernel._host import NodeHost
from rspp.kernel._session import SessionActor
from rspp.turns._cancel import (
    CancelError,
    CancelLatency,
    CancelMode,
    CancelReason,
    CancelScope,
    CancelScopeTree,
    propagate_cancel,
)

__all__ = ["NodeScopes"]

_ORIGIN = "input"  # the transport adapter: where a turn cancel enters the graph


class _NodeToken:
    """``ctx.cancel`` of one node: the node scope of the turn of its current event."""

    __slots__ = ("host", "scopes")

    def __init__(self, host: NodeHost, scopes: NodeScopes) -> None:
        self.host = host
        self.scopes = scopes

    def _scope(self) -> CancelScope | None:
        ev = self.host.current
        tid = ev.turn_id if ev is not None else self.host.session.turn_id  # type: ignore[attr-defined]
        return self.scopes.scope_of(tid, self.host.node_id) if tid is not None else None

    @property
    def cancelled(self) -> bool:
        scope = self._scope()
        return scope is not None and scope.cancelled

    @property
    def reason(self) -> str | None:
        scope = self._scope()
        return scope.reason if scope is not None else None

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise asyncio.CancelledError(self.reason)

    def acknowledge(self) -> None:
        """The node saw the cancel and stopped its work (F-036): timed into the turn's cancel
        latency and recorded as a ``cancel_ack`` audit event of the node."""
        scope = self._scope()
        if scope is None or not scope.cancelled:
            return
        scope.acknowledge()
        ev = self.host.current
        self.host.session.signals.telemetry(
            kind="audit", node_id=self.host.node_id,
            turn_id=ev.turn_id if ev is not None else None,
            reason=f"cancel_ack:{scope.reason}")


class NodeScopes:
    """The per-turn node scopes of one session (see the module docstring)."""

    def __init__(self, session: SessionActor, tree: CancelScopeTree,
                 emit: Callable[[msgspec.Struct], None], *, default_grace_ms: int,
                 epoch: Callable[[], int]) -> None:
        self.session = session
        self.tree = tree
        self._emit = emit
        self._epoch = epoch
        self.default_grace_ms = default_grace_ms
        down: dict[str, set[str]] = {}
        up: dict[str, set[str]] = {}
        for e in session.graph.edges:
            if e.target == "output" or e.source == e.target:
                continue
            down.setdefault(e.source, set()).add(e.target)
            up.setdefault(e.target, set()).add(e.source)
        #: nodes a turn cancel reaches, in propagation (BFS) order
        self.reach: tuple[str, ...] = tuple(
            n for n in propagate_cancel(_ORIGIN, down, up) if n in session.hosts)
        self._scopes: dict[str, dict[str, CancelScope]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        #: told ``(node_id, mode, ms)`` when a node's work of a cancelled turn stopped
        self.observer: Callable[[str, str, float], None] | None = None
        #: ``(turn_id, node_id)`` -> ids of the node's provider invocations still in flight
        self.in_flight: Callable[[str, str], tuple[str, ...]] | None = None
        for host in session.hosts.values():
            host.node.ctx.cancel = _NodeToken(host, self)

    def grace_ms(self, node_id: str) -> int:
        g = self.session.hosts[node_id].decl.cancel_grace_ms
        return g if g is not None else self.default_grace_ms

    def mode(self, node_id: str) -> CancelMode:
        return CancelMode(self.session.hosts[node_id].cancel_mode)

    def scope_of(self, turn_id: str, node_id: str) -> CancelScope | None:
        return self._scopes.get(turn_id, {}).get(node_id)

    def open(self, turn: CancelScope) -> None:
        """Open the node scopes of a turn that just opened (under its turn scope)."""
        tid = turn.scope_id
        self._scopes[tid] = {
            nid: self.tree.open(CancelScopeKind.NODE, f"{tid}/{nid}", turn, self.mode(nid))
            for nid in self.reach}
        while len(self._scopes) > 4:  # keep the latest turns' scopes for late readers
            self._scopes.pop(next(iter(self._scopes)))

    def cancel(self, turn_id: str, reason: CancelReason, lat: CancelLatency) -> None:
        """The turn's cancel reached its node scopes: signal and stop each node's work."""
        scopes = self._scopes.get(turn_id)
        if not scopes:
            return
        for nid in self.reach:
            scope = scopes[nid]
            self._cancel_signals(turn_id, nid, f"{reason.value}:{scope.mode.value}")
            host = self.session.hosts[nid]
            cur = host.current
            if cur is None or cur.turn_id != turn_id or host.task is None:
                self._stopped(lat, nid, turn_id, scope.mode, "idle")
            elif scope.mode is CancelMode.HARD:
                host.hard_cancel()
                self._stopped(lat, nid, turn_id, scope.mode, "stopped")
            else:
                task = asyncio.get_running_loop().create_task(
                    self._grace(host, cur, lat, turn_id), name=f"{turn_id}:{nid}:grace")
                self._watchers.add(task)
                task.add_done_callback(self._watchers.discard)

    def _cancel_signals(self, turn_id: str, nid: str, reason: str) -> None:
        """``cancel`` of the node scope, then one per provider invocation in flight under
        it (scope ``provider_invocation``), whose ``causal_parent_id`` is the node scope's
        cancel: the record that links an invocation to the scope it was cancelled by."""
        stamp = self.tree.stamp
        if stamp is None:
            raise CancelError("NodeScopes needs a RecordStamp to build cancel signals")
        node = stamp.signal(SignalName.CANCEL, Emitter.RK_16, authority_epoch=self._epoch(),
                            turn_id=turn_id, reason=reason, scope=CancelScopeKind.NODE,
                            node_id=nid)
        self._emit(node)
        for inv_id in self.in_flight(turn_id, nid) if self.in_flight is not None else ():
            self._emit(stamp.signal(
                SignalName.CANCEL, Emitter.RK_16, authority_epoch=self._epoch(),
                turn_id=turn_id, reason=reason, scope=CancelScopeKind.PROVIDER_INVOCATION,
                node_id=nid, provider_invocation_id=inv_id, causal_parent_id=node.event_id))

    async def _grace(self, host: NodeHost, ev: Event, lat: CancelLatency, turn_id: str) -> None:
        """Soft cancel: the in-flight event may finish within the grace window."""
        done = host.when_done(ev)
        grace_s = self.grace_ms(host.node_id) / 1000
        timer = asyncio.ensure_future(self.tree.clock.sleep(grace_s))
        try:
            await asyncio.wait({done, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if done.done():
            self._stopped(lat, host.node_id, turn_id, CancelMode.SOFT, "completed_in_grace")
            return
        done.cancel()
        lat.forced.append(host.node_id)
        host.hard_cancel()
        self._stopped(lat, host.node_id, turn_id, CancelMode.SOFT, "forced_after_grace")
        self._emit(self.tree.stamp.signal(  # type: ignore[union-attr]
            SignalName.DEGRADE, Emitter.RK_17, authority_epoch=self._epoch(), turn_id=turn_id,
            reason=f"cancel_grace_exceeded:{host.node_id}", node_id=host.node_id,
            session_scoped=True))

    def _stopped(self, lat: CancelLatency, node_id: str, turn_id: str, mode: CancelMode,
                 how: str) -> None:
        lat.node_stopped_ns.setdefault(node_id, self.tree.clock.monotonic_ns())
        ms = (lat.node_stopped_ns[node_id] - lat.accepted_ns) / 1e6
        self.session.signals.telemetry(kind="audit", node_id=node_id, turn_id=turn_id,
                                       reason=f"cancel_stop:{mode.value}:{how}:{ms:.1f}ms")
        if self.observer is not None:
            self.observer(node_id, mode.value, ms)

    async def aclose(self) -> None:
        """Wait for pending grace watchers (each is bounded by its node's grace window)."""
        while self._watchers:
            await asyncio.gather(*list(self._watchers), return_exceptions=True)
