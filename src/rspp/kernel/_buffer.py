"""Bounded, lane-aware edge buffer with overflow strategies (F-043, F-044, F-143..F-148).

One buffer feeds one async node input. Three deques, one per lane; ``pop``
always serves ControlLane first, then DataLane, then TelemetryLane. Control
events are never dropped. Data obeys the BufferConfig bounds (items, bytes,
time in queue, latency contribution) and strategy; every drop or merge leaves
a ``drop_notice`` (contiguous drops are aggregated into one sequence range).
End-of-stream markers (``audio_end``, ``attrs["eos"]``, and the end-of-utterance frame,
``attrs["eou"]``) are never shed for overload: without one the consumer never ends the
turn's stream (a reply whose ``audio_end`` is lost never completes its playback, so its
turn cannot commit; an utterance whose ``eou`` frame is lost is never finalised).
Shedding takes the oldest other data; a marker arriving at a full buffer is
queued past the bound (cancellation still flushes markers with their turn).
Watermark crossings emit ``watermark`` and run the plan's action; flow control
emits ``flow_xoff``/``flow_xon``/``credit_grant``; sync groups follow the sync
drop policy (``discontinuity`` markers).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rspp.contracts import Emitter, Lane, SignalName
from rspp.kernel._bufferspec import BufferConfig
from rspp.kernel._clock import SystemClock
from rspp.kernel._events import Event
from rspp.kernel._pressure import PressureMixin

if TYPE_CHECKING:
    from rspp.kernel._handles import Clock
    from rspp.kernel._signals import SignalLog

__all__ = ["ACCEPTED", "BLOCKED", "DROPPED", "MERGED", "SHED_REASONS", "BufferStats", "EdgeBuffer",
           "LaneEdgeBuffer", "OrderedEdgeBuffer", "OrderedLaneEdgeBuffer", "Wakeup"]

ACCEPTED, DROPPED, MERGED, BLOCKED = 0, 1, 2, 3
_CONTROL, _TELEMETRY = Lane.CONTROL, Lane.TELEMETRY
_NS_PER_MS = 1_000_000
#: drop reasons that are load shedding (a bound of the edge was exceeded), as opposed to
#: cancellation, merging, sampling of telemetry or policy drops
SHED_REASONS = frozenset({
    "max_queue_items_exceeded", "max_queue_bytes_exceeded", "max_queue_ms_exceeded",
    "max_latency_contribution_exceeded", "max_block_time_exceeded",
    "max_queue_items_exceeded:sampled_out", "max_queue_bytes_exceeded:sampled_out",
    "max_latency_contribution_exceeded:sampled_out"})


def is_stream_end(ev: Event) -> bool:
    """``ev`` ends a stream of its turn (``audio_end`` or ``attrs["eos"]``) or an utterance
    (the VAD's end-of-utterance frame, ``attrs["eou"]``: the speech boundary its STT
    finalises on; shed, it would strand the turn the VAD opened)."""
    if ev.kind == "audio_end":
        return True
    attrs = ev.attrs
    return bool(attrs and (attrs.get("eos") or attrs.get("eou")))


class Wakeup:
    """One waiter, many notifiers (every input buffer of one consumer).

    ``last_ns`` is the latest enqueue stamp given on the inputs of a consumer with
    several (:class:`OrderedEdgeBuffer`): the stamps order their arrivals.
    """

    __slots__ = ("_loop", "fut", "last_ns")

    def __init__(self) -> None:
        self.fut: asyncio.Future[None] | None = None
        self.last_ns = 0
        #: the loop of the first wait (``get_running_loop`` costs a ``getpid`` each call)
        self._loop: asyncio.AbstractEventLoop | None = None

    def fire(self) -> None:
        f = self.fut
        if f is not None:
            self.fut = None
            if not f.done():
                f.set_result(None)

    def wait(self) -> asyncio.Future[None]:
        """What to await for the next :meth:`fire` (the future itself: a worker that
        waits for every event it takes makes no coroutine of this)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        f = loop.create_future()
        self.fut = f
        return f


