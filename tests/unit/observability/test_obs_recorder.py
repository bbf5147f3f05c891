"""Timeline recorder: non-blocking append, level downgrade, evidence, export retries.

Catalog: F-153, F-154, F-176, NF-028 (evidence append failure), F-071, F-076.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from rspp.contracts import (
    AudioPayload,
    ControlSignal,
    Lane,
    PayloadClass,
    RecordingLevel,
    SignalName,
    TextPayload,
)
from rspp.kernel._clock import VirtualClock
from rspp.observability import (
    EVIDENCE_KIND,
    DebugCapture,
    DebugCaptureSlots,
    ExporterOptions,
    JsonLinesFileSink,
    OR02Evidence,
    RecorderOptions,
    SamplingPolicy,
    TimelineBuilder,
    TimelineExporter,
    TimelineRecorder,
    build_plan,
    missing_evidence_fields,
    read_timeline,
)

pytestmark = pytest.mark.unit

AUDIO = AudioPayload(sample_rate_hz=16000, channels=1, data=b"\x01\x00" * 160)
TEXT = TextPayload(text="hi", is_final=True, revision=0)


class StalledSink:
    """A sink whose write awaits an Event nobody sets (until the test releases it)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0
        self.written: list[Mapping[str, object]] = []

    async def write(self, lines: Sequence[Mapping[str, object]]) -> None:
        self.calls += 1
        await self.release.wait()
        self.written.extend(lines)

    async def close(self) -> None:
        return None


