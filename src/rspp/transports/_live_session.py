"""A live session handle: a running session plus its :class:`LiveTransport`, across connections.

:class:`LiveSessionHandle` implements the :class:`~rspp.transports.LiveSession`
port for any session core (the local ``rspp run`` assembly, or the control
plane governed one of ``rspp serve``). It drives the session's state machine
(:class:`~rspp.turns.SessionLifecycle`, the one owner of the session's states, held
by the turn driver) from its connections and records the connection signals the
state machine emits:

* ``connect``: a first connection is ``CONNECTING -> ACTIVE`` (``connected``); a
  reconnect within the resume window is ``RECONNECTING -> ACTIVE`` (``connected``,
  reason ``resumed``) and resumes the same session (same id, turns and timeline);
  a connection to a closed session is rejected by the state machine (a
  ``SessionRejection`` marker; the state does not change);
* ``disconnected``: ``ACTIVE -> RECONNECTING`` (``disconnected``) at once; after
  ``stall_timeout_s`` ``stall`` and the active turn aborts ``transport_disconnect``
  (then its ``close``); after ``resume_window_s`` the session drains and closes
  (``ended``, reason ``resume_window_expired``) and is cleaned up;
* ``end``: pending turns finish (bounded), then the session closes;
* ``close``: ``DRAINING``, then ``ENDED`` (``ended``) once the session stopped; a
  second close is a ``duplicate_end`` rejection and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from rspp.errors import LifecycleError
from rspp.observability import LogLimit, held_summary
from rspp.transports._egress import AudioFrame
from rspp.transports._event_filter import RECORD_TYPES, RecordForwarder, event_type_of
from rspp.transports._input_rejected import InputRejected
from rspp.transports._live import LiveTransport
from rspp.transports._protocol import (
    EPOCH_MARK_MS,
    EpochEvent,
    ErrorEvent,
    ServerEvent,
    SessionEnd,
    Stats,
)
from rspp.transports._session_port import ClientAudio, SendNow
from rspp.turns import SessionEvent, SessionLifecycle

__all__ = ["LiveSessionHandle", "SessionCore"]

_MARK_S = EPOCH_MARK_MS / 1000
_LOG = logging.getLogger("rspp.transports.input")


class SessionCore(Protocol):
    """What the handle needs of an assembled session."""

    @property
    def session(self) -> Any: ...

    @property
    def driver(self) -> Any: ...

    async def start(self) -> None: ...

    async def finish(self, on_stopped: Callable[[], None] | None = None) -> None: ...

    def capture_debug(self, seconds: float) -> None: ...


class _EgressGate:
    """The last checks of one connection's outbound items, before the client.

    Authority: an item waits while it is unconfirmed and is dropped once it is lost (a
    ``clear`` too: after a failover the client may already play the new holder's audio,
    which a late ``clear`` of this epoch would cut; the close ``authority_lost:<reason>``
    tells the client to drop what it buffered). A frame taken from the queue before its
    turn was fenced (a rotation) is dropped. Protocol 1.2: an ``epoch`` event names the
    epoch of what follows before the first item of a new epoch and again at most every
    ``EPOCH_MARK_MS`` while items flow. The connection's reader task applies them to each
    queued item; a direct send (:meth:`direct`) to an item at once.
    """

    __slots__ = ("_at", "_authority", "_due_at", "_epoch", "transport", "types")

    def __init__(self, transport: LiveTransport, authority: Any,
                 types: frozenset[str] | None = None) -> None:
        self.transport = transport
        self._authority = authority
        #: the event types the client subscribed to (``start.events``); None: every one
        self.types = types
        #: the epoch last named on this connection, and when
        self._epoch: int | None = None
        self._at = 0.0
        self._due_at = 0.0  # when the mark :meth:`mark_due` made last was due

    def passes(self, item: ServerEvent | AudioFrame, may: bool | None) -> bool:
        """False: drop ``item`` (authority lost, or its turn fenced); ``may``: the
        transport's ``may_output()`` once it is not on hold (False)."""
        transport = self.transport
        if may is None:
            transport.fenced_outputs += 1
            return False
        types = self.types
        if types is not None and (t := event_type_of(item)) is not None and t not in types:
            return False  # not subscribed (F-022)
        return not (type(item) is AudioFrame and transport.withheld(item.turn_id))

    def mark_due(self, item: ServerEvent | AudioFrame) -> EpochEvent | None:
        """The ``epoch`` event to send before ``item``, if one is due (:meth:`marked` once
        it was sent)."""
        epoch = getattr(self._authority, "epoch", None)
        if not isinstance(epoch, int):
            return None
        now = time.time()
        if epoch != self._epoch or (now - self._at >= _MARK_S and type(item) is not Stats):
            self._due_at = now
            return EpochEvent(lease_epoch=epoch, sent_at_ms=int(now * 1000))
        return None

    def marked(self, mark: EpochEvent) -> None:
        self._epoch, self._at = mark.lease_epoch, self._due_at

    def direct(self, send_now: SendNow) -> Callable[[ServerEvent | AudioFrame], bool]:
        """The queue's direct path over ``send_now`` (writes an item at once, or False)."""
        transport = self.transport

        def take(item: ServerEvent | AudioFrame) -> bool:
            may = transport.may_output()
            if may is False:
                return False  # on hold: the reader waits for authority
            if not self.passes(item, may):
                return True
            mark = self.mark_due(item)
            if mark is not None:
                if not send_now(mark):
                    return False
                self.marked(mark)
            return send_now(item)  # (declined after its mark: the reader sends it)

        return take