class _Pending:
    """A contiguous run of drops not yet reported as one ``drop_notice``."""

    __slots__ = ("end", "lane", "reason", "start", "turn_id")

    def __init__(self, seq: int, reason: str, turn_id: str | None, lane: Lane) -> None:
        self.start = self.end = seq
        self.reason = reason
        self.turn_id = turn_id
        self.lane = lane


class BufferStats:
    """Counters of one edge buffer (observable, F-044)."""

    __slots__ = ("accepted", "blocked", "delivered", "dropped", "expired", "max_depth", "merged")

    def __init__(self) -> None:
        self.accepted = self.delivered = self.dropped = self.merged = 0
        self.expired = self.blocked = self.max_depth = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class EdgeBuffer(PressureMixin):
    """The queue on one edge; owned by the session actor (no locks)."""

    def __init__(
        self, edge_id: str, config: BufferConfig, signals: SignalLog, clock: Clock
    ) -> None:
        # 29 instance attributes (with PressureMixin's): a 30th passes CPython 3.11's
        # shared-key limit and makes every attribute read of the hot path slower (~4% of
        # benchmarks/hop_overhead.py in instructions); put a new one on a slotted helper.
        self.edge_id = edge_id
        self.config = config
        self.signals = signals
        self.clock = clock
        self.control: deque[Event] = deque()
        self.data: deque[Event] = deque()
        self.telemetry: deque[Event] = deque()
        self.nbytes = 0
        self.stats = BufferStats()
        self.service_ns = 0.0  # EWMA of the consumer's per-item service time
        self.wakeup: Wakeup | None = None
        self._space: asyncio.Future[None] | None = None
        self._pending: _Pending | None = None
        self._above_items = False
        self._above_ms = False
        self._xoff = False
        cfg = config
        self._gated = cfg.flow_mode is not None and cfg.flow_high is not None
        self.credits = cfg.flow_high or 0
        self._consumed_since_grant = 0
        self._sample_n = 0
        self._tel_n = 0
        self._dropped_sync: deque[str] = deque(maxlen=64)
        self._disc_n = 0
        self._next_disc: str | None = None
        self.on_pressure: list[Callable[[Any, str], None]] = []
        #: told about every reported run of shed data ``(buffer, reason, first_seq,
        #: last_seq, turn_id)``: overload, not cancellation (the session's shed records)
        self.on_shed: Callable[[EdgeBuffer, str, int, int, str | None], None] | None = None
        #: A lossless (file-fed) session: data is never dropped for time spent queued
        #: or for its latency contribution (on a slow machine that is not staleness).
        self.lossless = False
        #: A full buffer blocks the producer, without the shedding bound (the ingress of a
        #: lossless session: the file source waits, see ``SessionActor.offer_blocking``).
        self.blocking = False
        #: takes a data event straight to the consumer instead of queueing it, when that
        #: has the same observable effect (``NodeHost.take_directly``); False: queue it
        self.direct: Callable[[Event], bool] | None = None

    # ------------------------------------------------------------ producer side
    def __len__(self) -> int:
        return len(self.control) + len(self.data) + len(self.telemetry)

    def offer(self, ev: Event) -> int:
        """Try to enqueue; returns ACCEPTED, DROPPED, MERGED or BLOCKED."""
        lane = ev.lane
        if lane is _CONTROL:
            return self._offer_control(ev)
        if lane is _TELEMETRY:
            return self._offer_telemetry(ev)
        return self._offer_data(ev)

    def _offer_control(self, ev: Event) -> int:
        if len(self.control) >= self.config.control_max_items:
            # Control is never dropped: past its bound it displaces the oldest telemetry,
            # else the oldest data (lane priority: telemetry is shed first, F-147).
            if self.telemetry:
                self._note_drop(self.telemetry.popleft(), "control_overflow_displaced_telemetry",
                                Lane.TELEMETRY)
                self.stats.dropped += 1
            else:
                self._drop_oldest("control_overflow_displaced_data")
        self.control.append(ev)
        self._wake()
        return ACCEPTED

    def _offer_telemetry(self, ev: Event) -> int:
        cfg = self.config
        if len(self.telemetry) >= cfg.telemetry_max_items and not (
                ev.lane is not _TELEMETRY and is_stream_end(ev)):  # (a TelemetryLane edge's)
            self._tel_n += 1
            if cfg.telemetry_handling == "sample" and self._tel_n % cfg.sample_every == 0:
                self.telemetry.popleft()
                self.telemetry.append(ev)
                self._wake()
                return ACCEPTED
            if cfg.telemetry_handling == "drop":
                self._note_drop(ev, "telemetry_overflow", Lane.TELEMETRY)
            self.stats.dropped += 1
            return DROPPED
        self.telemetry.append(ev)
        self._wake()
        return ACCEPTED

    def _offer_data(self, ev: Event) -> int:
        if self.direct is not None and self._direct(ev):
            return ACCEPTED
        cfg = self.config
        data = self.data
        if self._dropped_sync and ev.sync_id is not None and ev.sync_id in self._dropped_sync:
            self._drop(ev, "sync_group_dropped")
            return DROPPED
        if self._gated and (
            (self._xoff and cfg.flow_mode != "credit")
            or (self.credits <= 0 and cfg.flow_mode != "signal")
        ):
            self.stats.blocked += 1
            return BLOCKED
        now = self.clock.monotonic_ns()
        lossless = self.lossless
        if data and not lossless:
            self._expire(now)
        strategy = cfg.strategy
        if strategy == "latest_only":
            while (old := self._pop_sheddable()) is not None:
                self._drop(old, "superseded_latest_only")
        elif strategy == "merge" and data and self._merge_into_tail(ev):
            return MERGED
        reason = self._overflow_reason(ev)
        if reason is not None:
            if strategy == "block" or self.blocking:
                self.stats.blocked += 1
                return BLOCKED
            if is_stream_end(ev):  # never shed; displaces nothing either
                self._append(ev, now)
                return ACCEPTED
            if strategy == "sample":
                self._sample_n += 1
                if self._sample_n % cfg.sample_every:
                    self._drop(ev, reason + ":sampled_out")
                    return DROPPED
            elif strategy == "drop" and cfg.drop_from == "newest":
                self._drop(ev, reason)
                return DROPPED
            if not self._make_room(ev, reason):
                self._drop(ev, reason)
                return DROPPED
        self._append(ev, now)
        return ACCEPTED

    def _direct(self, ev: Event) -> bool:
        """Hand ``ev`` to :attr:`direct` when queueing it on this empty buffer would only
        queue it (no drop, merge, discontinuity, watermark or flow signal) and the consumer
        takes it; the counters move as for an event queued and delivered at once."""
        cfg = self.config
        # (``_overflow_reason(ev)`` of an empty buffer, inline: every frame passes here)
        if self.data or self._xoff or self._next_disc is not None or ev.sync_id is not None \
                or self._above_items or self._above_ms or cfg.max_items <= 0 \
                or self.nbytes + ev.size > cfg.max_bytes:
            return False
        if self.direct is None or not self.direct(ev):
            return False
        if self._gated:  # signal-mode flow control (NodeHost.take_directly allows no other)
            self.credits -= 1
        st = self.stats
        st.accepted += 1
        st.delivered += 1
        if not st.max_depth:
            st.max_depth = 1
        return True

    def shed(self, ev: Event, reason: str = "max_block_time_exceeded") -> int:
        """Deterministic shedding after a bounded block (F-148)."""
        if is_stream_end(ev):
            self._append(ev, self.clock.monotonic_ns())
            return ACCEPTED
        if self.config.drop_from == "newest" or not self.data:
            self._drop(ev, reason)
            return DROPPED
        if not self._make_room(ev, reason):
            self._drop(ev, reason)
            return DROPPED
        self._append(ev, self.clock.monotonic_ns())
        return ACCEPTED

    def _append(self, ev: Event, now: int) -> None:
        ev.enq_ns = now
        if self._next_disc is not None:
            ev.discontinuity_id = self._next_disc
            self._next_disc = None
        self.data.append(ev)
        self.nbytes += ev.size
        st = self.stats
        st.accepted += 1
        n = len(self.data)
        if n > st.max_depth:
            st.max_depth = n
        if self._gated:
            self.credits -= 1
            high = self.config.flow_high or n + 1
            if not self._xoff and self.config.flow_mode != "credit" and n >= high:
                self._xoff = True
                self.signals.signal(
                    SignalName.FLOW_XOFF, Emitter.RK_14, edge_id=self.edge_id,
                    target_lane=Lane.DATA, reason="high_watermark_reached", turn_id=ev.turn_id,
                )
        cfg = self.config
        if cfg.watermark_items is not None or cfg.watermark_ms is not None:
            self._check_watermarks(now)
        w = self.wakeup  # (``_wake`` inline: a call less per queued event)
        if w is not None and w.fut is not None:
            w.fire()

    def _overflow_reason(self, ev: Event) -> str | None:
        cfg = self.config
        n = len(self.data)
        if n >= cfg.max_items:
            return "max_queue_items_exceeded"
        if self.nbytes + ev.size > cfg.max_bytes:
            return "max_queue_bytes_exceeded"
        if n and not self.lossless and n * self.service_ns > cfg.max_latency_ms * _NS_PER_MS:
            return "max_latency_contribution_exceeded"
        return None

    def _make_room(self, ev: Event, reason: str) -> bool:
        data = self.data
        merge = self.config.strategy == "merge"
        while data and self._overflow_reason(ev) is not None:
            if merge:  # finals are never shed while a partial can go instead (F-053)
                victim = next((e for e in data if not e.final and not is_stream_end(e)), None)
                if victim is not None:
                    data.remove(victim)
                    self.nbytes -= victim.size
                    self._drop(victim, reason)
                    continue
            old = self._pop_sheddable()
            if old is None:  # only end-of-stream markers are left
                break
            self._drop(old, reason)
        return self._overflow_reason(ev) is None

    def _merge_into_tail(self, ev: Event) -> bool:
        tail = self.data[-1]
        if tail.final or tail.kind != ev.kind:
            return False
        key = ev.attrs.get("segment") if ev.attrs else None
        if (tail.attrs.get("segment") if tail.attrs else None) != key:
            return False
        self.data.pop()
        self.nbytes -= tail.size
        merged = (tail.merged_from or ((tail.event_id or str(tail.seq)),))
        ev.merged_from = (*merged, ev.event_id or str(ev.seq))[-64:]
        ev.enq_ns = tail.enq_ns
        self.data.append(ev)
        self.nbytes += ev.size
        self.stats.merged += 1
        self._note_drop(tail, "merged_coalesced")
        self._wake()
        return True

    def _expire(self, now: int) -> None:
        limit = now - self.config.max_queue_ms * _NS_PER_MS
        data = self.data
        while data and data[0].enq_ns < limit:
            old = self._pop_sheddable(limit)
            if old is None:
                return
            self.stats.expired += 1
            self._drop(old, "max_queue_ms_exceeded")

    # ----------------------------------------------------------------- drops
    def _pop_sheddable(self, enqueued_before: int | None = None, *,
                       keep_newest: bool = False) -> Event | None:
        """Remove the oldest data overload may shed (not an end-of-stream marker), if it
        was enqueued before ``enqueued_before`` (ns) (and is not the newest item, with
        ``keep_newest``); None when there is none."""
        data = self.data
        for i, ev in enumerate(data):
            if ((enqueued_before is not None and ev.enq_ns >= enqueued_before)
                    or (keep_newest and i == len(data) - 1)):
                return None
            if not is_stream_end(ev):
                del data[i]
                self.nbytes -= ev.size
                return ev
        return None

    def _drop_oldest(self, reason: str) -> None:
        old = self._pop_sheddable()
        if old is not None:
            self._drop(old, reason)

    def _drop(self, ev: Event, reason: str) -> None:
        self.stats.dropped += 1
        cfg = self.config
        sid = ev.sync_id
        if sid is not None and cfg.sync_policy != "no_sync":
            if cfg.sync_policy == "atomic_drop":
                if sid not in self._dropped_sync:
                    self._dropped_sync.append(sid)
                    keep = deque(e for e in self.data if e.sync_id != sid)
                    for e in self.data:
                        if e.sync_id == sid:
                            self.nbytes -= e.size
                            self.stats.dropped += 1
                            self._note_drop(e, "sync_group_dropped")
                    self.data = keep
            else:
                self._disc_n += 1
                disc = f"{self.edge_id}:disc:{self._disc_n}"
                self._next_disc = disc
                self.signals.signal(
                    SignalName.DISCONTINUITY, Emitter.RK_15, edge_id=self.edge_id,
                    sync_id=sid, sync_domain=cfg.sync_domain or self.edge_id,
                    discontinuity_id=disc, reason=reason, turn_id=ev.turn_id,
                )
        self._note_drop(ev, reason)

    def _note_drop(self, ev: Event, reason: str, lane: Lane = Lane.DATA) -> None:
        p = self._pending
        seq = max(ev.seq, 0)
        if p is not None and p.reason == reason and p.end == seq - 1:
            p.end = seq
            return
        self.flush_notices()
        self._pending = _Pending(seq, reason, ev.turn_id, lane)

    def flush_notices(self) -> None:
        """Emit the aggregated pending ``drop_notice`` (if any)."""
        p = self._pending
        if p is None:
            return
        self._pending = None
        self.signals.signal(
            SignalName.DROP_NOTICE, Emitter.RK_12, edge_id=self.edge_id,
            target_lane=p.lane, reason=p.reason, seq_range=(p.start, p.end), turn_id=p.turn_id,
        )
        if self.on_shed is not None and p.lane is Lane.DATA and p.reason in SHED_REASONS:
            self.on_shed(self, p.reason, p.start, p.end, p.turn_id)

    def drop_turn(self, turn_id: str, reason: str = "cancelled", *, notice: bool = True) -> int:
        """Flush queued data of one turn (cancellation, F-036 hook); returns the count.

        Without ``notice`` the flush leaves no ``drop_notice`` (a replay takes the
        recorded cancellation flushes as given: how much was still queued when the cancel
        landed is the live session's scheduling, see ``SessionActor.recorded_flushes``)."""
        keep: deque[Event] = deque()
        n = 0
        for e in self.data:
            if e.turn_id == turn_id:
                n += 1
                self.nbytes -= e.size
                self.stats.dropped += 1
                if notice:
                    self._note_drop(e, reason)
            else:
                keep.append(e)
        self.data = keep
        self.flush_notices()
        return n

    # ------------------------------------------------------------ consumer side
    def pop(self) -> Event | None:
        """Next event: control first, then data, then telemetry (F-142)."""
        if self.control:
            return self.control.popleft()
        data = self.data
        if data:
            if not self.lossless:
                now = self.clock.monotonic_ns()
                if data[0].enq_ns < now - self.config.max_queue_ms * _NS_PER_MS:
                    self._expire(now)
                    data = self.data  # (an atomic sync-group drop replaces the deque)
            if data:
                ev = data.popleft()
                self.nbytes -= ev.size
                self.stats.delivered += 1
                if self._gated or self._above_items or self._above_ms:
                    self._after_pop()
                if self._space is not None:
                    self._release_space()
                return ev
        if self.telemetry:
            return self.telemetry.popleft()
        return None

    def next_arrival(self) -> int | None:
        """Enqueue stamp of the next data event, once data that outlived ``max_queue_ms``
        is dropped; None when no data is queued. Across the inputs of one consumer
        (:class:`OrderedEdgeBuffer`) the smallest stamp is the data the session routed first."""
        if not self.data:
            return None
        if not self.lossless:
            self._expire(self.clock.monotonic_ns())
        data = self.data
        return data[0].enq_ns if data else None

    def note_service(self, ns: int) -> None:
        """Update the consumer service-time estimate (latency contribution bound)."""
        self.service_ns = ns if self.service_ns == 0 else self.service_ns * 0.875 + ns * 0.125

    # ------------------------------------------------------------------ waits
    def _wake(self) -> None:
        w = self.wakeup
        if w is not None and w.fut is not None:
            w.fire()

    def _release_space(self) -> None:
        s = self._space
        self._space = None
        if s is not None and not s.done():
            s.set_result(None)

    async def wait_space(self, clock_sleep_ms: float) -> bool:
        """Wait (bounded, on the session clock) until a data slot frees; False on timeout."""
        loop = asyncio.get_running_loop()
        if self._space is None or self._space.done():
            self._space = loop.create_future()
        space = self._space
        w: asyncio.Future[bool] = loop.create_future()

        def _set(ok: bool) -> None:
            if not w.done():
                w.set_result(ok)

        space.add_done_callback(lambda _f: _set(True))
        seconds = clock_sleep_ms / 1000.0
        call_later = getattr(self.clock, "call_later", None)
        timers: list[asyncio.Future[Any] | asyncio.TimerHandle] = []
        if isinstance(self.clock, SystemClock):
            timers.append(loop.call_later(seconds, _set, False))
        else:
            if call_later is not None:  # precise passive deadline on a virtual clock
                timers.append(call_later(seconds, lambda: _set(False)))
            backstop = asyncio.ensure_future(self.clock.sleep(seconds))  # moves time if idle
            backstop.add_done_callback(lambda _f: _set(False))
            timers.append(backstop)
        try:
            return await w
        finally:
            for t in timers:
                t.cancel()


