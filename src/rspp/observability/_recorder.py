"""Timeline recorder (OR-02): non-blocking local append into a bounded buffer.

:meth:`TimelineRecorder.append` never awaits and does O(1) work: classify the
record, apply the recording level, push onto a bounded ``deque`` and wake the
exporter if it waits. Durable export happens in :class:`~rspp.observability.
TimelineExporter`, a separate task that drains the buffer, so a stalled sink
only fills the buffer; it can never slow ``append`` (F-154). The one exception
is a turn's terminal record (``commit``, ``abort``) with a local file behind the
exporter: :attr:`TimelineRecorder.on_terminal` writes what is buffered to the
file (one ``os.write``) before the record goes on to the transport, so a client
never sees a commit that a killed runtime's timeline lacks.

Buffer accounting has three pools sharing one ordered deque:

* regular (``capacity``): data/telemetry event records;
* control (``control_reserve``): control signals, decision outcomes, turn
  transitions, plans and the recorder's own markers;
* evidence (``evidence_reserve``): OR-02 evidence, never dropped by downgrade.

Under pressure the level ladder downgrades ``L2 -> L1 -> L0`` (see
:mod:`._levels`), each step recorded by a ``recording_level_downgraded``
ControlSignal (emitted_by ``OR-02``, reason ``buffer_pressure:<from>-><to>``).
A turn's ``ResolvedTurnPlan`` sets the configured level (its
``recording_policy``) when it is recorded: a lower plan level applies at once
(one marked step at a time, reason ``plan_policy:<from>-><to>``), a higher one
only through turn boundaries. When a pool is full the record is dropped and
counted (as are appends after :meth:`close`); when the evidence pool is full
:meth:`append_evidence` returns ``False`` so the kernel ends the turn
``abort(recording_evidence_unavailable)`` (NF-028, truth table T9).
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Final

import msgspec

from rspp.contracts import (
    SCHEMA_VERSION,
    ControlSignal,
    DecisionOutcome,
    Emitter,
    EventRecord,
    EventScope,
    Lane,
    PayloadClass,
    RecordingLevel,
    ResolvedTurnPlan,
    SignalName,
    TurnTransition,
)
from rspp.kernel._handles import Clock
from rspp.observability._evidence import EVIDENCE_KIND, OR02Evidence
from rspp.observability._levels import _BY_RANK, _RANK, LevelLadder, PayloadTier, level_allows
from rspp.observability._sampling import DebugCapture, SamplingPolicy

__all__ = ["BufferedItem", "RecorderOptions", "RecorderStats", "TimelineRecorder"]

REGULAR: Final = 0
CONTROL: Final = 1
EVIDENCE: Final = 2

#: a turn's terminal signals: written to a local timeline before they go on (F-154)
_TERMINAL = frozenset({SignalName.COMMIT, SignalName.ABORT})

#: the records that carry the session envelope (the recorder's context, sampling)
_ENVELOPES = (EventRecord, ControlSignal)

#: the timeline ``kind`` of each record type
TIMELINE_KINDS: dict[type, str] = {
    EventRecord: "event_record",
    ControlSignal: "control_signal",
    DecisionOutcome: "decision_outcome",
    TurnTransition: "turn_transition",
    ResolvedTurnPlan: "resolved_turn_plan",
    OR02Evidence: EVIDENCE_KIND,
}


class RecorderOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Buffer bounds and level thresholds of one recorder."""

    level: RecordingLevel = RecordingLevel.L2
    capacity: int = 4096
    control_reserve: int = 1024
    evidence_reserve: int = 256
    l1_fill: float = 0.5
    l0_fill: float = 0.75
    upgrade_fill: float = 0.25

    def __post_init__(self) -> None:
        for name in ("capacity", "control_reserve", "evidence_reserve"):
            if getattr(self, name) < 1:
                raise ValueError(f"RecorderOptions.{name} must be >= 1")
        if not 0 < self.upgrade_fill < self.l1_fill <= self.l0_fill <= 1:
            raise ValueError(
                "RecorderOptions thresholds must satisfy 0 < upgrade_fill < l1_fill <= l0_fill <= 1"
            )


class RecorderStats(msgspec.Struct, kw_only=True):
    """Counters a test or the metrics facade can read at any time."""

    appended: int = 0
    dropped: Counter[str] = msgspec.field(default_factory=Counter)
    payloads_stripped: int = 0
    downgrades: int = 0
    upgrades: int = 0
    evidence_appended: int = 0
    evidence_rejected: int = 0
    last_evidence_error: str | None = None
    unsampled_skipped: int = 0
    debug_events: int = 0


class BufferedItem(msgspec.Struct, frozen=True, array_like=True):
    """One buffered timeline line before export."""

    pool: int
    kind: str
    record: msgspec.Struct
    payload: object | None


def payload_tier(payload: object | None) -> PayloadTier:
    """``audio`` for payloads carrying or referencing audio, ``text`` otherwise."""
    if payload is None:
        return "none"
    if isinstance(getattr(payload, "data", None), bytes | bytearray | memoryview):
        return "audio"
    if "audio" in type(payload).__name__.lower() or hasattr(payload, "sha256"):
        return "audio"
    fields = getattr(payload, "fields", None)
    if isinstance(fields, dict) and "bytes_b64" in fields:  # raw bytes kept as a debug field
        return "audio"
    return "text"


