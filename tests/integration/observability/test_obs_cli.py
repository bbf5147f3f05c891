"""`rspp slo report`, `rspp timeline show|diff|sweep` on files written by the real recorder.

Catalog: F-074, F-077, F-116, NF-024..NF-029, NF-038 (gate computation).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator

from rspp.kernel._clock import VirtualClock
from rspp.observability import (
    EVIDENCE_KIND,
    JsonLinesFileSink,
    TimelineBuilder,
    TimelineExporter,
    TimelineRecorder,
    missing_evidence_fields,
    read_timeline,
)

#: the conftest's ``run_cli(*args)``: the in-process `rspp` CLI's result
Cli = Callable[..., Any]
pytestmark = pytest.mark.integration

REFERENCE_KINDS = {"event_record", "control_signal", "decision_outcome", "turn_transition",
                   "resolved_turn_plan"}




async def _record(builder: TimelineBuilder, path: Path) -> Path:
    clock = VirtualClock()
    recorder = TimelineRecorder(clock)
    for record, payload in builder.items:
        recorder.append(record, payload)
    recorder.close()
    await TimelineExporter(recorder, JsonLinesFileSink(path), clock).run()
    return path


def _check_against_reference(path: Path, schema: dict[str, Any]) -> int:
    lines, errors = read_timeline(path)
    assert errors == []
    checked = 0
    for line in lines:
        if line.kind in REFERENCE_KINDS:
            validator = Draft202012Validator({**schema, "$ref": f"#/$defs/{line.kind}"})
            problems = [e.message for e in validator.iter_errors(line.record)]
            assert problems == [], (line.line, line.kind, problems)
            checked += 1
        else:
            assert line.kind == EVIDENCE_KIND
            assert missing_evidence_fields(line.record) == []
    return checked


async def test_slo_report_failing_and_no_samples_gates(
    run_cli: Cli, tmp_path: Path, reference_schema: dict[str, Any]
) -> None:
    b = TimelineBuilder()
    for i in range(5):
        b.turn(f"t{i}", audio_ref=True)
    b.turn("slow", decision_ms=450)  # 1 of 6 over 120 ms -> p95 fails
    path = await _record(b, tmp_path / "run.jsonl")
    assert _check_against_reference(path, reference_schema) > 50
    result = run_cli("slo", "report", str(path), "--json")
    assert result.exit_code == 1
    gates = json.loads(result.stdout)["gates"]
    assert [g["gate"] for g in gates] == [1, 2, 3, 4, 5, 6, 7]
    for g in gates:
        keys = {"gate", "name", "threshold", "count", "p50", "p95", "p99", "value", "pass"}
        assert keys <= set(g)
    by = {g["gate"]: g for g in gates}
    assert by[1]["pass"] is False and by[1]["p95"] == 450 and by[1]["count"] == 6
    assert by[3]["status"] == "no_samples" and by[3]["pass"] is None and by[3]["count"] == 0
    assert all(by[n]["pass"] is True for n in (2, 4, 5, 6, 7))
    table = run_cli("slo", "report", str(path))
    assert table.exit_code == 1
    for name in ("turn-open decision", "first output", "cancel fence", "authority",
                 "replay completeness", "lifecycle", "end to end", "no_samples", "fail"):
        assert name in table.stdout


async def test_slo_report_passes_over_several_files(run_cli: Cli, tmp_path: Path) -> None:
    a, b = TimelineBuilder("s1"), TimelineBuilder("s2")
    a.turn("t1")
    b.turn("t1", cancel_fence_ms=25)
    files = [await _record(a, tmp_path / "a.jsonl"), await _record(b, tmp_path / "b.jsonl")]
    result = run_cli("slo", "report", *map(str, files), "--json")
    assert result.exit_code == 0, result.stdout
    gates = json.loads(result.stdout)["gates"]
    assert all(g["pass"] is True for g in gates)
    assert gates[0]["count"] == 2 and gates[2]["count"] == 1


def test_slo_report_missing_file_is_a_clear_error(run_cli: Cli, tmp_path: Path) -> None:
    result = run_cli("slo", "report", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert result.stderr == f"{tmp_path / 'nope.jsonl'}: file not found; pass a timeline file " \
        "written by `rspp run --timeline`\n"


async def test_timeline_show_orders_and_filters(run_cli: Cli, tmp_path: Path) -> None:
    b = TimelineBuilder()
    b.turn("t1")
    b.turn("t2", cancel_fence_ms=30)
    path = await _record(b, tmp_path / "run.jsonl")
    out = run_cli("timeline", "show", str(path))
    assert out.exit_code == 0
    body = out.stdout
    assert "turn_open" in body and "llm" in body and "ControlLane" in body
    assert body.index("turn_open_proposed") < body.index("resolved_turn_plan") < body.index(
        "commit")
    commits = run_cli("timeline", "show", str(path), "--type", "commit")
    assert commits.stdout.count("commit") == 1 and "turn_open" not in commits.stdout
    signals = run_cli("timeline", "show", str(path), "--type", "control_signal")
    assert "ControlLane" in signals.stdout and "DataLane" not in signals.stdout
    llm = run_cli("timeline", "show", str(path), "--node", "llm", "--turn", "t2")
    assert "(1 of" in llm.stdout
    control = run_cli("timeline", "show", str(path), "--lane", "control", "--turn", "t2")
    assert "DataLane" not in control.stdout and "ControlLane" in control.stdout
    none = run_cli("timeline", "show", str(path), "--session", "nobody")
    assert "(0 of" in none.stdout


def test_timeline_show_reports_malformed_lines(run_cli: Cli, tmp_path: Path) -> None:
    b = TimelineBuilder()
    b.turn("t1")
    good = b.write(tmp_path / "good.jsonl").read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([good[0], "{not json", good[1], '{"kind": 3}', "[1]", *good[2:]]))
    result = run_cli("timeline", "show", str(broken))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.startswith(f"{broken}:2: invalid JSON")  # the first bad line, one line
    assert len(result.stderr.splitlines()) == 1


def test_timeline_show_reads_msgpack(run_cli: Cli, tmp_path: Path) -> None:
    b = TimelineBuilder()
    b.turn("t1")
    enc = msgspec.msgpack.Encoder()
    frames = [enc.encode(line) for line in b.lines()]
    path = tmp_path / "run.msgpack"
    path.write_bytes(b"".join(struct.pack(">I", len(f)) + f for f in frames))
    result = run_cli("timeline", "show", str(path), "--type", "close")
    assert result.exit_code == 0 and "close" in result.stdout and "(1 of" in result.stdout


def test_timeline_diff_writes_reports(run_cli: Cli, tmp_path: Path) -> None:
    a, b = TimelineBuilder(), TimelineBuilder()
    a.turn("t1")
    b.turn("t1", text="a different answer",
           provider_bindings={"stt": "fake-stt", "llm": "other", "tts": "fake-tts"})
    ea, eb = a.write(tmp_path / "a.jsonl"), b.write(tmp_path / "b.jsonl")
    same = run_cli("timeline", "diff", str(ea), str(ea))
    assert same.exit_code == 0 and "PASS" in same.stdout
    report, md = tmp_path / "r.json", tmp_path / "r.md"
    diff = run_cli("timeline", "diff", str(ea), str(eb), "--report", str(report),
                   "--markdown", str(md))
    assert diff.exit_code == 1 and "FAIL" in diff.stdout
    data = json.loads(report.read_text())
    assert set(data["divergences"]) == {"ORDERING", "PLAN", "OUTCOME", "TIMING", "AUTHORITY",
                                        "PROVIDER_CHOICE"}
    assert data["divergences"]["OUTCOME"] == 1 and data["divergences"]["PROVIDER_CHOICE"] == 2
    assert data["findings"] and "# Replay divergence report" in md.read_text()


def test_timeline_sweep_command(run_cli: Cli, tmp_path: Path) -> None:
    old = tmp_path / "acme" / "old.jsonl"
    old.parent.mkdir()
    old.write_text("{}\n")
    os.utime(old, (1_000_000, 1_000_000))
    result = run_cli("timeline", "sweep", str(tmp_path), "--max-age-days", "1")
    assert result.exit_code == 0 and "deleted 1 file(s)" in result.stdout and not old.exists()
    bad = run_cli("timeline", "sweep", str(tmp_path), "--tenant", "acme")
    assert bad.exit_code != 0 and "TENANT=DAYS" in bad.output