class FlakySink:
    """Fails the first ``failures`` writes with OSError, then stores lines."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.written: list[Mapping[str, object]] = []

    async def write(self, lines: Sequence[Mapping[str, object]]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("disk unavailable")
        self.written.extend(lines)

    async def close(self) -> None:
        return None


def _records(n_turns: int = 1) -> TimelineBuilder:
    b = TimelineBuilder()
    for i in range(n_turns):
        b.turn(f"t{i}")
    return b


def _evidence(builder: TimelineBuilder) -> list[OR02Evidence]:
    return [r for r, _ in builder.items if isinstance(r, OR02Evidence)]


async def test_stalled_sink_never_blocks_append_and_downgrades_l2_l1_l0() -> None:
    clock = VirtualClock()
    recorder = TimelineRecorder(clock, RecorderOptions(capacity=40, control_reserve=64,
                                                       evidence_reserve=8))
    sink = StalledSink()
    exporter = TimelineExporter(recorder, sink, clock, ExporterOptions(batch_size=4))
    task = asyncio.create_task(exporter.run())
    await asyncio.sleep(0)
    builder = TimelineBuilder()
    frame = builder.event("t1", payload_class=PayloadClass.AUDIO_RAW, node_id="tts")
    results = [recorder.append(frame, AUDIO)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert sink.calls == 1  # the exporter is now stuck inside its first write
    results += [recorder.append(frame, AUDIO) for _ in range(99)]
    # 99 more appends ran synchronously while the sink is stalled
    assert sink.calls == 1
    assert results.count(True) == 40 and results.count(False) == 60
    assert recorder.stats.dropped["event_record"] == 60
    assert recorder.level == RecordingLevel.L0
    markers = [i.record for i in recorder.peek(1000) if isinstance(i.record, ControlSignal)
               and i.record.signal == SignalName.RECORDING_LEVEL_DOWNGRADED]
    assert [m.reason for m in markers] == ["buffer_pressure:L2->L1", "buffer_pressure:L1->L0"]
    assert all(m.emitted_by == "OR-02" and m.lane == Lane.CONTROL for m in markers)
    # control signals and evidence still get in while the regular pool is full
    cancel = builder.signal(SignalName.CANCEL, "RK-16", "t1", scope="turn", reason="barge_in")
    assert recorder.append(cancel)
    evidence_builder = _records(3)
    assert all(recorder.append_evidence(e) for e in _evidence(evidence_builder))
    # payloads above the current level are stripped, never blocking
    stripped_before = recorder.stats.payloads_stripped
    assert recorder.append(builder.signal(SignalName.COMMIT, "RK-03", "t1")) is True
    assert recorder.stats.payloads_stripped == stripped_before
    sink.release.set()
    recorder.close()
    await asyncio.wait_for(task, 5)
    kinds = [line["kind"] for line in sink.written]
    assert kinds.count(EVIDENCE_KIND) == 3
    for line in sink.written:
        if line["kind"] == EVIDENCE_KIND:
            assert missing_evidence_fields(line["record"]) == []  # type: ignore[arg-type]
    # order of the level markers is preserved in the exported stream
    reasons = [line["record"].get("reason") for line in sink.written  # type: ignore[union-attr]
               if line["record"].get("signal") == "recording_level_downgraded"]  # type: ignore[union-attr]
    assert reasons == ["buffer_pressure:L2->L1", "buffer_pressure:L1->L0"]


async def test_level_ladder_never_skips_and_reupgrades_only_at_turn_boundaries() -> None:
    clock = VirtualClock()
    recorder = TimelineRecorder(clock, RecorderOptions(capacity=8))
    builder = TimelineBuilder()
    frame = builder.event("t1", node_id="llm")
    levels = []
    for _ in range(8):
        recorder.append(frame, TEXT)
        levels.append(recorder.level)
    assert levels[:5] == [RecordingLevel.L2] * 4 + [RecordingLevel.L1]
    assert RecordingLevel.L0 in levels and levels.index(RecordingLevel.L0) > 4
    recorder.consume(recorder.buffered)  # pressure gone, but no turn boundary yet
    recorder.append(frame, TEXT)
    assert recorder.level == RecordingLevel.L0
    recorder.append(builder.signal(SignalName.CLOSE, "RK-03", "t1"))
    assert recorder.level == RecordingLevel.L1
    recorder.turn_boundary()
    assert recorder.level == RecordingLevel.L2
    recorder.turn_boundary()
    assert recorder.level == RecordingLevel.L2  # never above the configured level
    assert recorder.stats.downgrades == 2 and recorder.stats.upgrades == 2


@pytest.mark.parametrize(
    ("level", "text_kept", "audio_kept"),
    [(RecordingLevel.L0, False, False), (RecordingLevel.L1, True, False),
     (RecordingLevel.L2, True, True)],
)
def test_recording_levels_define_payload_fidelity(
    level: RecordingLevel, text_kept: bool, audio_kept: bool
) -> None:
    recorder = TimelineRecorder(VirtualClock(), RecorderOptions(level=level))
    builder = _records(1)
    recorder.append(builder.event("t0", node_id="llm"), TEXT)
    recorder.append(builder.event("t0", node_id="tts", payload_class=PayloadClass.AUDIO_RAW),
                    AUDIO)
    for record, payload in builder.items:
        if isinstance(record, OR02Evidence):
            recorder.append_evidence(record)
        else:
            recorder.append(record, payload)
    items = recorder.peek(1000)
    text_items = [i for i in items if i.payload is TEXT]
    audio_items = [i for i in items if i.payload is AUDIO]
    assert bool(text_items) is text_kept
    assert bool(audio_items) is audio_kept
    # baseline control evidence is present at every level
    assert sum(1 for i in items if i.kind == EVIDENCE_KIND) == 1
    signals = {i.record.signal for i in items if isinstance(i.record, ControlSignal)}
    assert {"turn_open_proposed", "turn_open", "commit", "close"} <= signals


def test_evidence_append_reports_failure_when_reserve_is_exhausted() -> None:
    recorder = TimelineRecorder(VirtualClock(), RecorderOptions(evidence_reserve=2))
    evidence = _evidence(_records(3))
    assert [recorder.append_evidence(e) for e in evidence] == [True, True, False]
    assert recorder.stats.evidence_rejected == 1
    recorder.close()
    assert recorder.append_evidence(evidence[0]) is False


async def test_exporter_retries_after_sink_errors_and_marks_recovery() -> None:
    clock = VirtualClock()
    recorder = TimelineRecorder(clock)
    sink = FlakySink(failures=3)
    exporter = TimelineExporter(recorder, sink, clock,
                                ExporterOptions(retry_initial_s=0.1, retry_max_s=0.25))
    builder = _records(2)
    for record, payload in builder.items:
        recorder.append(record, payload)
    recorder.close()
    start = clock.monotonic_ns()
    await asyncio.wait_for(exporter.run(), 5)
    assert sink.calls == 5  # 3 failures, the batch, the recovery marker
    assert exporter.stats.failures == 3 and exporter.stats.recoveries == 1
    # backoff 0.1 + 0.2 + 0.25 (capped) of virtual time
    assert clock.monotonic_ns() - start == pytest.approx(0.55e9, abs=1e6)
    assert len(sink.written) == len(builder.items) + 1
    assert sink.written[-1]["record"]["reason"] == "export_recovered:attempts=4"  # type: ignore[index]
    assert recorder.buffered == 0


async def test_file_sink_round_trip_and_sampling(tmp_path: Path) -> None:
    clock = VirtualClock()
    sampling = SamplingPolicy(default_rate=1.0, per_pipeline={"assistant": 0.5})
    recorder = TimelineRecorder(clock, sampling=sampling)
    sink = JsonLinesFileSink(tmp_path / "t.jsonl")
    sessions = [f"sess-{i}" for i in range(40)]
    for sid in sessions:
        b = TimelineBuilder(session_id=sid)
        b.turn("t1")
        for record, payload in b.items:
            recorder.append(record, payload)
    recorder.close()
    await TimelineExporter(recorder, sink, clock).run()
    lines, errors = read_timeline(tmp_path / "t.jsonl")
    assert errors == []
    recorded = {ln.record["session_id"] for ln in lines if ln.kind == "control_signal"}
    expected = {s for s in sessions if sampling.sampled(s, "assistant@1.0.0")}
    assert recorded == expected and 0 < len(recorded) < len(sessions)
    # evidence is kept for every accepted turn, sampled or not
    assert {ln.record["session_id"] for ln in lines if ln.kind == EVIDENCE_KIND} == set(sessions)
    # the decision is deterministic per session id
    again = SamplingPolicy(default_rate=1.0, per_pipeline={"assistant": 0.5})
    assert {s for s in sessions if again.sampled(s, "assistant@1.0.0")} == expected


def test_debug_capture_is_per_session_and_expires() -> None:
    clock = VirtualClock()
    recorder = TimelineRecorder(clock, debug=DebugCapture(clock))
    recorder.debug_capture.enable("s-debug", duration_s=2.0)
    target, other = TimelineBuilder("s-debug"), TimelineBuilder("s-other")
    dbg = target.event(None, lane=Lane.TELEMETRY, payload_class=PayloadClass.METADATA,
                       reason="debug:queue snapshot")
    quiet = other.event(None, lane=Lane.TELEMETRY, payload_class=PayloadClass.METADATA,
                        reason="debug:queue snapshot")
    assert recorder.debug_event(dbg) is True
    assert recorder.debug_event(quiet) is False
    clock.advance(2500)
    assert recorder.debug_event(dbg) is False
    assert recorder.stats.debug_events == 1
    assert [i.record.session_id for i in recorder.peek(10)] == ["s-debug"]  # type: ignore[attr-defined]


def test_debug_capture_slots_bound_the_sessions_capturing_at_once() -> None:
    clock = VirtualClock()
    slots = DebugCaptureSlots(1, clock)
    assert slots.claim("a", 2.0) and slots.active == 1
    assert not slots.claim("b", 2.0) and slots.refused == 1  # the one slot is held
    assert slots.claim("a", 5.0)  # the holder renews (a shorter or longer capture)
    slots.release("a")  # ended (seconds 0) or its session ended
    assert slots.claim("b", 1.0)
    clock.advance(1500)  # b's capture expired: its slot is free again
    assert slots.active == 0 and slots.claim("a", 1.0)
    assert not DebugCaptureSlots(0, clock).claim("a", 1.0)  # 0: no capture at all
    with pytest.raises(ValueError, match="debug capture limit"):
        DebugCaptureSlots(-1, clock)


def test_plan_recording_policy_sets_the_level_at_turn_start() -> None:
    recorder = TimelineRecorder(VirtualClock())
    builder = TimelineBuilder()
    recorder.append(build_plan("t1", "assistant@1.0.0", recording_level=RecordingLevel.L0))
    assert recorder.level == RecordingLevel.L0
    reasons = [i.record.reason for i in recorder.peek(10) if isinstance(i.record, ControlSignal)]
    assert reasons == ["plan_policy:L2->L1", "plan_policy:L1->L0"]
    recorder.append(builder.event("t1", node_id="llm"), TEXT)
    assert recorder.stats.payloads_stripped == 1
    recorder.append(build_plan("t2", "assistant@1.0.0", recording_level=RecordingLevel.L2))
    assert recorder.level == RecordingLevel.L0  # raising waits for turn boundaries
    recorder.turn_boundary()
    recorder.turn_boundary()
    assert recorder.level == RecordingLevel.L2
    recorder.close()
    assert recorder.append(builder.event("t2", node_id="llm")) is False
    assert recorder.stats.dropped["after_close"] == 1


def test_evidence_as_a_mapping_from_the_kernel() -> None:
    recorder = TimelineRecorder(VirtualClock())
    (evidence,) = _evidence(_records(1))
    fields = {name: getattr(evidence, name) for name in evidence.__struct_fields__}
    assert recorder.append_evidence(fields) is True
    assert recorder.peek(1)[0].record == evidence
    del fields["plan_hash"]
    assert recorder.append_evidence(fields) is False
    assert recorder.stats.last_evidence_error is not None
    assert "plan_hash" in recorder.stats.last_evidence_error


@pytest.mark.parametrize(("level", "kept"), [(RecordingLevel.L1, False), (RecordingLevel.L2, True)])
def test_raw_bytes_in_a_debug_payload_count_as_audio(level: RecordingLevel, kept: bool) -> None:
    """Audio that travels as a debug field (attributes AudioPayload cannot carry) is audio."""
    from rspp.contracts import DebugPayload

    debug_audio = DebugPayload(message="audio_chunk", fields={"bytes_b64": "AAAA", "attrs": "{}"})
    debug_text = DebugPayload(message="marker", fields={"attrs": "{}"})
    recorder = TimelineRecorder(VirtualClock(), RecorderOptions(level=level))
    builder = _records(1)
    recorder.append(builder.event("t0", node_id="tts", payload_class=PayloadClass.AUDIO_RAW),
                    debug_audio)
    recorder.append(builder.event("t0", node_id="tts"), debug_text)
    payloads = [i.payload for i in recorder.peek(100)]
    assert (debug_audio in payloads) is kept
    assert debug_text in payloads
