"""A recorded timeline (records + OR-02 evidence lines) passes `rspp contracts validate`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rspp.cli import app
from rspp.cli._contracts import EVIDENCE_KIND as CLI_EVIDENCE_KIND
from rspp.kernel._clock import VirtualClock
from rspp.observability import (
    EVIDENCE_KIND,
    JsonLinesFileSink,
    OR02Evidence,
    RecorderOptions,
    TimelineBuilder,
    TimelineExporter,
    TimelineRecorder,
)

pytestmark = pytest.mark.integration


async def _record(path: Path) -> None:
    clock = VirtualClock()
    recorder = TimelineRecorder(clock, RecorderOptions())
    exporter = TimelineExporter(recorder, JsonLinesFileSink(path), clock)
    builder = TimelineBuilder()
    builder.turn("t1")
    builder.turn("t2", cancel_fence_ms=20)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(exporter.run())
        for record, payload in builder.items:
            if isinstance(record, OR02Evidence):
                assert recorder.append_evidence(record)
            else:
                assert recorder.append(record, payload)
        recorder.close()


def test_recorded_timeline_with_evidence_validates(tmp_path: Path) -> None:
    assert CLI_EVIDENCE_KIND == EVIDENCE_KIND
    path = tmp_path / "run.jsonl"
    asyncio.run(_record(path))
    kinds = {json.loads(line)["kind"] for line in path.read_text().splitlines()}
    assert EVIDENCE_KIND in kinds and "control_signal" in kinds
    result = CliRunner().invoke(app, ["contracts", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{path}: valid"


def test_incomplete_evidence_line_is_reported_with_its_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"kind": EVIDENCE_KIND, "record": {"session_id": "s1"}}) + "\n")
    result = CliRunner().invoke(app, ["contracts", "validate", "--all", str(path)])
    assert result.exit_code == 1
    assert f"{path}:1: invalid: record.or02_evidence_schema_version: required field missing" \
        in result.output
