"""Asynchronous durable export of a recorder's buffer (F-154).

:class:`TimelineExporter.run` is a long-lived task owned by the caller (put it
in a TaskGroup). It waits for buffered items, converts a batch to timeline lines
(applying redaction), and writes it to the sink. Items leave the buffer only
after a successful write; a failing sink is retried with capped exponential
backoff on the injected clock. After a recovery the exporter appends an
eventual-consistency marker: a TelemetryLane event record with reason
``export_recovered:attempts=<n>``.

A local file sink (:class:`~rspp.observability.LocalAppendSink`) also gets
what is buffered at each turn's terminal record (:meth:`TimelineExporter.flush_now`,
called by the recorder before the record goes on): one synchronous write per
turn, so a commit a client saw is in the file even if the process is killed
right after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import msgspec

from rspp.contracts import SCHEMA_VERSION, EventRecord, EventScope, Lane, PayloadClass
from rspp.kernel._handles import Clock
from rspp.observability._recorder import BufferedItem, TimelineRecorder
from rspp.observability._redaction import Redactor
from rspp.observability._sinks import LocalAppendSink, TimelineSink

__all__ = ["ExporterOptions", "ExporterStats", "TimelineExporter", "to_line"]


class ExporterOptions(msgspec.Struct, frozen=True, kw_only=True):
    batch_size: int = 256
    retry_initial_s: float = 0.05
    retry_max_s: float = 2.0


class ExporterStats(msgspec.Struct, kw_only=True):
    batches: int = 0
    lines: int = 0
    failures: int = 0
    recoveries: int = 0
    last_error: str | None = None
    #: batches written synchronously at a turn's terminal record
    local_flushes: int = 0


def to_line(item: BufferedItem, redactor: Redactor | None = None) -> dict[str, object]:
    """The timeline line ``{"kind", "record", "payload"?}`` of one buffered item."""
    record = msgspec.to_builtins(item.record, builtin_types=(bytes,))
    line: dict[str, object] = {"kind": item.kind, "record": record}
    if item.payload is not None:
        payload = msgspec.to_builtins(item.payload, builtin_types=(bytes,))
        if redactor is not None and isinstance(payload, Mapping):
            payload = redactor.redact_payload(
                payload,
                session_id=str(record.get("session_id", "")),
                event_id=str(record.get("event_id", "")),
            )
        line["payload"] = payload
    if redactor is not None:  # secret values leave no string of the line, wherever echoed
        scrubbed = redactor.scrub(line)
        return scrubbed if isinstance(scrubbed, dict) else line
    return line


class TimelineExporter:
    """Drains a :class:`TimelineRecorder` into a :class:`TimelineSink` with retries."""

    def __init__(
        self,
        recorder: TimelineRecorder,
        sink: TimelineSink,
        clock: Clock,
        options: ExporterOptions | None = None,
        *,
        redactor: Redactor | None = None,
    ) -> None:
        self.recorder = recorder
        self.sink = sink
        self.options = options or ExporterOptions()
        self.stats = ExporterStats()
        self._clock = clock
        self._redactor = redactor
        self._recovery_seq = 0
        #: a batch failed and waits for its retry: nothing may be written ahead of it
        self._retrying = False
        if isinstance(sink, LocalAppendSink):
            recorder.on_terminal = self.flush_now

    def flush_now(self) -> None:
        """Write everything buffered to the local sink now, in one synchronous write (a
        turn's terminal record was just appended: it is in the file before it reaches the
        client). Skipped while a failed batch waits for its retry; a failure here leaves
        the lines buffered for the exporter's own retries."""
        sink = self.sink
        if self._retrying or not self.recorder.buffered or not isinstance(sink, LocalAppendSink):
            return
        items = self.recorder.peek(self.recorder.buffered)
        lines = [to_line(item, self._redactor) for item in items]
        try:
            sink.write_now(lines)
        except Exception as exc:  # the exporter task retries the same lines
            self.stats.failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            return
        self.recorder.consume(len(items))
        self.stats.batches += 1
        self.stats.lines += len(lines)
        self.stats.local_flushes += 1

    async def run(self) -> None:
        """Export until the recorder is closed and drained, then close the sink."""
        try:
            while True:
                if not self.recorder.buffered:
                    if self.recorder.closed:
                        return
                    await self.recorder.wait_ready()
                    continue
                await self._export_one_batch()
        finally:
            await self.sink.close()

    async def _export_one_batch(self) -> None:
        items = self.recorder.peek(self.options.batch_size)
        lines = [to_line(item, self._redactor) for item in items]
        attempts = 0
        delay = self.options.retry_initial_s
        while True:
            attempts += 1
            try:
                await self.sink.write(lines)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any sink failure is retried
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self._retrying = True
                try:
                    await self._clock.sleep(delay)
                finally:
                    self._retrying = False
                delay = min(delay * 2, self.options.retry_max_s)
                continue
            break
        self.recorder.consume(len(items))
        self.stats.batches += 1
        self.stats.lines += len(lines)
        if attempts > 1:
            self.stats.recoveries += 1
            marker = to_line(self._recovery_marker(items, attempts))
            try:
                await self.sink.write([marker])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the marker is best-effort; data lines are already safe
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"


    def _recovery_marker(self, items: list[BufferedItem], attempts: int) -> BufferedItem:
        ref = items[-1].record
        self._recovery_seq += 1
        marker = EventRecord(
            schema_version=SCHEMA_VERSION,
            event_scope=EventScope.SESSION,
            session_id=str(getattr(ref, "session_id", "recorder")),
            pipeline_version=str(getattr(ref, "pipeline_version", "unknown")),
            event_id=f"or02-export-recovered-{self._recovery_seq}",
            lane=Lane.TELEMETRY,
            transport_sequence=None,
            runtime_sequence=int(getattr(ref, "runtime_sequence", 0)),
            runtime_timestamp_ms=self._clock.monotonic_ns() // 1_000_000,
            wall_clock_timestamp_ms=self._clock.wall_ms(),
            payload_class=PayloadClass.METADATA,
            reason=f"export_recovered:attempts={attempts}",
        )
        return BufferedItem(1, "event_record", marker, None)