class _EdgeLane:
    """``offer`` of an edge whose spec sets ``lane:`` ControlLane or TelemetryLane (F-147):
    its DataLane events are queued on that lane (served first and never dropped, or served
    last and shed first under ``telemetry_max_items``); an event a node marked ControlLane
    or TelemetryLane keeps its own lane. The events themselves are unchanged (the consumer
    processes them as data). A TelemetryLane edge never sheds an end-of-stream marker.
    A mixin, so the DataLane edges' ``offer`` keeps its hot path."""

    __slots__ = ()

    def offer(self, ev: Event) -> int:
        buf: EdgeBuffer = self  # type: ignore[assignment]
        lane = ev.lane
        if lane is _CONTROL or (lane is not _TELEMETRY and buf.config.lane is _CONTROL):
            return buf._offer_control(ev)
        return buf._offer_telemetry(ev)


class LaneEdgeBuffer(_EdgeLane, EdgeBuffer):
    """An :class:`EdgeBuffer` of a ControlLane or TelemetryLane edge (see ``_EdgeLane``)."""


class OrderedEdgeBuffer(EdgeBuffer):
    """One of several input buffers of one consumer (all share its :class:`Wakeup`).

    Enqueue stamps (``enq_ns``) are strictly increasing across all of them, so the
    consumer takes its inputs' data in the order the session routed it, input by input
    never (``NodeHost._next``): a stream's end marker on one input must not overtake the
    data it closes on another. Single-input buffers skip the stamp bookkeeping.
    """

    def _append(self, ev: Event, now: int) -> None:
        w = self.wakeup
        if w is not None:
            if now <= w.last_ns:
                now = w.last_ns + 1
            w.last_ns = now
        super()._append(ev, now)


class OrderedLaneEdgeBuffer(_EdgeLane, OrderedEdgeBuffer):
    """An :class:`OrderedEdgeBuffer` of a ControlLane or TelemetryLane edge."""
