"""A turn's terminal record is in the local timeline file before it goes on (F-154, issue 17).

The recorder's append stays O(1) and never awaits; with a local file behind the exporter,
a ``commit`` or ``abort`` record makes the exporter write what is buffered (that record
included) in one synchronous write before ``append`` returns, so before any listener (the
transport) sees the record. Other records wait for the exporter task as before; a sink
that cannot write synchronously, or a batch waiting for its retry, is left to the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from rspp.contracts import SignalName
from rspp.kernel._clock import VirtualClock
from rspp.observability import (
    ExporterOptions,
    JsonLinesFileSink,
    MsgpackFileSink,
    TimelineBuilder,
    TimelineExporter,
    TimelineRecorder,
    read_timeline,
)

pytestmark = pytest.mark.unit


def _ids(path: Path) -> list[tuple[str, str | None]]:
    if not path.stat().st_size:
        return []
    lines, errors = read_timeline(path)
    assert errors == []
    return [(str(x.get("signal") or x.kind), x.get("turn_id")) for x in lines]


@pytest.mark.parametrize("sink_type", [JsonLinesFileSink, MsgpackFileSink])
@pytest.mark.parametrize("terminal", [SignalName.COMMIT, SignalName.ABORT])
async def test_a_terminal_record_is_in_the_file_when_append_returns(
    tmp_path: Path, sink_type: type[JsonLinesFileSink], terminal: SignalName
) -> None:
    path = tmp_path / "timeline.jsonl"
    clock = VirtualClock()
    recorder = TimelineRecorder(clock)
    exporter = TimelineExporter(recorder, sink_type(path), clock)
    b = TimelineBuilder()
    recorder.append(b.signal(SignalName.TURN_OPEN, "RK-03", "t1"))
    recorder.append(b.event("t1"))
    path.touch()
    assert _ids(path) == []  # ordinary records wait for the exporter task
    assert recorder.append(b.signal(terminal, "RK-03", "t1"))
    # no await since: the terminal record and everything before it are in the file
    assert _ids(path) == [("turn_open", "t1"), ("event_record", "t1"), (terminal.value, "t1")]
    assert recorder.buffered == 0 and exporter.stats.local_flushes == 1
    recorder.append(b.signal(SignalName.CLOSE, "RK-03", "t1"))
    recorder.close()
    await exporter.run()  # the task writes the rest, once
    assert [s for s, _ in _ids(path)] == ["turn_open", "event_record", terminal.value, "close"]


class FlakyFile(JsonLinesFileSink):
    """A local file whose first ``failures`` batch writes fail (a full disk)."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures
        #: every write attempt, as it ends: True written, False failed
        self.attempts: asyncio.Queue[bool] = asyncio.Queue()

    def write_now(self, lines: Sequence[Mapping[str, object]]) -> None:
        if self.failures > 0:
            self.failures -= 1
            self.attempts.put_nowait(False)
            raise OSError("no space left on device")
        super().write_now(lines)
        self.attempts.put_nowait(True)


async def test_a_failing_file_keeps_the_lines_for_the_exporter_and_writes_each_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "timeline.jsonl"
    clock = VirtualClock(auto_advance=False)
    recorder = TimelineRecorder(clock)
    sink = FlakyFile(path, failures=2)
    exporter = TimelineExporter(recorder, sink, clock,
                                ExporterOptions(retry_initial_s=1.0, retry_max_s=1.0))
    b = TimelineBuilder()
    recorder.append(b.signal(SignalName.TURN_OPEN, "RK-03", "t1"))
    task = asyncio.create_task(exporter.run())
    assert await sink.attempts.get() is False  # the task's write failed: it waits to retry
    assert recorder.append(b.signal(SignalName.COMMIT, "RK-03", "t1"))
    assert recorder.buffered == 2  # not written ahead of the batch waiting for its retry
    assert sink.attempts.empty()
    clock.advance(1000)
    assert await sink.attempts.get() is False
    clock.advance(1000)
    assert await sink.attempts.get() is True  # the retried batch, then the marker and the rest
    recorder.close()
    await task
    # the retried batch, its recovery marker, then the commit: each line once
    assert [s for s, _ in _ids(path)] == ["turn_open", "event_record", "commit"]
    assert exporter.stats.local_flushes == 0 and exporter.stats.recoveries == 1


async def test_a_sink_that_cannot_write_synchronously_is_left_to_the_task() -> None:
    class Remote:
        def __init__(self) -> None:
            self.lines: list[Mapping[str, object]] = []

        async def write(self, lines: Sequence[Mapping[str, object]]) -> None:
            self.lines.extend(lines)

        async def close(self) -> None:
            return None

    clock = VirtualClock()
    recorder = TimelineRecorder(clock)
    sink = Remote()
    TimelineExporter(recorder, sink, clock)
    assert recorder.on_terminal is None
    b = TimelineBuilder()
    assert recorder.append(b.signal(SignalName.COMMIT, "RK-03", "t1"))
    assert sink.lines == [] and recorder.buffered == 1
