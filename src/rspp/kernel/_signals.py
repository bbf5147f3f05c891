"""Materialisation of executor control signals into contract records.

Only off the hot path: drops, watermark crossings, flow control, discontinuities
and fallbacks are rare compared with data events, so each one becomes a
validated :class:`rspp.contracts.ControlSignal` appended to a bounded log and
forwarded to an optional sink (recorder, transport, test harness).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from rspp.contracts import (
    SCHEMA_VERSION,
    ControlSignal,
    Emitter,
    EventRecord,
    EventScope,
    Lane,
    PayloadClass,
    SeqRange,
    SignalName,
)
from rspp.kernel._handles import Clock

__all__ = ["PayloadSink", "SignalLog", "SignalSink"]

SignalSink = Callable[[ControlSignal | EventRecord], None]
#: Receives a record that travels with a payload beside it (in-band metrics, F-026).
PayloadSink = Callable[[EventRecord, object], None]


class SignalLog:
    """Builds control signals with the session envelope and keeps the recent ones.

    ``maxlen`` bounds memory (NF-004); ``sink`` receives every record as built.
    """

    __slots__ = (
        "_clock",
        "_next_seq",
        "_side_notes",
        "authority_epoch",
        "payload_sink",
        "payload_tap",
        "pipeline_version",
        "record_turn",
        "records",
        "session_id",
        "sink",
    )

    def __init__(
        self,
        session_id: str,
        pipeline_version: str,
        clock: Clock,
        next_seq: Callable[[], int],
        *,
        maxlen: int = 4096,
        sink: SignalSink | None = None,
    ) -> None:
        self.session_id = session_id
        self.pipeline_version = pipeline_version
        self._clock = clock
        self._next_seq = next_seq
        self._side_notes = 0
        self.records: deque[ControlSignal | EventRecord] = deque(maxlen=maxlen)
        self.sink = sink
        #: receives records built with a payload (``telemetry(payload=...)``); None: they
        #: go to ``sink`` without it
        self.payload_sink: PayloadSink | None = None
        #: also told of each record handed to ``payload_sink``, with its payload (type
        #: subscriptions, F-022)
        self.payload_tap: PayloadSink | None = None
        #: Lease epoch stamped on every record (the authority guard updates it).
        self.authority_epoch = 0
        #: the turn a session-scoped telemetry record names (F-013 correlation; the turn
        #: layer sets it with ``SessionActor.record_turn``)
        self.record_turn: str | None = None

    def _push(self, rec: ControlSignal | EventRecord) -> None:
        self.records.append(rec)
        if self.sink is not None:
            self.sink(rec)

    def _envelope(self, tag: str, turn_id: str | None,
                  at_sequence: int | None = None) -> dict[str, Any]:
        """The envelope fields every record of this log shares (next sequence, session time).

        ``at_sequence``: a side note placed at that existing sequence number, taking no
        new one (its event id gets an occurrence suffix).
        """
        if at_sequence is None:
            seq = self._next_seq()
            event_id = f"{self.session_id}:{tag}:{seq}"
        else:
            seq = at_sequence
            self._side_notes += 1
            event_id = f"{self.session_id}:{tag}:{seq}.{self._side_notes}"
        return {
            "schema_version": SCHEMA_VERSION,
            "event_scope": EventScope.TURN if turn_id else EventScope.SESSION,
            "session_id": self.session_id,
            "pipeline_version": self.pipeline_version,
            "event_id": event_id,
            "transport_sequence": None,
            "runtime_sequence": seq,
            "runtime_timestamp_ms": self._clock.monotonic_ns() // 1_000_000,
            "wall_clock_timestamp_ms": self._clock.wall_ms(),
            "payload_class": PayloadClass.METADATA,
            "turn_id": turn_id,
            "authority_epoch": self.authority_epoch,
        }

    def signal(
        self,
        name: SignalName,
        emitter: Emitter,
        *,
        turn_id: str | None = None,
        edge_id: str | None = None,
        node_id: str | None = None,
        target_lane: Lane | None = None,
        reason: str | None = None,
        seq_range: tuple[int, int] | None = None,
        amount: int | None = None,
        sync_id: str | None = None,
        sync_domain: str | None = None,
        discontinuity_id: str | None = None,
        scope: Any = None,
        at_sequence: int | None = None,
    ) -> ControlSignal:
        """Build, log and forward one control signal (``at_sequence``: a side note at that
        existing sequence, as :meth:`telemetry`)."""
        rec = ControlSignal(
            **self._envelope("sig", turn_id, at_sequence),
            lane=Lane.CONTROL,
            node_id=node_id,
            edge_id=edge_id,
            target_lane=target_lane,
            reason=reason,
            seq_range=SeqRange(start=seq_range[0], end=seq_range[1]) if seq_range else None,
            amount=amount,
            sync_id=sync_id,
            sync_domain=sync_domain,
            discontinuity_id=discontinuity_id,
            signal=name,
            emitted_by=emitter,
            scope=scope,
        )
        self._push(rec)
        return rec

    def telemetry(
        self,
        *,
        kind: str,
        turn_id: str | None = None,
        node_id: str | None = None,
        edge_id: str | None = None,
        reason: str | None = None,
        at_sequence: int | None = None,
        payload: object | None = None,
    ) -> EventRecord:
        """Build and log one TelemetryLane record (metrics, debug, errors).

        ``at_sequence``: place it at that existing ``runtime_sequence`` instead of taking
        the next one. For notes about input (a transport's jitter decisions) that a
        replay does not reproduce: taking a number would shift every later record's
        sequence, and with it the turn plans' determinism markers.
        ``payload``: a body travelling beside the record (e.g. a ``MetricsPayload``), handed
        to ``payload_sink`` when one is set.
        """
        env = self._envelope(kind, turn_id, at_sequence)
        if turn_id is None and self.record_turn is not None:
            env["turn_id"] = self.record_turn  # correlation only: still session scoped
        rec = EventRecord(
            **env,
            lane=Lane.TELEMETRY,
            node_id=node_id,
            edge_id=edge_id,
            reason=reason,
        )
        if payload is not None and self.payload_sink is not None:
            self.records.append(rec)
            self.payload_sink(rec, payload)
            if self.payload_tap is not None:
                self.payload_tap(rec, payload)
        else:
            self._push(rec)
        return rec

    def of(self, name: SignalName) -> list[ControlSignal]:
        """The logged signals named ``name``, oldest first."""
        return [r for r in self.records if isinstance(r, ControlSignal) and r.signal == name]
