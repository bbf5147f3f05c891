"""The session actor: one scheduler task owns a session's graph instance (F-002, F-008).

Ingress events are stamped by the single sequencer (``runtime_sequence``),
queued on bounded per-port entry buffers and dispatched by the scheduler:
ControlLane commands first, then DataLane, then TelemetryLane (F-142). Inline
nodes run depth-first inside the dispatch; async nodes get worker tasks fed
by bounded edge buffers. Outputs pass the :class:`EgressGate` before they
reach the output sink. See the package docstring for the hook points.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from rspp.contracts import Emitter, SignalName
from rspp.errors import LifecycleError
from rspp.kernel._buffer import BLOCKED, DROPPED, EdgeBuffer, Wakeup
from rspp.kernel._bufferspec import BufferConfig
from rspp.kernel._clock import SystemClock
from rspp.kernel._control import ControlMixin
from rspp.kernel._deadletter import DeadLetter, classify_error
from rspp.kernel._defaults import LocalCancelToken
from rspp.kernel._egress import ControlCommand, EgressGate, TurnFenceGate
from rspp.kernel._events import Event
from rspp.kernel._flushes import RecordedFlushes
from rspp.kernel._graph import RuntimeGraph
from rspp.kernel._handles import Clock
from rspp.kernel._host import BUFFERED, INLINE, NodeHost, Target
from rspp.kernel._pool import ExecutionPool, TurnPoolWaits
from rspp.kernel._registry import NodeRegistry, default_registry
from rspp.kernel._signals import SignalLog, SignalSink
from rspp.kernel._subscriptions import SubscriptionHub
from rspp.kernel._text_stream import TextGuardMode, TextStreamGuard
from rspp.kernel._timebase import Timebase
from rspp.kernel._turn_drain import TurnDrains
from rspp.kernel._wiring import StateFactory, build_hosts

__all__ = ["OutputSink", "SessionActor", "SessionOptions"]

OutputSink = Callable[[str, Event], None]
_perf = time.perf_counter_ns
_INBOX = BufferConfig(max_items=256, max_queue_ms=5000, max_latency_ms=5000)


async def _reap(task: asyncio.Task[None]) -> None:
    """Wait for a task we cancelled; a cancellation of the *caller* still propagates.

    ``asyncio.wait`` never raises the child's CancelledError, so only our own
    cancellation escapes (the old ``except CancelledError: pass`` swallowed both).
    A real exception of the child is re-raised as before.
    """
    await asyncio.wait({task})
    if not task.cancelled():
        task.result()


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Per-session switches (grouped options object)."""

    instrument: bool = False
    debug: bool = False
    inbox: BufferConfig = _INBOX
    output_maxlen: int = 1024
    signal_maxlen: int = 4096
    dead_letter_maxlen: int = 256
    seed: int | None = None
    #: F-024 text revision guard on outputs: "segmented" (events naming a segment),
    #: "strict" (also unsegmented text) or "off".
    text_guard: TextGuardMode = "segmented"
    #: A file source (``rspp run`` on a WAV): no data is lost to time limits (time in
    #: queue, latency contribution) and a full ingress buffer blocks the source (flow
    #: control waits for space without the ``max_block_ms`` shedding bound); depth
    #: limits of inner edges keep the strategy the spec gives them.
    lossless: bool = False
    #: each node's ``ctx.state`` handle: called with the node id and its scope (``session``
    #: or ``turn``); None: an in-memory :class:`DictState` per node. The turn layer passes
    #: its state contract here (F-155: session-hot state checkpointed, turn state cleared)
    state_factory: StateFactory | None = None
    #: in-band metrics events (F-026): node latency, queue depth and node-reported metrics
    #: recorded at each turn's end and when the session stops (``rspp run --metrics-events``)
    metrics_events: bool = False
    #: the fairness key of this session's work in the shared execution pool (a node's own
    #: ``fairness_key`` wins); None: the session id. A server passes the tenant (F-174)
    fairness_key: str | None = None


