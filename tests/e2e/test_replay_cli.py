"""``rspp replay`` end to end: exit codes and the report a CI gate reads (F-127, F-072).

A baseline session is recorded (live kernel session, demo spec v1) and written
as JSON Lines; specs v1 and v2 are real YAML files. Replaying against v1 passes
(exit 0), against v2 fails with PLAN/OUTCOME divergences (exit 1), and bad
input exits 2 with a message naming the problem.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pytest
import typer
from typer.testing import CliRunner

from rspp.cli._replay import register
from rspp.replay import RigOptions
from rspp.runner import DEMO_PROVIDER_TYPES, demo_frames, demo_registry, record_session
from rspp.spec import compile_spec, load_spec

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

CLASSES = {"ORDERING", "PLAN", "OUTCOME", "TIMING", "AUTHORITY", "PROVIDER_CHOICE"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory,
              demo_replay_dir: Callable[[Path, int], Path]) -> Path:
    return demo_replay_dir(tmp_path_factory.mktemp("replay-cli"), 2)


def invoke(*args: str) -> tuple[int, str, str]:
    app = typer.Typer()
    register(app)

    @app.command("noop", hidden=True)
    def _noop() -> None:  # keeps `replay` a sub-command, as under the root app
        pass

    result = CliRunner().invoke(app, ["replay", *args])
    return result.exit_code, result.stdout, result.stderr


def test_replay_against_recorded_spec_passes(workspace: Path) -> None:
    report = workspace / "ok.json"
    candidate = workspace / "candidate.jsonl"
    code, out, _ = invoke(str(workspace / "baseline.jsonl"), "--spec", str(workspace / "v1.yaml"),
                          "--report", str(report), "--timeline-out", str(candidate))
    assert code == 0, out
    assert "PASS" in out and "PLAN=0" in out and "ORDERING=0" in out
    doc = json.loads(report.read_text())
    assert set(doc["divergences"]) == CLASSES and sum(doc["divergences"].values()) == 0
    assert doc["passed"] is True and doc["findings"] == []
    assert doc["mode"] == "playback_recorded_provider_outputs"
    assert doc["provider_outputs_served"] == 6
    assert len(candidate.read_text().splitlines()) == doc["candidate_lines"] > 0
    code, out, _ = invoke(str(workspace / "baseline.jsonl"), "--spec", str(workspace / "v1.yaml"),
                          "--mode", "resimulate", "--decisions", "recompute")
    assert code == 0 and "re_simulate_nodes / recompute_decisions: PASS" in out


def test_changed_spec_fails_the_gate_with_plan_and_outcome(workspace: Path) -> None:
    report = workspace / "v2.json"
    code, out, _ = invoke(str(workspace / "baseline.jsonl"), "--spec", str(workspace / "v2.yaml"),
                          "--report", str(report))
    assert code == 1, out
    assert "FAIL (PLAN, OUTCOME)" in out
    doc = json.loads(report.read_text())
    assert doc["divergences"]["PLAN"] == 2 and doc["divergences"]["OUTCOME"] >= 2
    assert doc["divergences"]["ORDERING"] == 0 and doc["passed"] is False
    assert doc["failing_classes"] == ["PLAN", "OUTCOME"]
    classes = {f["class"] for f in doc["findings"]}
    assert classes == {"PLAN", "OUTCOME"}
    assert any(f["actual"] == "HEARD> utterance 1: 8 chunks, peak 4500" for f in doc["findings"])


def test_latency_regression_fails_with_timing_threshold(workspace: Path) -> None:
    """F-127 step 4: a slower provider (v1 with asr latency +80 ms) fails a TIMING budget."""
    slow = workspace / "slow.yaml"
    slow.write_text((workspace / "v1.yaml").read_text().replace(
        "type: replay_demo.asr\n", "type: replay_demo.asr\n    params: {latency_ms: 110}\n"))
    code, out, _ = invoke(str(workspace / "baseline.jsonl"), "--spec", str(slow),
                          "--mode", "resimulate", "--max-timing-findings", "0")
    assert code == 1, out
    assert "TIMING" in out and "moved by 80 ms" in out


def test_bad_input_exits_2(workspace: Path) -> None:
    spec = str(workspace / "v1.yaml")
    code, _, err = invoke(str(workspace / "missing.jsonl"), "--spec", spec)
    assert code == 2 and "no such timeline file" in err
    bad = workspace / "bad.jsonl"
    bad.write_text('{"kind": "event_record", "record": {}}\n{oops\n')
    code, _, err = invoke(str(bad), "--spec", spec)
    assert code == 2 and "bad.jsonl:2: invalid JSON" in err
    stripped = workspace / "l0.jsonl"
    lines = [json.loads(x) for x in (workspace / "baseline.jsonl").read_text().splitlines()]
    for ln in lines:
        if ln["record"].get("edge_id") == "reply.text":  # provider record, not egress
            ln.pop("payload", None)
    stripped.write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    code, _, err = invoke(str(stripped), "--spec", spec)
    assert code == 2 and "without its payload" in err and "--mode resimulate" in err
    code, out, _ = invoke(str(stripped), "--spec", spec, "--mode", "resimulate")
    # re-simulation runs without the provider payloads; the stripped baseline texts show up
    assert code == 1 and "re_simulate_nodes" in out and "OUTCOME=2" in out, out
    code, _, err = invoke(str(workspace / "baseline.jsonl"))
    assert code == 2 and "pass --spec" in err
    code, _, err = invoke(str(workspace / "baseline.jsonl"), "--spec", spec, "--mode", "fast")
    assert code == 2 and "--mode 'fast'" in err
    code, _, err = invoke(str(workspace / "baseline.jsonl"), "--spec", str(workspace / "no.yaml"))
    assert code == 2 and "--spec" in err


def test_many_session_timeline_replays_session_by_session(workspace: Path) -> None:
    """A timeline holding several sessions: each is replayed from its own lines (streamed),
    one summary and one report entry per session; a session that diverges fails the gate."""
    gd = compile_spec(load_spec(workspace / "v1.yaml"))
    many = workspace / "many.jsonl"
    with many.open("wb") as f:
        for sid, utterances in (("alpha", 2), ("beta", 3), ("gamma", 1)):
            lines = asyncio.run(record_session(
                gd, demo_frames(utterances), registry=demo_registry(),
                options=RigOptions(session_id=sid, provider_node_types=DEMO_PROVIDER_TYPES)))
            f.write(b"".join(msgspec.json.encode(ln) + b"\n" for ln in lines))
    report = workspace / "many.json"
    candidate = workspace / "many-candidate.jsonl"
    code, out, _ = invoke(str(many), "--spec", str(workspace / "v1.yaml"), "--report",
                          str(report), "--timeline-out", str(candidate))
    assert code == 0, out
    assert [ln.split(":")[0] for ln in out.splitlines() if ln.startswith("session ")] == [
        "session alpha", "session beta", "session gamma"]
    sessions = json.loads(report.read_text())["sessions"]
    assert [(s["session_id"], s["passed"], s["ingress_events"]) for s in sessions] == [
        ("alpha", True, 36), ("beta", True, 54), ("gamma", True, 18)]
    written = [json.loads(ln)["record"].get("session_id")
               for ln in candidate.read_text().splitlines()]
    assert len(written) == sum(s["candidate_lines"] for s in sessions)
    assert {"alpha", "beta", "gamma"} <= set(written)
    code, out, _ = invoke(str(many), "--spec", str(workspace / "v2.yaml"))
    assert code == 1 and out.count("FAIL (") == 3, out


def _shed_before_any_turn(lines: list[bytes]) -> bytes:
    """The ``drop_notice`` a loaded ``rspp serve`` session writes for audio shed before any
    turn opened (the kernel's buffer, RK-12): session scoped, no ``turn_id``."""
    frame = json.loads(lines[5])["record"]
    notice = {"kind": "control_signal", "record": {
        "schema_version": "v1.0", "event_scope": "session", "session_id": frame["session_id"],
        "pipeline_version": frame["pipeline_version"], "event_id": "shed:1",
        "lane": "ControlLane", "transport_sequence": None,
        "runtime_sequence": frame["runtime_sequence"],
        "runtime_timestamp_ms": frame["runtime_timestamp_ms"],
        "wall_clock_timestamp_ms": frame["wall_clock_timestamp_ms"],
        "payload_class": "metadata", "edge_id": "detector.audio->asr.audio",
        "authority_epoch": 1, "reason": "shed_oldest", "seq_range": {"start": 3, "end": 4},
        "target_lane": "DataLane", "signal": "drop_notice", "emitted_by": "RK-12"}}
    return msgspec.json.encode(notice) + b"\n"


def test_a_served_session_with_shed_audio_or_cut_short_replays_or_names_the_line(
        workspace: Path) -> None:
    """A session-scoped ``drop_notice`` is compared, not taken for a transport or lease
    signal (the replay failed with a bare ``'emitted_by'``); a timeline cut mid-line or
    missing records ends in a one-line ``FILE:LINE: ...`` error or a report, never a
    traceback or a bare KeyError."""
    spec = str(workspace / "v1.yaml")
    lines = (workspace / "baseline.jsonl").read_bytes().splitlines(keepends=True)
    shed = workspace / "shed.jsonl"
    shed.write_bytes(b"".join(lines[:6]) + _shed_before_any_turn(lines) + b"".join(lines[6:]))
    code, out, err = invoke(str(shed), "--spec", spec)
    assert code == 1, out + err
    assert "emitted_by" not in out + err
    assert "OUTCOME: missing in actual: control_signal:drop_notice" in out
    cut = workspace / "shed_cut.jsonl"
    body = b"".join(lines[:6]) + _shed_before_any_turn(lines) + b"".join(lines[6:40])
    cut.write_bytes(body + lines[40][:60])
    code, out, err = invoke(str(cut), "--spec", spec)
    assert code == 2 and err.count("\n") == 1, out + err
    assert err.startswith(f"{cut}:42: invalid JSON"), err
    missing = workspace / "shed_missing.jsonl"
    missing.write_bytes(body)
    code, out, err = invoke(str(missing), "--spec", spec)
    assert code == 1 and "emitted_by" not in out + err and "Traceback" not in out + err
    assert "OUTCOME" in out


def test_many_sessions_in_worker_processes_match_one_process(workspace: Path) -> None:
    """``--jobs 2`` replays the sessions in worker processes: the same summaries, report,
    candidate timeline and exit code as one process, also when a session diverges and
    when a session's lines are cut (the replay stops there, sessions before it printed)."""
    gd = compile_spec(load_spec(workspace / "v1.yaml"))
    many = workspace / "jobs.jsonl"
    with many.open("wb") as f:
        for sid, utterances in (("a", 2), ("b", 1), ("c", 2), ("d", 1)):
            lines = asyncio.run(record_session(
                gd, demo_frames(utterances), registry=demo_registry(),
                options=RigOptions(session_id=sid, provider_node_types=DEMO_PROVIDER_TYPES)))
            f.write(b"".join(msgspec.json.encode(ln) + b"\n" for ln in lines))
    rows = many.read_bytes().splitlines(keepends=True)
    cut = workspace / "jobs_cut.jsonl"  # session c's 5th line cut mid-line
    first_c = next(i for i, ln in enumerate(rows) if b'"session_id":"c"' in ln)
    cut.write_bytes(b"".join(rows[:first_c + 4]) + rows[first_c + 4][:60] + b"\n"
                    + b"".join(rows[first_c + 5:]))

    def outputs(path: Path, spec: str, jobs: str) -> tuple[int, str, str, str, bytes]:
        report, candidate = workspace / f"r{jobs}.json", workspace / f"c{jobs}.jsonl"
        report.unlink(missing_ok=True)
        code, out, err = invoke(str(path), "--spec", str(workspace / spec), "--jobs", jobs,
                                "--report", str(report), "--timeline-out", str(candidate))
        return (code, out, err, report.read_text() if report.exists() else "",
                candidate.read_bytes())

    for path, spec, code in ((many, "v1.yaml", 0), (many, "v2.yaml", 1), (cut, "v1.yaml", 2)):
        alone, parallel = outputs(path, spec, "1"), outputs(path, spec, "2")
        assert parallel == alone and alone[0] == code, (path, spec, alone[:3], parallel[:3])
    _, out, err, _, written = alone
    assert [ln.split(":")[0] for ln in out.splitlines() if ln.startswith("session ")] == [
        "session a", "session b"]
    assert err.startswith("session c: ") and written
    assert not [p for p in workspace.iterdir() if p.name.startswith(".rspp-replay-")]
def test_a_paused_replay_resumes_from_its_saved_cursor_in_another_process(
        workspace: Path, rspp_cli: RsppCli) -> None:
    """F-152: pause at an ingress event, persist the cursor, resume it in a new process: the
    replay goes on from the same boundary and its candidate timeline and report are the
    straight run's, record for record; a cursor that does not match is refused."""
    base, spec = str(workspace / "baseline.jsonl"), str(workspace / "v1.yaml")
    straight, resumed = workspace / "straight.jsonl", workspace / "resumed.jsonl"
    code, out, _ = invoke(base, "--spec", spec, "--timeline-out", str(straight),
                          "--report", str(workspace / "straight.json"))
    assert code == 0, out
    cursor = workspace / "cursor.json"
    code, out, err = invoke(base, "--spec", spec, "--pause-at", "3", "--cursor-out", str(cursor))
    assert code == 0, out + err
    saved = json.loads(cursor.read_text())
    assert saved["paused"] and saved["position"] == 3 and saved["total"] > 3, saved
    assert saved["runtime_sequence"] > 0 and f"--resume-from {cursor}" in out
    res = rspp_cli("replay", base, "--spec", spec, "--resume-from", str(cursor),
                   "--timeline-out", str(resumed), "--report", str(workspace / "resumed.json"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"resumed at ingress event 3/{saved['total']}" in res.stdout
    assert resumed.read_bytes() == straight.read_bytes()
    reports = [json.loads((workspace / f"{n}.json").read_text()) for n in ("straight", "resumed")]
    assert reports[0]["divergences"] == reports[1]["divergences"]
    # a cursor whose boundary the replay does not reach, or of another recording: exit 2
    bad = workspace / "bad.json"
    bad.write_text(json.dumps({**saved, "runtime_sequence": saved["runtime_sequence"] + 1}))
    code, out, err = invoke(base, "--spec", spec, "--resume-from", str(bad))
    assert code == 2 and "resume is not deterministic" in out + err, out + err
    bad.write_text(json.dumps({**saved, "recording_digest": "0" * 32}))
    code, out, err = invoke(base, "--spec", spec, "--resume-from", str(bad))
    assert code == 2 and "cursor belongs to another recording" in out + err, out + err
    code, out, err = invoke(base, "--spec", spec, "--pause-at", "3")
    assert code == 2 and "--cursor-out" in out + err
