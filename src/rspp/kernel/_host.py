"""Node host: runs one node instance inline or on its worker task (F-134, F-107).

Inline hosts call ``process`` directly from whoever routes to them. Async hosts
own a worker task draining their input edge buffers (control first), optionally
under a shared-pool slot and a per-event time limit. Every exception is caught
here and handed to the session's failure path (fallback or dead-letter); the
process and other sessions never see it. Hooks run under ``hook_timeout_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from rspp.contracts import Emitter, Lane, SignalName
from rspp.errors import RuntimeKernelError
from rspp.kernel._buffer import EdgeBuffer, Wakeup
from rspp.kernel._clock import SystemClock
from rspp.kernel._deadletter import NodeHookError, ResourceLimitError
from rspp.kernel._turn_drain import LAST_OF_TURN

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from rspp.kernel._events import Event
    from rspp.kernel._graph import NodeDecl
    from rspp.kernel._handles import Clock
    from rspp.kernel._node import Node
    from rspp.kernel._pool import ExecutionPool, TurnPoolWaits
    from rspp.kernel._signals import SignalLog
    from rspp.kernel._turn_drain import TurnDrains

__all__ = ["HostSession", "NodeHost", "UnknownEventError"]

Target = tuple[int, Any, str, Any, str]  # kind, host|buffer|exit, port, condition, edge id
INLINE, BUFFERED, EXIT = 0, 1, 2


class UnknownEventError(ValueError):
    """An input event of a kind the node does not declare, under ``unknown_event_action=fail``."""


class HostSession(Protocol):
    """What a :class:`NodeHost` uses of the session that owns it (the ``SessionActor``).

    The host depends on this narrow view, not on the session module: the session
    builds hosts, hosts never build sessions.
    """

    @property
    def session_id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def instrument(self) -> bool: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def pool(self) -> ExecutionPool | None: ...

    @property
    def fairness_key(self) -> str | None: ...

    @property
    def pool_waits(self) -> TurnPoolWaits: ...

    @property
    def node_observer(self) -> Callable[[str, str | None, int], None] | None: ...

    @property
    def blocked(self) -> list[tuple[EdgeBuffer, Event]]: ...

    def scheduler_idle(self) -> bool: ...

    def stamp(self, ev: Event, node_id: str | None) -> None: ...

    def route(self, targets: tuple[Target, ...], ev: Event) -> None: ...

    def node_failed(self, host: NodeHost, ev: Event, port: str, exc: BaseException) -> None: ...

    def sink_failed(self, ev: Event, exc: Exception) -> None: ...

    async def resolve_blocked(self) -> None: ...

    def control_pending(self) -> bool: ...

    @property
    def signals(self) -> SignalLog: ...

    @property
    def drains(self) -> TurnDrains: ...


_perf = time.perf_counter_ns


async def clock_timeout(clock: Clock, seconds: float, aw: Awaitable[Any]) -> Any:
    """Await ``aw`` but raise TimeoutError after ``seconds`` on ``clock`` (virtual or real)."""
    if isinstance(clock, SystemClock):
        async with asyncio.timeout(seconds):
            return await aw
    work = asyncio.ensure_future(aw)
    fired = False

    def _fire() -> None:
        nonlocal fired
        fired = True
        work.cancel()

    async def _timer() -> None:
        await clock.sleep(seconds)
        _fire()

    call_later = getattr(clock, "call_later", None)
    timer: asyncio.Future[Any] = (
        call_later(seconds, _fire) if call_later is not None else asyncio.ensure_future(_timer())
    )
    try:
        return await work
    except asyncio.CancelledError:
        me = asyncio.current_task()
        if fired and (me is None or me.cancelling() == 0):
            raise TimeoutError(f"timed out after {seconds} s on {type(clock).__name__}") from None
        raise
    finally:
        if not timer.done():
            timer.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work


class NodeHost:
    """One node instance of one session plus its routing table."""

    def __init__(self, session: HostSession, decl: NodeDecl, node: Node) -> None:
        self.session = session
        self.decl = decl
        self.node_id = decl.id
        self.node = node
        self.is_async = node.is_async()
        self.process = node.process
        self.outs: dict[str, tuple[Target, ...]] = {}
        self.default_port = node.outputs[0] if node.outputs else "out"
        self.default_targets: tuple[Target, ...] = ()
        self.buffers: list[tuple[EdgeBuffer, str]] = []
        self.wakeup = Wakeup()
        self.task: asyncio.Task[None] | None = None
        self.busy = False
        self.current: Event | None = None
        self.events = self.errors = 0
        self.node_ns = 0
        self.timeout_s = (decl.timeout_ms or node.timeout_ms or 0) / 1000.0 or None
        self.max_input_bytes = decl.max_input_bytes
        self.hard_cancel_pending = False
        #: the per-host timeout watchdog (real clock): one timer for the worker's whole
        #: life instead of one ``asyncio.timeout`` (a timer-heap entry) per event
        self._watch: asyncio.TimerHandle | None = None
        self._watch_task: asyncio.Task[Any] | None = None
        self._deadline = 0.0
        self._expired = False
        #: futures resolved when the in-flight event changes (cancel grace watchers)
        self._done_waiters: list[tuple[Event, asyncio.Future[None]]] = []
        self.cancel_mode = decl.cancel_mode or node.cancel_mode
        self.scope = decl.scope or node.scope
        self.by_edge = bool(getattr(node, "by_edge", False))
        #: F-020: the event kinds each input port declares (None: anything, no check)
        self.kinds: dict[str, frozenset[str]] | None = (
            {p: frozenset(k) for p, k in node.input_kinds.items()} if node.input_kinds else None)
        self.unknown_action = decl.unknown_event_action

    # ----------------------------------------------------------------- routing
    def finalize_routes(self) -> None:
        self.default_targets = self.outs.get(self.default_port, ())

    def emit(self, ev: Event, port: str | None) -> None:
        s = self.session
        if ev.seq < 0:
            s.stamp(ev, self.node_id)
        targets = self.default_targets if port is None else self.outs.get(port)
        if targets is None:
            raise ValueError(
                f"node {self.node_id!r} emitted on unknown port {port!r}; declared outputs: "
                f"{list(self.node.outputs)}"
            )
        if targets:
            s.route(targets, ev)
        attrs = ev.attrs
        if attrs is not None and attrs.get(LAST_OF_TURN):  # the turn's last event here
            s.drains.arm(self, self.default_port if port is None else port, ev.turn_id)

    # ----------------------------------------------------------------- direct
    def take_directly(self, consume: Callable[[Event, str], bool]) -> bool:
        """Let ``consume(ev, port)`` take data events of this async host's inputs at once,
        without queueing them and waking the worker, whenever that is indistinguishable
        from queueing: the worker is idle with every input empty, the session has no
        control pending and its scheduler is not dispatching (so nothing can flush or
        reorder the event before the worker would have taken it). ``consume`` returns False
        to queue the event as usual; when it returns True it must have done all the
        worker would (a replay's playback node on an input that caused no output).

        Nothing is installed (False) when queueing itself is observable on some input:
        credit flow control (a grant per delivery), an ``xoff`` or a watermark crossed by
        one item, a limited execution pool.
        """
        s = self.session
        if not self.is_async or (s.pool is not None and s.pool.limited(self.decl.type)):
            return False
        for buf, _ in self.buffers:
            cfg = buf.config
            wi, wm = cfg.watermark_items, cfg.watermark_ms
            gated = cfg.flow_mode is not None and cfg.flow_high is not None
            if (gated and (cfg.flow_mode != "signal" or (cfg.flow_high or 0) <= 1)) \
                    or (wi is not None and wi[0] <= 1) or (wm is not None and wm[0] <= 0):
                return False
        for buf, port in self.buffers:
            buf.direct = self._direct_taker(buf.edge_id if self.by_edge else port, consume)
        return True

    def _direct_taker(self, port: str, consume: Callable[[Event, str], bool]
                      ) -> Callable[[Event], bool]:
        s = self.session
        kinds = self.kinds.get(port) if self.kinds is not None else None

        def take(ev: Event) -> bool:
            task = self.task
            if self.busy or self.current is not None or self.hard_cancel_pending \
                    or task is None or task.done() or not s.scheduler_idle() \
                    or s.node_observer is not None \
                    or (kinds is not None and ev.kind not in kinds) \
                    or (self.max_input_bytes is not None and ev.size > self.max_input_bytes):
                return False
            for b, _ in self.buffers:
                if b.control or b.data or b.telemetry:
                    return False
            if not consume(ev, port):
                return False
            self.events += 1
            return True

        return take

    # ----------------------------------------------------------------- inline
    def dispatch_inline(self, ev: Event, port: str) -> None:
        s = self.session
        if self.kinds is not None and self.unknown(ev, port):
            return
        if s.instrument or s.node_observer is not None:
            t0 = _perf()
            try:
                out = self.process(ev, port)
            except Exception as exc:
                s.node_failed(self, ev, port, exc)
                return
            finally:
                dt = _perf() - t0
                self.node_ns += dt
                if s.node_observer is not None:
                    s.node_observer(self.node_id, ev.turn_id, dt)
        else:
            try:
                out = self.process(ev, port)
            except Exception as exc:
                s.node_failed(self, ev, port, exc)
                return
        self.events += 1
        if out is not None:
            if out.seq < 0:
                s.stamp(out, self.node_id)
            if self.default_targets:
                s.route(self.default_targets, out)

    # ----------------------------------------------------------------- worker
    def _next(self) -> tuple[Event | None, EdgeBuffer | None, str]:
        bufs = self.buffers
        if len(bufs) == 1:
            b, p = bufs[0]
            return b.pop(), b, p
        for b, p in bufs:  # control first across every input
            if b.control:
                return b.control.popleft(), b, p
        # data in the order the session routed it, across every input (never input by
        # input: a stream's end marker on one input would overtake data queued on another)
        best: EdgeBuffer | None = None
        best_port, first = "", 0
        for b, p in bufs:
            at = b.next_arrival()
            if at is not None and (best is None or at < first):
                best, best_port, first = b, p, at
        if best is not None:
            return best.pop(), best, best_port
        for b, p in bufs:
            if b.telemetry:
                return b.telemetry.popleft(), b, p
        return None, None, ""

    async def run_worker(self) -> None:
        s = self.session
        pool = s.pool
        pool_key = self.decl.type if pool is not None and pool.limited(self.decl.type) else None
        fairness = self.decl.fairness_key or s.fairness_key or s.session_id
        drains = s.drains
        n = 0
        while True:
            ev, buf, port = self._next()
            if ev is None:
                self.busy = False
                await self.wakeup.wait()
                continue
            self.busy = True
            if self.by_edge and buf is not None:
                port = buf.edge_id
            if self.kinds is not None and self.unknown(ev, port):
                if drains.armed:
                    drains.check(ev.turn_id)
                continue
            t0 = _perf()
            held = False
            self.current = ev
            try:
                if pool_key is not None:  # inside: a cancel while queued keeps the worker
                    await pool.acquire(pool_key, fairness)  # type: ignore[union-attr]
                    held = True
                    s.pool_waits.add(ev.turn_id, _perf() - t0)
                if self.max_input_bytes is not None and ev.size > self.max_input_bytes:
                    raise ResourceLimitError(
                        f"event of {ev.size} bytes exceeds max_input_bytes={self.max_input_bytes}"
                    )
                if self.timeout_s is not None:
                    out = await self._timed(ev, port)
                else:
                    out = await self.process(ev, port)
            except asyncio.CancelledError:
                t = asyncio.current_task()
                if self.hard_cancel_pending and s.state == "running" and t is not None \
                        and t.cancelling() == 1:
                    # Hard cancel of this turn's in-flight work: the worker lives on.
                    self.hard_cancel_pending = False
                    t.uncancel()
                    self.current = None
                    if self._done_waiters:
                        self._work_done()
                    continue
                raise
            except Exception as exc:
                self.current = None
                s.node_failed(self, ev, port, exc)
                out = None
            finally:
                if held:
                    pool.release(pool_key)  # type: ignore[union-attr,arg-type]
            self.current = None
            if self._done_waiters:
                self._work_done()
            dt = _perf() - t0
            self.node_ns += dt
            if buf is not None:
                buf.note_service(dt)
            if s.node_observer is not None:
                s.node_observer(self.node_id, ev.turn_id, dt)
            self.events += 1
            if out is not None:
                if out.seq < 0:
                    s.stamp(out, self.node_id)
                if self.default_targets:
                    try:
                        s.route(self.default_targets, out)
                    except Exception as exc:  # an output sink failed; keep the worker alive
                        s.sink_failed(out, exc)
            if s.blocked:
                await s.resolve_blocked()
            if drains.armed:  # this event of its turn is done: did the turn's streams end?
                drains.check(ev.turn_id)
            n += 1
            if s.control_pending() or not n & 63:
                await asyncio.sleep(0)

    def unknown(self, ev: Event, port: str) -> bool:
        """Apply ``unknown_event_action`` to an event of an undeclared kind (F-020).

        Returns False when the port declares ``ev.kind`` (process it). Otherwise: ``drop``
        records a ``drop_notice`` (reason ``unknown_event:<kind>``), ``pass_through``
        forwards the event unprocessed on the node's first output, ``fail`` is a node error
        (``schema_validation_error``: fallback or dead letter); each leaves an audit record.
        """
        kinds = self.kinds.get(port) if self.kinds is not None else None
        if kinds is None or ev.kind in kinds or ev.lane is Lane.CONTROL:
            return False
        s = self.session
        action = self.unknown_action
        s.signals.telemetry(kind="audit", node_id=self.node_id, turn_id=ev.turn_id,
                            reason=f"unknown_event_action:{action}:{ev.kind}:{port}")
        self.events += 1
        if action == "pass_through":
            if self.default_targets:
                s.route(self.default_targets, ev)
        elif action == "fail":
            s.node_failed(self, ev, port, UnknownEventError(
                f"event kind {ev.kind!r} on input {port!r} is not in the node's schema "
                f"(accepts {sorted(kinds)}); unknown_event_action=fail"))
        else:
            s.signals.signal(SignalName.DROP_NOTICE, Emitter.RK_13, turn_id=ev.turn_id,
                             edge_id=f"{self.node_id}.{port}", node_id=self.node_id,
                             target_lane=ev.lane, reason=f"unknown_event:{ev.kind}",
                             seq_range=(ev.seq, ev.seq))
        return True

    def when_done(self, ev: Event) -> asyncio.Future[None]:
        """A future resolved once ``ev`` is no longer in flight (done, failed or cancelled)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.current is not ev or self.task is None or self.task.done():
            fut.set_result(None)
        else:
            self._done_waiters.append((ev, fut))
        return fut

    def _work_done(self) -> None:
        keep = []
        for ev, fut in self._done_waiters:
            if fut.done():
                continue
            if self.current is ev:
                keep.append((ev, fut))
            else:
                fut.set_result(None)
        self._done_waiters = keep

    def hard_cancel(self) -> None:
        """Interrupt the in-flight ``process`` call (hard cancel mode)."""
        if self.task is not None and not self.task.done() and not self.hard_cancel_pending:
            self.hard_cancel_pending = True
            self.task.cancel()

    async def _timed(self, ev: Event, port: str) -> Any:
        """``process`` under the node time limit, measured on the session clock."""
        clock = self.session.clock
        if isinstance(clock, SystemClock):
            return await self._watched(ev, port)
        return await clock_timeout(clock, self.timeout_s or 0.0, self.process(ev, port))

    async def _watched(self, ev: Event, port: str) -> Any:
        """``asyncio.timeout(self.timeout_s)`` semantics on one long-lived watchdog timer.

        The watchdog fires at the earliest deadline it was armed for; if the event in
        flight has a later deadline it re-arms there, so it fires at most once per
        ``timeout_s`` while events keep coming, and expiry cancels the worker exactly
        when ``asyncio.timeout`` would (same TimeoutError, same uncancel accounting).
        """
        task = asyncio.current_task()
        if task is None:
            raise RuntimeKernelError("a node host's time limit runs only inside its worker task")
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + (self.timeout_s or 0.0)
        cancelling = task.cancelling()
        self._expired = False
        self._watch_task = task
        if self._watch is None:
            self._watch = loop.call_at(self._deadline, self._on_watch)
        try:
            return await self.process(ev, port)
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                if task.uncancel() <= cancelling:
                    raise TimeoutError from None
            raise
        finally:
            self._watch_task = None
            if self._expired:  # expired but the node swallowed the cancellation
                self._expired = False
                task.uncancel()

    def _on_watch(self) -> None:
        self._watch = None
        task = self._watch_task
        if task is None or task.done():
            return  # idle: the next event re-arms
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._watch = loop.call_at(self._deadline, self._on_watch)
            return
        self._expired = True
        task.cancel()

    def stop_watch(self) -> None:
        """Drop the watchdog timer (the worker stopped)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._watch_task = None

    # ------------------------------------------------------------------ hooks
    async def call_hook(self, name: str, *args: Any) -> NodeHookError | None:
        """Run one hook under the node's hook timeout; returns the error, never raises it."""
        fn = getattr(self.node, name)
        timeout = self.node.hook_timeout_ms / 1000.0
        try:
            res = fn(*args)
            if inspect.isawaitable(res):
                await clock_timeout(self.session.clock, timeout, res)
        except TimeoutError:
            return NodeHookError(
                f"node {self.node_id!r} hook {name} exceeded hook_timeout_ms="
                f"{self.node.hook_timeout_ms}; make the hook faster or raise the timeout"
            )
        except Exception as exc:
            return NodeHookError(f"node {self.node_id!r} hook {name} raised {exc!r}")
        return None
