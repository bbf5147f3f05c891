"""Recorder -> exporter -> real file under a stalled then recovering sink (F-154, F-176, F-153).

The recording of 12 turns made while the durable sink is stalled downgrades
L2 -> L1 -> L0 with markers, keeps every control signal and every OR-02 evidence
record, and the resulting file validates against the reference schema and passes
the replay-completeness and lifecycle gates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from rspp.contracts import AudioPayload, ControlSignal, PayloadClass, parse_entry
from rspp.kernel._clock import VirtualClock
from rspp.observability import (
    EVIDENCE_KIND,
    ExporterOptions,
    JsonLinesFileSink,
    MsgpackFileSink,
    OR02Evidence,
    RecorderOptions,
    TimelineBuilder,
    TimelineExporter,
    TimelineRecorder,
    as_lines,
    evaluate_gates,
    missing_evidence_fields,
    read_timeline,
)

pytestmark = pytest.mark.integration

AUDIO = AudioPayload(sample_rate_hz=16000, channels=1, data=b"\x00\x01" * 320)


class GatedSink:
    """Wraps a real file sink; every write waits until ``gate`` is set."""

    def __init__(self, inner: JsonLinesFileSink | MsgpackFileSink) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.waiting = 0

    async def write(self, lines: Sequence[Mapping[str, object]]) -> None:
        self.waiting += 1
        await self.gate.wait()
        await self.inner.write(lines)

    async def close(self) -> None:
        await self.inner.close()


def _session(turns: int) -> TimelineBuilder:
    b = TimelineBuilder()
    for i in range(turns):
        b.turn(f"t{i}", cancel_fence_ms=30 if i % 3 == 0 else None)
        for _ in range(10):  # audio chunks of the reply
            b.event(f"t{i}", node_id="tts", payload_class=PayloadClass.AUDIO_RAW, payload=AUDIO)
    return b


@pytest.mark.parametrize("sink_type", [JsonLinesFileSink, MsgpackFileSink])
async def test_flooded_recorder_keeps_control_evidence_and_valid_file(
    tmp_path: Path, reference_schema: dict[str, Any],
    sink_type: type[JsonLinesFileSink] | type[MsgpackFileSink],
) -> None:
    clock = VirtualClock()
    recorder = TimelineRecorder(clock, RecorderOptions(capacity=60, control_reserve=400,
                                                       evidence_reserve=32))
    path = tmp_path / ("run.jsonl" if sink_type is JsonLinesFileSink else "run.msgpack")
    sink = GatedSink(sink_type(path))
    exporter = TimelineExporter(recorder, sink, clock, ExporterOptions(batch_size=16))
    builder = _session(12)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(exporter.run())
        results = []
        for record, payload in builder.items:
            if isinstance(record, OR02Evidence):
                results.append(recorder.append_evidence(record))
            else:
                results.append(recorder.append(record, payload))
            await asyncio.sleep(0)  # let the exporter run between appends
        assert sink.waiting == 1  # the exporter never got past its first write
        control_appended = [ok for (r, _), ok in zip(builder.items, results, strict=True)
                            if isinstance(r, ControlSignal | OR02Evidence)]
        assert all(control_appended)  # no control signal or evidence was refused
        assert recorder.stats.dropped["event_record"] > 0
        sink.gate.set()
        recorder.close()
    lines, errors = read_timeline(path)
    assert errors == []
    markers = [ln.record["reason"] for ln in lines
               if ln.record.get("signal") == "recording_level_downgraded"]
    assert markers == ["buffer_pressure:L2->L1", "buffer_pressure:L1->L0"]
    evidence = [ln for ln in lines if ln.kind == EVIDENCE_KIND]
    assert len(evidence) == 12 and all(missing_evidence_fields(ln.record) == [] for ln in evidence)
    expected_signals = sum(1 for r, _ in builder.items if isinstance(r, ControlSignal))
    assert sum(1 for ln in lines if ln.kind == "control_signal") == expected_signals + 2
    for ln in lines:
        if ln.kind != EVIDENCE_KIND:
            validator = Draft202012Validator({**reference_schema, "$ref": f"#/$defs/{ln.kind}"})
            assert [e.message for e in validator.iter_errors(ln.record)] == [], ln.record
            line = {"kind": ln.kind, "record": ln.record}
            if ln.payload is not None:
                line["payload"] = ln.payload
            entry, issues = parse_entry(line)  # our own contract reader agrees
            assert entry is not None and issues == [], issues
    gates = {g.gate: g for g in evaluate_gates(as_lines(lines)).gates}
    assert gates[5].status == "pass" and gates[5].count == 12
    assert gates[6].status == "pass"
    assert gates[3].status == "pass" and gates[3].count == 4
