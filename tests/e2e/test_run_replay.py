"""Timelines written by ``rspp run --record-level L2`` replay with ``rspp replay`` (F-127, F-072).

A real offline session (espeak-ng question, energy VAD, pocketsphinx, the local
responder, espeak-ng reply) runs over the loopback transport (a file run: logical
time, each frame processed before the next, so the recording does not depend on the
machine's load) and writes a timeline at recording level L2: ingress audio with its payloads,
provider-node outputs (``<node>.<port>`` with causal parent ``<node>#in<k>``),
outputs and the transport's playback signals. ``rspp replay`` in recorded-provider
playback re-runs it five times with zero divergences (exit 0); against a changed
spec (new version, other system prompt, a redaction node on the transcript) it
fails with PLAN and OUTCOME divergences (exit 1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
MUST_MATCH = ("ORDERING", "PLAN", "OUTCOME", "AUTHORITY", "PROVIDER_CHOICE")


def rspp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)


def changed_spec(path: Path) -> Path:
    """v1.1.0: another system prompt and a redaction node between STT and the transcript."""
    text = VOICE.read_text()
    for old, new in (
        ("version: 1.0.0", "version: 1.1.0"),
        ("Answer briefly.", "Answer in one word."),
        ("  - id: segmenter\n", "  - id: scrub\n    type: redaction\n"
         "    params: {patterns: [], custom: {topic: weather}}\n  - id: segmenter\n"),
        ("  - {from: stt.final, to: output.transcript}",
         "  - {from: stt.final, to: scrub.text}\n  - {from: scrub.text, to: output.transcript}"),
    ):
        assert old in text, old  # the example spec changed: update this test's edit
        text = text.replace(old, new)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run-replay")
    question = root / "q.wav"
    say = rspp("say", "what is the weather like today", "-o", str(question))
    assert say.returncode == 0, say.stderr
    timeline = root / "t.jsonl"
    run = rspp("run", str(VOICE), "--input", str(question),
               "--record-level", "L2", "--timeline", str(timeline))
    assert run.returncode == 0, run.stdout + run.stderr
    return timeline


def test_l2_run_timeline_holds_what_replay_needs(recorded: Path) -> None:
    lines = [json.loads(line) for line in recorded.read_text().splitlines()]
    events = [ln for ln in lines if ln["kind"] == "event_record"]
    ingress = [ln for ln in events if ln["record"].get("edge_id") == "input.audio"]
    assert ingress and all(ln["record"].get("node_id") is None for ln in ingress)
    assert all(ln.get("payload", {}).get("data") for ln in ingress)  # L2 keeps the audio
    by_node: dict[str, int] = {}
    for ln in events:
        rec = ln["record"]
        node, edge = rec.get("node_id"), rec.get("edge_id") or ""
        if node and edge.startswith(f"{node}.") and \
                str(rec.get("causal_parent_id", "")).startswith(f"{node}#in"):
            assert ln.get("payload") is not None, rec
            by_node[node] = by_node.get(node, 0) + 1
    assert set(by_node) == {"stt", "llm", "tts"}, by_node
    plan = next(ln["record"] for ln in lines if ln["kind"] == "resolved_turn_plan")
    assert plan["recording_policy"]["recording_level"] == "L2"
    validate = rspp("contracts", "validate", str(recorded))
    assert validate.returncode == 0, validate.stdout + validate.stderr


def test_replay_of_run_timeline_is_deterministic(recorded: Path, tmp_path: Path) -> None:
    seen: list[dict[str, int]] = []
    for i in range(5):
        report = tmp_path / f"r{i}.json"
        out = rspp("replay", str(recorded), "--spec", str(VOICE), "--mode", "playback",
                   "--report", str(report))
        assert out.returncode == 0, out.stdout + out.stderr
        doc = json.loads(report.read_text())
        assert doc["passed"] is True
        assert all(doc["divergences"][c] == 0 for c in MUST_MATCH), doc["divergences"]
        assert doc["provider_outputs_served"] > 0 and doc["ingress_events"] > 0
        seen.append(doc["divergences"])
    assert all(d == seen[0] for d in seen)


def stt_places(timeline: Path) -> list[tuple[int, str, str]]:
    """Each STT output with the number of ingress frames recorded before it and its cause."""
    places, frames = [], 0
    for line in timeline.read_text().splitlines():
        rec = json.loads(line)["record"]
        if rec.get("edge_id") == "input.audio":
            frames += 1
        elif rec.get("edge_id") in ("stt.partial", "stt.final"):
            places.append((frames, rec["edge_id"], rec["causal_parent_id"]))
    return places


def test_a_second_run_puts_every_transcript_at_the_same_place(recorded: Path,
                                                               tmp_path: Path) -> None:
    """The recogniser decodes in a worker thread; a file run waits for it before the next
    frame, so its partials land between the same frames on a busy or an idle machine."""
    again = tmp_path / "again.jsonl"
    run = rspp("run", str(VOICE), "--input", str(recorded.parent / "q.wav"),
               "--record-level", "L2", "--timeline", str(again))
    assert run.returncode == 0, run.stdout + run.stderr
    first = stt_places(recorded)
    assert any(edge == "stt.partial" for _, edge, _ in first)
    assert stt_places(again) == first


def test_replay_against_changed_spec_reports_plan_and_outcome(recorded: Path,
                                                              tmp_path: Path) -> None:
    report = tmp_path / "changed.json"
    out = rspp("replay", str(recorded), "--spec", str(changed_spec(tmp_path / "v2.yaml")),
               "--mode", "playback", "--report", str(report))
    assert out.returncode == 1, out.stdout + out.stderr
    doc = json.loads(report.read_text())
    assert doc["passed"] is False
    assert doc["divergences"]["PLAN"] >= 1 and doc["divergences"]["OUTCOME"] >= 1
    assert {"PLAN", "OUTCOME"} <= set(doc["failing_classes"])
    messages = [f["message"] for f in doc["findings"]]
    assert any("output text of node scrub" in m for m in messages), messages


def test_bad_record_level_is_rejected(tmp_path: Path) -> None:
    out = rspp("run", str(VOICE), "--input", str(tmp_path / "missing.wav"),
               "--record-level", "L9")
    assert out.returncode == 2
    assert "--record-level 'L9'" in out.stderr and "L2" in out.stderr


def test_barge_in_run_replays_with_the_cancelled_turn(tmp_path: Path) -> None:
    question, interrupt = tmp_path / "q.wav", tmp_path / "i.wav"
    assert rspp("say", "what is the weather like today", "-o", str(question)).returncode == 0
    assert rspp("say", "what is your name", "-o", str(interrupt)).returncode == 0
    timeline = tmp_path / "t.jsonl"
    run = rspp("run", str(VOICE), "--input", str(question), "--barge-in", f"{interrupt}@1.0",
               "--record-level", "L2", "--timeline", str(timeline))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [json.loads(line) for line in timeline.read_text().splitlines()]
    assert any(ln["record"].get("signal") == "playback_cancelled" for ln in lines)
    for i in range(2):
        report = tmp_path / f"r{i}.json"
        out = rspp("replay", str(timeline), "--spec", str(VOICE), "--report", str(report))
        assert out.returncode == 0, out.stdout + out.stderr
        doc = json.loads(report.read_text())
        assert all(doc["divergences"][c] == 0 for c in MUST_MATCH), doc["findings"]


def test_replay_of_a_default_run_names_the_record_level_it_needs(tmp_path: Path) -> None:
    question = tmp_path / "q.wav"
    assert rspp("say", "what is the weather like today", "-o", str(question)).returncode == 0
    timeline = tmp_path / "t.jsonl"
    run = rspp("run", str(VOICE), "--input", str(question), "--timeline", str(timeline))
    assert run.returncode == 0, run.stdout + run.stderr
    out = rspp("replay", str(timeline), "--spec", str(VOICE))
    assert out.returncode == 2
    assert "rspp run --record-level L2" in out.stderr and "Traceback" not in out.stderr