class LiveSessionHandle:
    """One live session driven by network connections (see the module docstring)."""

    def __init__(self, core: SessionCore, transport: LiveTransport, *, tenant_id: str,
                 stats_interval_s: float = 1.0, rejection_lines: int = 5,
                 rejection_interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.core = core
        self.transport = transport
        #: the transport's ``push_audio`` itself (every frame of every connection passes:
        #: no call of this handle's own; see :meth:`LiveTransport.push_audio`)
        self.push_audio = transport.push_audio
        self._tenant_id = tenant_id
        self.stats_interval_s = stats_interval_s
        self._closed = asyncio.Event()
        self._closing = False
        self._lifecycle: asyncio.Task[None] | None = None
        self._stats: asyncio.Task[None] | None = None
        #: the current connection's subscription to in-band records (``start.events``)
        self._records: RecordForwarder | None = None
        self.connections = 0
        self.close_reason: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: the session's states (F-138), owned by the state machine of its turn driver
        self.lifecycle: SessionLifecycle = core.driver.session_lifecycle
        #: the bound on this session's rejection log lines (:meth:`reject`)
        self.rejections = LogLimit(first=rejection_lines, interval_s=rejection_interval_s,
                                   clock=clock)

    @property
    def session_id(self) -> str:
        return str(self.core.session.session_id)

    @property
    def tenant_id(self) -> str:
        return self._tenant_id

    @property
    def sample_rate(self) -> int:
        return self.transport.rate

    @property
    def output_sample_rate(self) -> int:
        return self.transport.out_rate

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def lease_epoch(self) -> int | None:
        """The authority epoch the session runs at (None for a core without one)."""
        authority = getattr(self.core, "authority", None)
        epoch = getattr(authority, "epoch", None)
        return epoch if isinstance(epoch, int) else None

    def _life(self, event: SessionEvent, reason: str) -> bool:
        """Apply ``event`` to the session's state machine; record its signal. False: the
        state machine rejected it (its marker is in ``lifecycle.rejections``)."""
        before = len(self.lifecycle.rejections)
        sig = self.lifecycle.apply(event, reason)
        if sig is not None:
            self.transport.record_signal(sig)
        return len(self.lifecycle.rejections) == before

    # ---------------------------------------------------------- connections
    def connect(self, audio: ClientAudio, send_now: SendNow | None = None
                ) -> AsyncIterator[ServerEvent | AudioFrame]:
        resumed = self.connections > 0
        if resumed and self.transport.queue is not None:
            self._life(SessionEvent.DISCONNECTED, "replaced_by_new_connection")
        event = SessionEvent.RECONNECTED if resumed else SessionEvent.CONNECTED
        accepted = self._life(event, "resumed" if resumed else "connected")
        if self._closing or not accepted:
            why = self.lifecycle.rejections[-1].detail if self.lifecycle.rejections else "closed"
            raise LifecycleError(f"session {self.session_id} is closed ({why})")
        self.connections += 1
        self._cancel_lifecycle()
        queue = self.transport.connect(audio.sample_rate, audio.output_sample_rate,
                                       sequenced=audio.sequenced, acked=audio.playback_acks,
                                       low_latency=audio.low_latency_resampling,
                                       timeline=audio.timeline, transport=audio.transport)
        self._restart_stats(audio.stats)
        gate = _EgressGate(self.transport, getattr(self.core, "authority", None), audio.events)
        self._forward_records(audio.events, queue)
        if send_now is not None:
            queue.direct = gate.direct(send_now)

        async def stream() -> AsyncIterator[ServerEvent | AudioFrame]:
            transport = gate.transport
            while (item := await queue.get()) is not None:
                # hold while authority is unconfirmed (polled: the lease keeper renews on
                # its own schedule); then the same checks as a direct send
                while (may := transport.may_output()) is False:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                if not gate.passes(item, may):
                    continue
                mark = gate.mark_due(item)
                if mark is not None:
                    gate.marked(mark)
                    yield mark
                yield item
            if queue.overflowed:
                raise OverflowError("the client does not read its events fast enough")

        return stream()

    def _forward_records(self, types: frozenset[str] | None, queue: Any) -> None:
        """Subscribe this connection to the session's in-band records of ``types`` (F-022);
        the previous connection's subscription ends."""
        if self._records is not None:
            self._records.close()
            self._records = None
        if types is not None and types & RECORD_TYPES:
            self._records = RecordForwarder(self.core.session.subscriptions, types, queue)

    def may_send(self) -> bool:
        """The output gate where bytes go to the socket (a connection's last check): False
        once the session's authority no longer holds (counted as fenced, dropped)."""
        if self.transport.may_output() is True:
            return True
        self.transport.fenced_outputs += 1
        return False

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        """A task owned by this handle: ``close`` cancels and awaits every one still running."""
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _restart_stats(self, wanted: bool = True) -> None:
        if self._stats is not None:
            self._stats.cancel()
        self._stats = self._spawn(self._stats_loop(), "live-stats") if wanted else None

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval_s)
            q = self.transport.queue
            if q is None:
                return
            q.put_event(self.transport.stats())

    def _cancel_lifecycle(self) -> None:
        task, self._lifecycle = self._lifecycle, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def disconnected(self) -> None:
        if self._closing:
            return
        self.transport.disconnect()
        self._forward_records(None, None)
        if self._stats is not None:
            self._stats.cancel()
        self._life(SessionEvent.DISCONNECTED, "transport_closed")
        self._cancel_lifecycle()
        self._lifecycle = self._spawn(self._after_disconnect(), "live-resume-window")

    async def _after_disconnect(self) -> None:
        opts = self.transport.opts
        await asyncio.sleep(opts.stall_timeout_s)
        self._life(SessionEvent.STALL, f"no_transport_for_{opts.stall_timeout_s:g}s")
        tid = self.core.driver.active_turn
        if tid is not None:
            self.core.session.control("rspp.failure", turn_id=tid, reason="transport_disconnect")
        await asyncio.sleep(max(0.0, opts.resume_window_s - opts.stall_timeout_s))
        self._lifecycle = None
        self._life(SessionEvent.RESUME_TIMEOUT, "resume_window_expired")
        await self.close("resume_window_expired")

    def notify(self, event: ServerEvent) -> None:
        """Queue an event (e.g. a non-fatal ``error``) for the current connection."""
        q = self.transport.queue
        if q is not None:
            q.put_event(event)

    def reject(self, error: ErrorEvent, logged: str, field: str) -> None:
        """Client input the session did not take: ``error`` goes to the client, ``logged``
        (``FIELD: MESSAGE`` without client bytes; ``field`` likewise, e.g. the object of an
        unknown field the client named) to the server's log - the first
        ``rejection_lines`` of each ``rejection_interval_s`` window a line each, the rest
        as one summary line counted by field (a client sending garbage fast does not
        flood the log; the session goes on)."""
        verdict = self.rejections.admit(field)
        if verdict.held is not None:
            self._log_held(verdict.held)
        if verdict.full:
            _LOG.warning("session %s: input rejected (%s): %s", self.session_id, error.code,
                         logged)
        self.notify(error)

    def _log_held(self, held: dict[str, int]) -> None:
        _LOG.warning("session %s: %s", self.session_id,
                     held_summary("input rejections", held))

    def is_fenced(self, turn_id: str) -> bool:
        return self.transport.is_fenced(turn_id)

    # ---------------------------------------------------------------- input
    def _turn_for(self, reason: str, field: str) -> Callable[[], Any]:
        """Opens a turn for one user input that is not speech (typed text, a DTMF digit).

        A proposal refused before it opened (admission ``defer``/``reject``, a stale epoch,
        F-141) has no turn: the input is not taken (nothing answers it, no turn events)
        and the client gets an error naming the refusal.
        """
        driver = self.core.driver

        async def turn_for() -> str | None:
            driver.end_of_utterance(reason)
            decided: tuple[str | None, str | None] = await driver.turn_for_input()
            tid, refusal = decided
            if tid is None:
                why = refusal or "refused"
                deferred = why.startswith("defer:")
                raise InputRejected(field, (
                    f"no turn opened for this input ({why}): it was not taken and gets no "
                    "answer; " + ("send it again later" if deferred else
                                  "the session does not take it")),
                    code="turn_deferred" if deferred else "turn_rejected")
            return tid

        return turn_for

    async def push_text(self, text: str, key: str | None = None) -> None:
        """Typed input; with an idempotency ``key`` it is taken at most once per session
        (across reconnects and failovers: the key window is checkpointed), a duplicate
        is dropped with a ``drop_notice`` lineage marker and a ``duplicate`` error."""
        if key is not None and not self.core.driver.accept_input(key, "input.text"):
            self.notify(ErrorEvent(code="duplicate", field="id",
                                   message=f"input {key!r} was already taken by this session; "
                                   "dropped"))
            return
        try:
            await self.transport.push_text(text, self._turn_for("text_input", "text"))
        except InputRejected as exc:
            if key is not None and exc.code != "bad_input":  # not taken: a retry may reuse it
                self.core.driver.release_input(key)
            raise

    async def push_control(self, kind: str, value: str, attrs: Mapping[str, Any]) -> bool:
        try:
            return await self.transport.push_control(kind, value, attrs,
                                                     self._turn_for(kind, kind))
        except InputRejected as exc:  # its turn was refused: not taken (a call goes on)
            self.notify(ErrorEvent(code=exc.code, field=exc.field, message=str(exc)))
            return False

    def heard(self, turn_id: str, frames: int) -> None:
        self.transport.heard(turn_id, frames)

    async def hang_up(self, reason: str) -> None:
        """The caller hung up: an active turn aborts ``session_end`` at once, then close."""
        if self._closing:
            return
        self.core.driver.end_session()
        await self.close(reason)

    async def interrupt(self) -> None:
        self.core.driver.user_cancel()  # cancel(user_cancel) of the speaking/Active turn

    async def end_of_utterance(self) -> None:
        """The client's push-to-talk release (F-042), in band after the audio sent before."""
        await self.transport.end_of_utterance()

    def capture_debug(self, seconds: float) -> None:
        """The client's ``debug`` message: this session's debug events for ``seconds``."""
        self.core.capture_debug(seconds)

    async def end(self) -> None:
        """No more input: pending turns finish (bounded), then the session closes.

        Like a live microphone, the transport keeps feeding silence in real time while a
        turn is pending (VAD hangover and STT finalisation need media time to pass).
        """
        loop = asyncio.get_running_loop()
        t = self.transport
        frame_s = t.opts.frame_ms / 1000
        deadline = loop.time() + t.opts.end_drain_s
        driver = self.core.driver
        quiet = 0  # frames in a row with nothing pending: the utterance tail is over
        k = 0
        t0 = loop.time()
        # polled: "busy" is derived from several producers (arbiter, nodes, pacer)
        while loop.time() < deadline and quiet < t.opts.end_quiet_frames:
            pending = driver.busy or not t.idle()
            quiet = 0 if pending else quiet + 1
            await t.push_silence()
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * frame_s - loop.time()))
        q = self.transport.queue
        if q is not None:
            q.put_event(self.transport.stats())
            q.put_event(SessionEnd(reason="client_end"))
        await self.close("client_end")

    # ---------------------------------------------------------------- close
    async def close(self, reason: str) -> None:
        if self._closing:
            await self._closed.wait()
            self._life(SessionEvent.END, reason)  # a second end: rejected, nothing changes
            return
        self._closing = True
        self.close_reason = reason
        self._forward_records(None, None)
        if (held := self.rejections.flush()) is not None:
            self._log_held(held)
        if self.lifecycle.state.value in ("ACTIVE", "RECONNECTING"):
            self._life(SessionEvent.DRAIN, reason)
        me = asyncio.current_task()
        owned = {t for t in self._tasks if t is not me}
        for task in owned:
            task.cancel()
        if owned:
            await asyncio.wait(owned)
        try:
            await self.transport.aclose()

            def ended() -> None:
                self._life(SessionEvent.END, reason)

            await self.core.finish(ended)
        finally:
            self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()
