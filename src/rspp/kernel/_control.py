"""ControlLane processing, turn primitives, metrics and overhead (mixin of SessionActor).

Hook points (see the package docstring): ``on_control(handler)`` sees every
control command first; ``set_egress_gate(gate)`` replaces the output fence.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rspp.contracts import Emitter, EventRecord, Lane, MetricsPayload, SignalName
from rspp.errors import RuntimeKernelError
from rspp.kernel._defaults import SessionTelemetry
from rspp.kernel._egress import ControlCommand, EgressGate, TurnFenceGate
from rspp.kernel._events import Event, EventKind

if TYPE_CHECKING:
    from rspp.kernel._buffer import EdgeBuffer, Wakeup
    from rspp.kernel._flushes import RecordedFlushes
    from rspp.kernel._host import NodeHost
    from rspp.kernel._signals import SignalLog
    from rspp.kernel._turn_drain import TurnDrains

__all__ = ["CONTROL_LANE_LIMIT", "ControlMixin"]

#: Bound of a session's pending ControlLane commands (never dropped: overflow raises).
CONTROL_LANE_LIMIT = 4096


class ControlMixin:
    """Control-lane behaviour of :class:`~rspp.kernel.SessionActor`."""

    # Provided by SessionActor.
    _ctrl: deque[ControlCommand]
    _control_handlers: list[Callable[[ControlCommand], Any]]
    _wakeup: Wakeup
    hosts: dict[str, NodeHost]
    entries: dict[str, tuple[EdgeBuffer, tuple[Any, ...]]]
    edge_buffers: dict[str, EdgeBuffer]
    signals: SignalLog
    drains: TurnDrains
    gate: EgressGate
    turn_id: str | None
    turn_index: int
    session_id: str
    hard_cancelled_turn: str | None
    recorded_flushes: RecordedFlushes | None
    hook_errors: list[Exception]
    debug: bool
    _seq: int
    instrument: bool
    total_ns: int
    ingress_count: int
    options: Any

    def _egress(self, port: str, ev: Event) -> None: ...

    # ----------------------------------------------------------- hook points
    def on_control(self, handler: Callable[[ControlCommand], Any]) -> None:
        """Register a handler run for every control command before the kernel acts."""
        self._control_handlers.append(handler)

    def set_egress_gate(self, gate: EgressGate) -> None:
        """Replace the gate every output passes before reaching the transport."""
        self.gate = gate

    def control(self, name: str, *, turn_id: str | None = None, reason: str | None = None,
                scope: str = "turn", **data: Any) -> ControlCommand:
        """Enqueue a control command on the ControlLane (served before any data)."""
        if len(self._ctrl) >= CONTROL_LANE_LIMIT:
            raise RuntimeKernelError(
                f"session {self.session_id}: {CONTROL_LANE_LIMIT} control commands pending; "
                "control is never dropped, so the sender must slow down"
            )
        cmd = ControlCommand(name, turn_id=turn_id, reason=reason, scope=scope, data=data)
        self._ctrl.append(cmd)
        self._wakeup.fire()
        return cmd

    def pending_control(self) -> tuple[ControlCommand, ...]:
        """The control commands enqueued and not served yet, in order: what else is due at
        this scheduling point (the turn driver ranks competing terminal causes with it)."""
        return tuple(self._ctrl)

    # ------------------------------------------------------ turn primitives
    def begin_turn(self, turn_id: str | None = None) -> str:
        """Start a numbered turn (F-014): later ingress events carry its id."""
        self.turn_index += 1
        tid = turn_id or f"{self.session_id}:turn-{self.turn_index}"
        self.turn_id = tid
        self.control("turn_start", turn_id=tid, applied=True)
        return tid

    def end_turn(self) -> str | None:
        tid = self.turn_id
        if tid is not None:
            self.turn_id = None
            self.control("turn_end", turn_id=tid, applied=True)
        return tid

    def cancel_turn(self, turn_id: str | None = None, reason: str = "cancelled") -> None:
        self.control("cancel", turn_id=turn_id or self.turn_id, reason=reason)

    def barge_in(self) -> None:
        self.control("barge_in", turn_id=self.turn_id, reason="barge_in")

    def set_debug(self, enabled: bool) -> None:
        """Switch debug events for this session (F-027)."""
        self.debug = enabled

    # --------------------------------------------------------------- handling
    async def _hooks(self, name: str, *args: Any) -> None:
        for host in self.hosts.values():
            err = await host.call_hook(name, *args)
            if err is not None:
                self.hook_errors.append(err)

    def _boundary_event(self, kind: str, turn_id: str) -> None:
        ev = Event(kind, None, lane=Lane.CONTROL, turn_id=turn_id)
        ev.seq = self.signals._next_seq()
        for port in sorted({p for h in self.hosts.values() for ts in h.outs.values()
                            for (k, _, p, _, _) in ts if k == 2} | self._exit_names()):
            self._egress(port, ev.clone())

    def _exit_names(self) -> set[str]:
        return {p for _, ts in self.entries.values() for (k, _, p, _, _) in ts if k == 2}

    async def _handle_control(self, cmd: ControlCommand) -> None:
        for h in self._control_handlers:
            r = h(cmd)
            if inspect.isawaitable(r):
                r = await r
            if r is False:
                return
        name, tid = cmd.name, cmd.turn_id
        if self.debug:  # a side note at the current sequence: replays without debug match
            self.signals.telemetry(kind="debug", turn_id=tid, reason=f"control:{name}",
                                   at_sequence=max(self._seq - 1, 0))
        if name == "turn_start" and tid is not None:
            if not cmd.data.get("applied") and self.turn_id != tid:
                self.turn_id = tid  # enqueued directly via control(): apply it now
                self.turn_index += 1
            for host in self.hosts.values():
                if host.scope == "turn":  # turn-ephemeral state never leaks (F-038)
                    clear = getattr(host.node.ctx.state, "clear", None)
                    if callable(clear):
                        clear()
            await self._hooks("on_turn_start", tid)
            self._boundary_event(EventKind.TURN_START, tid)
        elif name == "turn_end" and tid is not None:
            if not cmd.data.get("applied") and self.turn_id == tid:
                self.turn_id = None
            self.drains.forget(tid)
            await self._hooks("on_turn_end", tid)
            self._boundary_event(EventKind.TURN_END, tid)
            if self.options.metrics_events:  # in-band metrics at each turn's end (F-026)
                self.emit_metrics(tid)
        elif name in ("cancel", "barge_in"):
            await self._cancel(tid, cmd.reason or name, barge_in=name == "barge_in")
        elif name == "budget_exhausted":
            await self._hooks("on_budget_exhausted", tid)
        elif name == "select":
            host = self.hosts[str(cmd.data["node"])]
            host.node.select(str(cmd.data["candidate"]), cmd.reason or "control")  # type: ignore[attr-defined]

    async def _cancel(self, turn_id: str | None, reason: str, *, barge_in: bool) -> None:
        if turn_id is not None:
            self.drains.forget(turn_id)
            if isinstance(self.gate, TurnFenceGate):
                self.gate.fence(turn_id)
            recorded = self.recorded_flushes
            notice = recorded is None
            for buf, _ in self.entries.values():
                buf.drop_turn(turn_id, reason, notice=notice)
            for buf in self.edge_buffers.values():
                buf.drop_turn(turn_id, reason, notice=notice)
            if recorded is not None:
                # what was still queued when the cancel landed is the recorded session's
                # scheduling (a live consumer lagging under load), not the graph's logic:
                # the replay takes the recorded flushes as given
                for n in recorded(turn_id, reason):
                    self.signals.signal(
                        SignalName.DROP_NOTICE, Emitter.RK_12, edge_id=n.edge_id,
                        target_lane=n.target_lane, reason=reason, seq_range=n.seq_range,
                        turn_id=turn_id)
            self.hard_cancelled_turn = turn_id
            for host in self.hosts.values():
                cur = host.current
                if host.cancel_mode == "hard" and cur is not None and cur.turn_id == turn_id:
                    host.hard_cancel()
        if barge_in:
            await self._hooks("on_barge_in", turn_id)
        await self._hooks("on_cancel", turn_id, reason)

    # ----------------------------------------------------- metrics / overhead
    def emit_metrics(self, turn_id: str | None = None
                     ) -> list[tuple[EventRecord, dict[str, float]]]:
        """In-band metrics events (F-026): per-node latency, per-edge queue depth, node metrics.

        Each is a TelemetryLane ``metric`` record tagged with its ``node_id`` or ``edge_id``
        and carrying a :class:`~rspp.contracts.MetricsPayload` (name, value, unit, labels)
        for the signal log's ``payload_sink``; the node metrics are what nodes reported with
        ``ctx.telemetry.metric()`` since the last call. The records are side notes at the
        current sequence, so a replay that emits none (or other values) keeps its sequence.
        ``turn_id`` tags the records (default: the current turn). Returns ``(record,
        values)`` pairs (cumulative counters of the session).
        """
        out: list[tuple[EventRecord, dict[str, float]]] = []
        at = max(self._seq - 1, 0)
        tid = turn_id or self.turn_id

        def note(values: dict[str, float], payload: MetricsPayload, **tags: str) -> None:
            rec = self.signals.telemetry(kind="metric", turn_id=tid, at_sequence=at,
                                         payload=payload, **tags)
            out.append((rec, values))

        for host in self.hosts.values():
            lat = host.node_ns / 1000.0 / host.events if host.events else 0.0
            note({"node_latency_us": lat, "events": float(host.events),
                  "errors": float(host.errors)},
                 MetricsPayload(name="node_latency_us", value=lat, unit="us",
                                labels={"events": str(host.events), "errors": str(host.errors)}),
                 node_id=host.node_id, reason="node_latency")
            tel = host.node.ctx.telemetry
            if isinstance(tel, SessionTelemetry):
                while tel.metrics:
                    name, value, labels = tel.metrics.popleft()
                    note({name: float(value)},
                         MetricsPayload(name=name, value=float(value),
                                        labels={k: str(v) for k, v in labels.items()}),
                         node_id=host.node_id, reason="node_metric")
        if self.instrument:
            ov = self.overhead()
            note({"kernel_us_per_event": ov["kernel_us_per_event"],
                  "node_us_per_event": ov["node_us_per_event"]},
                 MetricsPayload(name="kernel_us_per_event", value=ov["kernel_us_per_event"],
                                unit="us", labels={"events": str(ov["events"])}),
                 reason="kernel_overhead")
        for eid, buf in {**self.edge_buffers,
                         **{b.edge_id: b for b, _ in self.entries.values()}}.items():
            vals = {"queue_depth": float(len(buf))}
            stats = buf.stats.as_dict()
            vals.update({k: float(v) for k, v in stats.items()})
            note(vals, MetricsPayload(name="queue_depth", value=float(len(buf)), unit="events",
                                      labels={k: str(v) for k, v in stats.items()}),
                 edge_id=eid, reason="queue_depth")
        return out

    def debug_events(self) -> list[tuple[str, dict[str, object]]]:
        """Debug events recorded by nodes (empty unless debug is on)."""
        res: list[tuple[str, dict[str, object]]] = []
        for host in self.hosts.values():
            tel = host.node.ctx.telemetry
            if isinstance(tel, SessionTelemetry):
                res.extend(tel.debug_events)
        return res

    def overhead(self) -> dict[str, Any]:
        """Kernel vs node time (F-052, NF-002); meaningful with ``instrument=True``."""
        node_ns = sum(h.node_ns for h in self.hosts.values())
        async_node_ns = sum(h.node_ns for h in self.hosts.values() if h.is_async)
        n = max(self.ingress_count, 1)
        kernel_ns = max(self.total_ns - (node_ns - async_node_ns), 0)
        report = {
            "events": self.ingress_count,
            "kernel_us_per_event": kernel_ns / n / 1000.0,
            "node_us_per_event": node_ns / n / 1000.0,
            "per_node_us": {h.node_id: (h.node_ns / h.events / 1000.0 if h.events else 0.0)
                            for h in self.hosts.values()},
        }
        return report