class TimelineRecorder:
    """Bounded, non-blocking timeline buffer with level downgrade and OR-02 evidence."""

    def __init__(
        self,
        clock: Clock,
        options: RecorderOptions | None = None,
        *,
        sampling: SamplingPolicy | None = None,
        debug: DebugCapture | None = None,
    ) -> None:
        self.options = options or RecorderOptions()
        self._clock = clock
        self._sampling = sampling
        #: the session was not sampled (F-071): only its OR-02 evidence is recorded
        self._unsampled = False
        self.debug_capture = debug or DebugCapture(clock)
        self.ladder = LevelLadder(
            configured=self.options.level,
            current=self.options.level,
            l1_fill=self.options.l1_fill,
            l0_fill=self.options.l0_fill,
            upgrade_fill=self.options.upgrade_fill,
        )
        self.stats = RecorderStats()
        self._buffer: deque[BufferedItem] = deque()
        self._used = [0, 0, 0]
        self._limits = (
            self.options.capacity,
            self.options.control_reserve,
            self.options.evidence_reserve,
        )
        #: the exporter waiting in :meth:`wait_ready` (woken by the next push or close)
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self._marker_seq = 0
        self._ctx: tuple[str, str, str | None, int] = ("recorder", "unknown", None, 0)
        self._epoch = 0
        #: called once a turn's terminal record (commit, abort) is buffered, before
        #: :meth:`append` returns, so before the record reaches anyone else: the exporter
        #: of a local timeline file writes what is buffered there (F-154)
        self.on_terminal: Callable[[], None] | None = None

    # -- state ----------------------------------------------------------
    @property
    def level(self) -> RecordingLevel:
        return self.ladder.current

    @property
    def fill(self) -> float:
        """Fraction of the regular pool in use (the pressure signal)."""
        return self._used[REGULAR] / self._limits[REGULAR]

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- appends (never await) ------------------------------------------
    def append(self, record: msgspec.Struct, payload: object | None = None) -> bool:
        """Record ``record`` (and ``payload`` if the level allows); ``True`` when buffered."""
        if self._closed:
            self.stats.dropped["after_close"] += 1
            return False
        kind = TIMELINE_KINDS.get(type(record))
        if kind is None:
            raise TypeError(
                f"cannot record {type(record).__name__}; record a contract struct or OR02Evidence"
            )
        if kind == EVIDENCE_KIND:
            return self.append_evidence(record)  # type: ignore[arg-type]
        if isinstance(record, _ENVELOPES):
            self._remember(record)
            if self._sampling is not None:
                self._unsampled = not self._sampling.sampled(
                    record.session_id, record.pipeline_version
                )
                if self._unsampled:
                    self.stats.unsampled_skipped += 1
                    return False
        else:
            if type(record) is ResolvedTurnPlan:
                self._apply_plan_policy(record.recording_policy.recording_level)
            if self._unsampled:  # the session's plans and transitions follow its sample
                self.stats.unsampled_skipped += 1
                return False
        pool = REGULAR if type(record) is EventRecord else CONTROL
        ladder = self.ladder
        if pool == REGULAR:
            # (``ladder.after_fill(self.fill)``, called only when it can move: every frame
            # of a session is recorded here)
            fill = self._used[REGULAR] / self._limits[REGULAR]
            if fill >= ladder.l1_fill or fill >= ladder.l0_fill:
                moved = ladder.after_fill(fill)
                if moved is not None:
                    self._downgraded(*moved)
            if record.lane == Lane.TELEMETRY and ladder.current == RecordingLevel.L0:  # type: ignore[attr-defined]
                self.stats.dropped["telemetry_at_L0"] += 1
                return False
        if payload is not None and not level_allows(ladder.current, payload_tier(payload)):
            payload = None
            self.stats.payloads_stripped += 1
        ok = self._push(BufferedItem(pool, kind, record, payload))
        if ok and type(record) is ControlSignal:
            if record.signal in _TERMINAL and self.on_terminal is not None:
                self.on_terminal()
            elif record.signal == SignalName.CLOSE:
                self.turn_boundary()
        return ok

    def append_evidence(self, evidence: OR02Evidence | Mapping[str, object]) -> bool:
        """Append one turn's OR-02 evidence; ``False`` means the kernel must abort the turn.

        The kernel (which cannot import this package) may pass a mapping of the
        :class:`OR02Evidence` fields (values may be contract structs); it is
        converted once per turn, and an incomplete mapping is refused (``False``,
        reason in ``stats.last_evidence_error``).
        """
        if self._closed:
            self.stats.evidence_rejected += 1
            return False
        if not isinstance(evidence, OR02Evidence):
            try:
                evidence = msgspec.convert(evidence, OR02Evidence)
            except msgspec.ValidationError as exc:
                self.stats.evidence_rejected += 1
                self.stats.last_evidence_error = str(exc)
                return False
        if not self._push(BufferedItem(EVIDENCE, EVIDENCE_KIND, evidence, None)):
            self.stats.evidence_rejected += 1
            return False
        self.stats.evidence_appended += 1
        return True

    def debug_event(self, record: EventRecord) -> bool:
        """Record a debug event only for sessions with debug capture active (F-076)."""
        if not self.debug_capture.active(record.session_id):
            return False
        self.stats.debug_events += 1
        return self._push(BufferedItem(REGULAR, "event_record", record, None))

    def turn_boundary(self) -> None:
        """Called at each turn close: the only point where the level may re-upgrade."""
        moved = self.ladder.at_turn_boundary(self.fill)
        if moved is None:
            return
        self.stats.upgrades += 1
        session_id, pipeline_version, _turn, seq = self._ctx
        now_ns = self._clock.monotonic_ns()
        self._marker_seq += 1
        marker = EventRecord(
            schema_version=SCHEMA_VERSION,
            event_scope=EventScope.SESSION,
            session_id=session_id,
            pipeline_version=pipeline_version,
            event_id=f"or02-level-{self._marker_seq}",
            lane=Lane.TELEMETRY,
            transport_sequence=None,
            runtime_sequence=seq,
            runtime_timestamp_ms=now_ns // 1_000_000,
            wall_clock_timestamp_ms=self._clock.wall_ms(),
            payload_class=PayloadClass.METADATA,
            reason=f"recording_level_upgraded:{moved[0]}->{moved[1]}",
        )
        self._push(BufferedItem(CONTROL, "event_record", marker, None))

    def close(self) -> None:
        """Stop accepting records; the exporter drains what is buffered, then returns."""
        self._closed = True
        self._wake()

    # -- exporter side --------------------------------------------------
    def peek(self, limit: int) -> list[BufferedItem]:
        """Up to ``limit`` oldest items, left in the buffer until :meth:`consume`."""
        return list(islice(self._buffer, limit))

    def consume(self, n: int) -> None:
        """Remove the ``n`` oldest items after they were durably exported."""
        for _ in range(min(n, len(self._buffer))):
            item = self._buffer.popleft()
            self._used[item.pool] -= 1

    def take_all(self) -> list[BufferedItem]:
        """Remove and return every buffered item (:meth:`peek` and :meth:`consume` of them
        all at once, for a consumer that cannot fail: the replay rig's lines)."""
        buffer = self._buffer
        if not buffer:
            return []
        items = list(buffer)
        buffer.clear()
        used = self._used
        used[0] = used[1] = used[2] = 0
        return items

    async def wait_ready(self) -> None:
        """Wait until an item is buffered or the recorder is closed (at once if so)."""
        if self._buffer or self._closed:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    # -- internals ------------------------------------------------------
    def _push(self, item: BufferedItem) -> bool:
        if self._used[item.pool] >= self._limits[item.pool]:
            self.stats.dropped[item.kind] += 1
            return False
        self._buffer.append(item)
        self._used[item.pool] += 1
        self.stats.appended += 1
        if self._waiters:
            self._wake()
        return True

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _remember(self, record: EventRecord | ControlSignal) -> None:
        self._ctx = (
            record.session_id,
            record.pipeline_version,
            record.turn_id,
            record.runtime_sequence,
        )
        if record.authority_epoch is not None:
            self._epoch = record.authority_epoch

    def _apply_plan_policy(self, level: RecordingLevel) -> None:
        """A new turn's frozen plan sets the configured level (turn start is a boundary)."""
        self.ladder.configured = level
        while _RANK[self.ladder.current] > _RANK[level]:  # one marked step at a time
            before = self.ladder.current
            self.ladder.current = _BY_RANK[_RANK[before] - 1]
            self._downgraded(before, self.ladder.current, cause="plan_policy")

    def _downgraded(
        self, before: RecordingLevel, after: RecordingLevel, cause: str = "buffer_pressure"
    ) -> None:
        self.stats.downgrades += 1
        session_id, pipeline_version, turn_id, seq = self._ctx
        self._marker_seq += 1
        marker = ControlSignal(
            schema_version=SCHEMA_VERSION,
            event_scope=EventScope.TURN if turn_id else EventScope.SESSION,
            session_id=session_id,
            turn_id=turn_id,
            pipeline_version=pipeline_version,
            event_id=f"or02-level-{self._marker_seq}",
            lane=Lane.CONTROL,
            transport_sequence=None,
            runtime_sequence=seq,
            runtime_timestamp_ms=self._clock.monotonic_ns() // 1_000_000,
            wall_clock_timestamp_ms=self._clock.wall_ms(),
            payload_class=PayloadClass.METADATA,
            authority_epoch=self._epoch,
            signal=SignalName.RECORDING_LEVEL_DOWNGRADED,
            emitted_by=Emitter.OR_02,
            reason=f"{cause}:{before}->{after}",
        )
        if self._unsampled:  # nothing of an unsampled session but its evidence (F-071)
            return
        self._push(BufferedItem(CONTROL, "control_signal", marker, None))