class SessionActor(ControlMixin):
    """One running instance of a :class:`RuntimeGraph`."""

    def __init__(
        self,
        graph: RuntimeGraph,
        *,
        session_id: str,
        registry: NodeRegistry | None = None,
        clock: Clock | None = None,
        pool: ExecutionPool | None = None,
        options: SessionOptions | None = None,
        output_sink: OutputSink | None = None,
        signal_sink: SignalSink | None = None,
        dead_letter_sink: Callable[[DeadLetter], None] | None = None,
        timebase: Timebase | None = None,
        services: object = None,
    ) -> None:
        self.graph = graph
        self.session_id = session_id
        self.pipeline_version = graph.pipeline_version
        self.registry = registry or default_registry
        #: What this session's nodes are given beyond the Node API (providers, turn
        #: hooks): opaque to the kernel, read by nodes as ``ctx.services``.
        self.services = services
        self.clock: Clock = clock or SystemClock()
        #: The session's one time base: every record of this session is stamped
        #: with it (runtime ms since session start, monotonic wall clock).
        self.timebase = timebase if timebase is not None else Timebase(self.clock)
        self.pool = pool
        #: what each turn's work waited for the shared pool's slots (its OR-02 evidence)
        self.pool_waits = TurnPoolWaits()
        self.options = opts = options or SessionOptions()
        self.fairness_key = opts.fairness_key
        self.instrument = opts.instrument
        self.debug = opts.debug
        self.state = "created"
        self._seq = 0
        self.signals = SignalLog(session_id, self.pipeline_version, self.timebase, self._next_seq,
                                 maxlen=opts.signal_maxlen, sink=signal_sink)
        self.turn_id: str | None = None
        #: what records of turn-less events name (F-013 correlation, never acted on):
        #: the open turn, or the proposal the user's utterance leads to; a turn layer
        #: sets it (see ``rspp.turns.TurnDriver``), every stamp copies it
        self.record_turn: str | None = None
        self.turn_index = 0
        self.cancel_token = LocalCancelToken()
        self.gate: EgressGate = TurnFenceGate()
        self.output_sink = output_sink
        self.dead_letter_sink = dead_letter_sink
        self.outputs: dict[str, deque[Event]] = {}
        self.output_count = 0
        self.dead_letters: deque[DeadLetter] = deque(maxlen=opts.dead_letter_maxlen)
        self.hook_errors: list[Exception] = []
        self.failure: str | None = None
        self.hard_cancelled_turn: str | None = None
        #: a replay's stand-in for the cancellation flushes' ``drop_notice`` records: the
        #: recorded ones of ``(turn_id, reason)`` (None: a live session computes its own)
        self.recorded_flushes: RecordedFlushes | None = None
        self.blocked: list[tuple[EdgeBuffer, Event]] = []
        #: Optional ``(node_id, turn_id, elapsed_ns)`` callback after every ``process``
        #: call (telemetry adapters; must not raise). ``None`` keeps the hot path untimed.
        self.node_observer: Callable[[str, str | None, int], None] | None = None
        self.total_ns = 0
        self.ingress_count = 0
        self._ctrl: deque[ControlCommand] = deque()
        self._control_handlers: list[Callable[[ControlCommand], Any]] = []
        self._wakeup = Wakeup()
        #: :meth:`settled` waiters: (entry buffer, future), released by the scheduler
        self._settle_waiters: list[tuple[EdgeBuffer, asyncio.Future[None]]] = []
        self._busy = True  # until the scheduler first waits for work
        self._dispatching = False
        self._task: asyncio.Task[None] | None = None
        self._route_state: dict[str, bool] = {}
        self.hosts: dict[str, NodeHost] = {}
        self.entries: dict[str, tuple[EdgeBuffer, tuple[Target, ...]]] = {}
        self.edge_buffers: dict[str, EdgeBuffer] = {}
        self.fallback_buffers: dict[str, EdgeBuffer] = {}
        #: F-024: text revision guard per source output, keyed by the id of its first
        #: edge (outputs included); only ``text`` events reach it.
        self.text_guard: TextStreamGuard | None = (
            None if opts.text_guard == "off"
            else TextStreamGuard(self.signals, mode=opts.text_guard)
        )
        #: F-022: subscribe to outputs and in-band records by event type.
        self.subscriptions = SubscriptionHub(self.signals)
        #: where each turn's streams end when no ``eos`` ends them (T6 without an LLM)
        self.drains = TurnDrains(self)
        build_hosts(self, seed=opts.seed, inbox=opts.inbox, wakeup=self._wakeup,
                    state_factory=opts.state_factory)
        if opts.lossless:
            for buf in (*self.edge_buffers.values(), *self.fallback_buffers.values()):
                buf.lossless = True
            for buf, _ in self.entries.values():
                buf.lossless = buf.blocking = True

    # ------------------------------------------------------------ sequencer
    @property
    def last_sequence(self) -> int:
        """The runtime sequence last taken (0 before any): where a side note goes."""
        return max(self._seq - 1, 0)

    def _next_seq(self) -> int:
        s = self._seq
        self._seq = s + 1
        return s

    def stamp(self, ev: Event, node_id: str | None) -> None:
        ev.seq = self._seq
        self._seq += 1
        ev.node_id = node_id
        if ev.turn_id is None:
            ev.turn_id = self.turn_id
            ev.record_turn = self.record_turn

    # -------------------------------------------------------------- ingress
    def _entry(self, port: str) -> EdgeBuffer:
        entry = self.entries.get(port)
        if entry is None:
            raise self._no_entry(port)
        return entry[0]

    def _no_entry(self, port: str) -> KeyError:
        return KeyError(f"session {self.session_id}: no entry port {port!r}; "
                        f"graph {self.pipeline_version} has {sorted(self.entries)}")

    def _ingress(self, ev: Event, port: str) -> tuple[EdgeBuffer, tuple[Target, ...]]:
        """Stamp ``ev`` as it enters at ``port``; the port's entry (buffer, targets)."""
        if self.state != "running":
            raise LifecycleError(f"session {self.session_id} is {self.state}, not running")
        entry = self.entries.get(port)
        if entry is None:
            raise self._no_entry(port)
        ev.seq = self._seq
        self._seq += 1
        if ev.turn_id is None:
            ev.turn_id = self.turn_id
            ev.record_turn = self.record_turn
        ev.ingress_ns = self.clock.monotonic_ns()
        self.ingress_count += 1
        return entry

    def push(self, ev: Event, port: str = "audio") -> bool:
        """Non-blocking ingress; returns False when the event was shed.

        Fast path: when the scheduler is idle, nothing is queued ahead and no
        control is pending, the event is dispatched directly (same order, no
        task switch); otherwise it waits in the bounded entry buffer.
        """
        buf, targets = self._ingress(ev, port)
        if not self._busy and not self._dispatching and not buf.data and not self._ctrl \
                and not self.blocked:
            self._dispatching = True
            try:
                if self.instrument:
                    t0 = _perf()
                    self.route(targets, ev)
                    self.total_ns += _perf() - t0
                else:
                    self.route(targets, ev)
            finally:
                self._dispatching = False
            if self.blocked:
                self._wakeup.fire()
            return True
        st = buf.offer(ev)
        if st == BLOCKED:
            st = buf.shed(ev)
        return st != DROPPED

    async def deliver(self, ev: Event, port: str = "audio",
                      admitted: Callable[[Event], None] | None = None) -> bool:
        """Ingress of a live transport: one event in, in cause-and-effect order.

        The event is stamped, then ``admitted(ev)`` runs (a transport records the
        ingress there, before anything the event causes), then the event is
        dispatched at once when the scheduler is idle (as :meth:`push` does, no task
        switch), else queued honouring flow control (as :meth:`send`). Returns once
        the scheduler took it and handled the control it caused (:meth:`settled`),
        so the next event cannot be recorded ahead of this one's effects. False when
        the event was shed.
        """
        rest = self.deliver_now(ev, port, admitted)
        return True if rest is None else await rest

    def deliver_now(self, ev: Event, port: str = "audio",
                    admitted: Callable[[Event], None] | None = None
                    ) -> Coroutine[Any, Any, bool] | None:
        """:meth:`deliver` without a coroutine of its own when nothing has to wait (every
        frame of every live session passes here): None when the event was dispatched and
        caused no control still pending, else the coroutine that finishes the delivery
        (to be awaited before the next event goes in; it returns what ``deliver`` does)."""
        entry = self._ingress(ev, port)
        buf = entry[0]
        if admitted is not None:
            admitted(ev)
        if self._busy or self._dispatching or buf.data or self._ctrl or self.blocked:
            return self._deliver_queued(buf, ev, port)
        self._dispatching = True
        t0 = _perf() if self.instrument else 0
        try:
            self.route(entry[1], ev)
        except Exception as exc:  # an output sink failed, as in the scheduler
            self.sink_failed(ev, exc)
        finally:
            self._dispatching = False
        if t0:
            self.total_ns += _perf() - t0
        if self.blocked:
            self._wakeup.fire()
        if buf.data or self._ctrl:  # (``settled`` returns at once otherwise)
            return self._settled_true(port)
        return None

    async def _deliver_queued(self, buf: EdgeBuffer, ev: Event, port: str) -> bool:
        st = buf.offer(ev)
        if st == BLOCKED:
            st = await self.offer_blocking(buf, ev)
        if buf.data or self._ctrl:
            await self.settled(port)
        return st != DROPPED

    async def _settled_true(self, port: str) -> bool:
        await self.settled(port)
        return True

    async def settled(self, port: str = "audio") -> None:
        """Wait until the scheduler took every queued event of ``port`` and handled every
        pending control (returns at once when nothing is queued or the session stopped)."""
        buf = self._entry(port)
        while (buf.data or self._ctrl) and self._task is not None and not self._task.done():
            fut = asyncio.get_running_loop().create_future()
            self._settle_waiters.append((buf, fut))
            try:
                await fut
            finally:
                if not fut.done():
                    fut.cancel()

    def _release_settled(self, everyone: bool = False) -> None:
        waiters, keep = self._settle_waiters, []
        ctrl = self._ctrl
        for buf, fut in waiters:
            if everyone or not (buf.data or ctrl):
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((buf, fut))
        self._settle_waiters = keep

    async def send(self, ev: Event, port: str = "audio") -> bool:
        """Ingress that honours blocking/flow control (bounded by max_block_ms)."""
        buf = self._ingress(ev, port)[0]
        st = buf.offer(ev)
        if st == BLOCKED:
            st = await self.offer_blocking(buf, ev)
        return st != DROPPED

    # -------------------------------------------------------------- routing
    def route(self, targets: tuple[Target, ...], ev: Event) -> None:
        if ev.kind == "text" and self.text_guard is not None and targets \
                and not self.text_guard.admit(targets[0][4], ev):
            return  # F-024: refused (recorded by the guard); one stream per source output
        if len(targets) == 1:
            kind, obj, port, cond, eid = targets[0]
            if cond is not None and not self._cond(cond, eid, ev):
                return
            if kind is INLINE:
                obj.dispatch_inline(ev, port)
            elif kind is BUFFERED:
                if obj.offer(ev) is BLOCKED:
                    self.blocked.append((obj, ev))
            else:
                self._egress(port, ev)
            return
        evs = [ev] + [ev.clone() for _ in range(len(targets) - 1)]
        for (kind, obj, port, cond, eid), e in zip(targets, evs, strict=True):
            if cond is not None and not self._cond(cond, eid, e):
                continue
            if kind is INLINE:
                obj.dispatch_inline(e, port)
            elif kind is BUFFERED:
                if obj.offer(e) is BLOCKED:
                    self.blocked.append((obj, e))
            else:
                self._egress(port, e)

    def _cond(self, cond: Callable[[Any], bool], edge_id: str, ev: Event) -> bool:
        taken = bool(cond(ev.attrs or {}))
        if self._route_state.get(edge_id) is not taken:
            self._route_state[edge_id] = taken
            self.signals.telemetry(kind="routing", turn_id=ev.turn_id, edge_id=edge_id,
                                   reason="routing_decision:" + ("taken" if taken else "skipped"))
        return taken

    async def resolve_blocked(self) -> None:
        """Bounded wait for every blocked producer write, then deterministic shedding."""
        while self.blocked:
            buf, ev = self.blocked.pop(0)
            await self.offer_blocking(buf, ev)

    async def offer_blocking(self, buf: EdgeBuffer, ev: Event) -> int:
        """Retry a blocked offer until space/credit/xon or ``max_block_ms`` (F-148)."""
        cap = buf.config.max_block_ms or 50
        deadline = self.clock.monotonic_ns() + cap * 1_000_000
        while True:
            remaining = (deadline - self.clock.monotonic_ns()) / 1_000_000
            if buf.blocking:  # a file source waits for the consumer, however slow
                await buf.wait_space(cap)
            elif remaining <= 0 or not await buf.wait_space(remaining):
                return buf.shed(ev)
            st = buf.offer(ev)
            if st != BLOCKED:
                return st

    def _egress(self, port: str, ev: Event) -> None:
        if not self.gate.allow(port, ev):
            return
        self.output_count += 1
        if self.subscriptions.active:
            self.subscriptions.publish_event(port, ev)
        if self.output_sink is not None:
            self.output_sink(port, ev)  # the transport owns it now; nothing kept here
            return
        q = self.outputs.get(port)
        if q is None:
            q = self.outputs[port] = deque(maxlen=self.options.output_maxlen)
        q.append(ev)

    def side_signal(self, name: SignalName, emitter: Emitter, reason: str) -> None:
        """Record a session-scoped control signal about the session's surroundings (the
        runtime's capacity control, F-172) as a side note at the current sequence: it
        takes no sequence number, so a replay without it keeps every later record's."""
        self.signals.signal(name, emitter, reason=reason, at_sequence=self.last_sequence)

    def stream_end(self, port: str, ev: Event) -> None:
        """Egress a turn's ``stream_end`` marker (:class:`TurnDrains`); it takes no runtime
        sequence number of its own (a side note at the current one)."""
        ev.seq = self.last_sequence
        try:
            self._egress(port, ev)
        except Exception as exc:  # an output sink failed, as in the scheduler
            self.sink_failed(ev, exc)

    # -------------------------------------------------------------- failures
    def node_failed(self, host: NodeHost, ev: Event, port: str, exc: BaseException) -> None:
        decl = host.decl
        kind = "timeout" if isinstance(exc, TimeoutError) else "error"
        fb = decl.fallback if decl.fallback and kind in decl.fallback_on else None
        info = classify_error(exc, host.node_id, has_fallback=fb is not None, ev=ev)
        host.errors += 1
        rec = self.signals.telemetry(kind="error", turn_id=ev.turn_id, node_id=host.node_id,
                                     reason=info.error_code)
        if fb is not None:
            self.signals.signal(
                SignalName.FALLBACK, Emitter.RK_17 if kind == "timeout" else Emitter.RK_13,
                node_id=host.node_id, turn_id=ev.turn_id,
                reason=f"{info.error_code}:{host.node_id}->{fb}",
            )
            fb_host = self.hosts[fb]
            fb_port = fb_host.node.inputs[0] if fb_host.node.inputs else "in"
            if fb_host.is_async:
                self.fallback_buffers[fb].offer(ev)
            else:
                fb_host.dispatch_inline(ev, fb_port)
            return
        dl = DeadLetter(error=info, event=ev, record=rec)
        self.dead_letters.append(dl)
        if self.dead_letter_sink is not None:
            self.dead_letter_sink(dl)
        if decl.on_error == "end_session" and self.failure is None:
            self.failure = info.error_code
            self._ctrl.append(ControlCommand("session_fail", reason=info.error_code))
            self._wakeup.fire()

    def sink_failed(self, ev: Event, exc: Exception) -> None:
        """An output sink raised: record it as a dead letter of the egress stage."""
        info = classify_error(exc, "egress", has_fallback=False, ev=ev)
        rec = self.signals.telemetry(kind="error", turn_id=ev.turn_id, node_id="egress",
                                     reason=info.error_code)
        self.dead_letters.append(DeadLetter(error=info, event=ev, record=rec))

    # ------------------------------------------------------------- scheduler
    def control_pending(self) -> bool:
        return bool(self._ctrl)

    def scheduler_idle(self) -> bool:
        """Running, no control pending, no blocked write, and the scheduler waits for work
        (not dispatching in its own task: what it routes now, it may flush next)."""
        return not self._busy and not self._ctrl and not self.blocked and self.state == "running"

    async def _run(self) -> None:
        try:
            await self._schedule()
        finally:
            self._release_settled(everyone=True)  # nothing will take their events now

    async def _schedule(self) -> None:
        ctrl = self._ctrl
        entries = list(self.entries.values())
        n = 0
        while True:
            if self.blocked:
                await self.resolve_blocked()
            if ctrl:
                cmd = ctrl.popleft()
                if cmd.name == "session_fail":
                    self.state = "failed"
                    await self._stop_workers()
                    return
                await self._handle_control(cmd)
                if self._settle_waiters:
                    self._release_settled()
                continue
            picked = self._next_entry(entries)
            progressed = picked is not None
            if picked is not None:
                ev, targets = picked
                t0 = _perf() if self.instrument else 0
                try:
                    self.route(targets, ev)
                except Exception as exc:  # an output sink failed; the scheduler survives
                    self.sink_failed(ev, exc)
                if t0:
                    self.total_ns += _perf() - t0
                if self.blocked:
                    await self.resolve_blocked()
                if self._settle_waiters:
                    self._release_settled()
            if progressed:
                n += 1
                if not n & 63:
                    await asyncio.sleep(0)
                continue
            for b in self.edge_buffers.values():
                if b._pending is not None:
                    b.flush_notices()
            for b, _ in entries:
                if b._pending is not None:
                    b.flush_notices()
            if self._settle_waiters:
                self._release_settled()
            self._busy = False
            await self._wakeup.wait()
            self._busy = True

    @staticmethod
    def _next_entry(
        entries: list[tuple[EdgeBuffer, tuple[Target, ...]]],
    ) -> tuple[Event, tuple[Target, ...]] | None:
        """Next ingress event in global sequence order across entry ports (F-008)."""
        if len(entries) == 1:
            buf, targets = entries[0]
            ev = buf.pop()
            return None if ev is None else (ev, targets)
        best: tuple[EdgeBuffer, tuple[Target, ...]] | None = None
        for buf, targets in entries:
            if buf.data and (best is None or buf.data[0].seq < best[0].data[0].seq):
                best = (buf, targets)
        candidates = [best] if best is not None else entries
        for buf, targets in candidates:
            ev = buf.pop()
            if ev is not None:
                return ev, targets
        return None

    def idle(self) -> bool:
        if self._busy or self._ctrl or self.blocked:
            return False
        # plain loops over the deques (polled by transports and drain: keep it cheap)
        for b, _ in self.entries.values():
            if b.data or b.control or b.telemetry:
                return False
        for h in self.hosts.values():
            if h.busy or h.node.working():
                return False
            for b, _ in h.buffers:
                if b.data or b.control or b.telemetry:
                    return False
        return True

    async def drain(self, timeout_s: float = 60.0) -> None:
        """Wait until every queue is empty and every worker idle.

        Spins the event loop (virtual clocks advance as sleepers run); with a real
        clock it backs off to 1 ms naps. Raises TimeoutError after ``timeout_s``
        of real time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        spins = 0
        real = isinstance(self.clock, SystemClock)
        while loop.time() < deadline:
            spins += 1
            # a real clock: a few bare yields, then 1 ms naps (many sessions draining at
            # once must not busy-spin the loop); a virtual clock advances as sleepers run
            await asyncio.sleep(0.001 if (real and spins > 16) or not spins % 1000 else 0)
            if self.idle():
                await asyncio.sleep(0)
                if self.idle():
                    for b in self.edge_buffers.values():
                        b.flush_notices()
                    for b, _ in self.entries.values():
                        b.flush_notices()
                    return
        raise TimeoutError(f"session {self.session_id} did not drain")

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Run ``on_start`` hooks (exactly once, under timeouts) and the tasks."""
        if self.state != "created":
            raise LifecycleError(f"session {self.session_id} already {self.state}")
        started: list[NodeHost] = []
        for host in self.hosts.values():
            err = await host.call_hook("on_start")
            if err is not None:
                self.hook_errors.append(err)
                self.state = "failed"
                for h in reversed(started):
                    e2 = await h.call_hook("on_stop")
                    if e2 is not None:
                        self.hook_errors.append(e2)
                raise err
            started.append(host)
        for host in self.hosts.values():
            if host.is_async:
                host.task = asyncio.create_task(
                    host.run_worker(), name=f"{self.session_id}:{host.node_id}"
                )
        self._task = asyncio.create_task(self._run(), name=f"{self.session_id}:scheduler")
        self.state = "running"
        self.signals.telemetry(kind="lifecycle", reason="session_running")

    async def _stop_workers(self) -> None:
        tasks = [h.task for h in self.hosts.values() if h.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            await _reap(t)
        for h in self.hosts.values():
            h.task = None
            h.stop_watch()

    async def stop(self) -> None:
        """Stop tasks and run ``on_stop`` hooks exactly once (reverse order)."""
        if self.state in ("stopped", "created"):
            self.state = "stopped"
            return
        was_failed = self.state == "failed"
        self.state = "stopping"
        if self._task is not None:
            self._task.cancel()
            await _reap(self._task)
            self._task = None
        await self._stop_workers()
        for host in reversed(list(self.hosts.values())):
            err = await host.call_hook("on_stop")
            if err is not None:
                self.hook_errors.append(err)
        self.state = "failed" if was_failed else "stopped"
        if self.options.metrics_events:
            self.emit_metrics()
        self.signals.telemetry(kind="lifecycle", reason=f"session_{self.state}")

    async def __aenter__(self) -> SessionActor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
