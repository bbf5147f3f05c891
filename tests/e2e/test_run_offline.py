"""``rspp say`` -> ``rspp run``: the offline voice assistant end to end (F-125, F-130, F-064).

Real audio engines (espeak-ng, pocketsphinx), real CLI processes (the
``rspp_cli`` and ``spoken`` fixtures of ``tests/e2e/conftest.py``).
"""

from __future__ import annotations

import json
import re
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.observability import missing_evidence_fields

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
def test_spoken_question_gets_a_spoken_answer(
    spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path,
    checked_timeline: Callable[[Path], list[dict[str, Any]]],
) -> None:
    out, tl = tmp_path / "reply.wav", tmp_path / "timeline.jsonl"
    res = rspp_cli.run(str(VOICE), "--input", str(spoken["question"]), "--output", str(out),
                   "--timeline", str(tl))
    assert res.returncode == 0, res.stderr
    assert "transcript: what is the weather" in res.stdout
    assert "weather offline" in res.stdout  # the local responder's weather answer
    _table_matches_the_gates(res.stdout, tl, rspp_cli)
    with wave.open(str(out)) as w:
        assert w.getnframes() > w.getframerate()  # more than one second of reply audio
    lines = checked_timeline(tl)
    signals = [ln["record"]["signal"] for ln in lines if ln["kind"] == "control_signal"]
    for name in ("turn_open_proposed", "admit", "turn_open", "output_accepted",
                 "playback_started", "playback_completed", "commit", "close"):
        assert name in signals, name
    assert signals.index("turn_open_proposed") < signals.index("turn_open") \
        < signals.index("playback_started") < signals.index("commit")
    assert any(ln["kind"] == "resolved_turn_plan" for ln in lines)
    evidence = [ln["record"] for ln in lines if ln["kind"] == "or02_evidence"]
    assert len(evidence) == 1 and missing_evidence_fields(evidence[0]) == []
    assert evidence[0]["terminal_signal"] == "commit"
    assert {(p["modality"], p["outcome"]) for p in evidence[0]["provider_invocations"]} >= {
        ("llm", "success"), ("tts", "success")}


def test_barge_in_cancels_the_speaking_turn_and_the_next_turn_answers(
    spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path,
    checked_timeline: Callable[[Path], list[dict[str, Any]]],
) -> None:
    tl = tmp_path / "timeline.jsonl"
    res = rspp_cli.run(str(VOICE), "--input", str(spoken["question"]), "--timeline", str(tl),
                   "--barge-in", f"{spoken['interrupt']}@0.4", "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    first, second = result["turns"][0], result["turns"][1]
    assert (first["terminal"], first["reason"]) == ("abort", "cancelled")
    assert first["cancel_fence_ms"] is not None
    assert second["terminal"] == "commit" and "your" in second["transcript"]
    assert second["reply"] and second["played_s"] > 0.5
    assert result["after_fence_outputs"] == 0
    lines = checked_timeline(tl)
    tid = first["turn_id"]
    seq = [(ln["kind"], ln["record"]) for ln in lines]
    cancel_at = next(i for i, (k, r) in enumerate(seq) if k == "control_signal"
                     and r["signal"] == "cancel" and r.get("turn_id") == tid)
    # (TelemetryLane audit records say how each node stopped, F-041)
    after = [(k, r.get("signal")) for k, r in seq[cancel_at + 1:] if r.get("turn_id") == tid
             and r.get("lane") != "TelemetryLane"]
    # after the fence: only the cancel's own consequences, never output or playback start
    assert all(k in ("control_signal", "turn_transition", "decision_outcome", "or02_evidence")
               for k, _ in after)
    assert not {"output_accepted", "playback_started"} & {s for _, s in after}
    assert ("control_signal", "playback_cancelled") in after
    assert any(r.get("signal") == "barge_in" for k, r in seq if k == "control_signal")
    aborted = next(r for k, r in seq if k == "or02_evidence" and r["turn_id"] == tid)
    assert missing_evidence_fields(aborted) == []
    assert aborted["abort_reason"] == "cancelled" and aborted["cancel"]["scope"] == "turn"


@pytest.mark.parametrize("case", ["missing_input", "not_a_wav", "bad_spec", "bad_barge_in"])
def test_bad_input_exits_non_zero_with_a_clear_message(
    case: str, spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    notwav = tmp_path / "notes.wav"
    notwav.write_text("hello")
    badspec = tmp_path / "spec.yaml"
    badspec.write_text("name: x\nversion: [oops\n")
    args = {
        "missing_input": (str(VOICE), "--input", str(tmp_path / "absent.wav")),
        "not_a_wav": (str(VOICE), "--input", str(notwav)),
        "bad_spec": (str(badspec), "--input", str(spoken["question"])),
        "bad_barge_in": (str(VOICE), "--input", str(spoken["question"]), "--barge-in", "x.wav"),
    }[case]
    res = rspp_cli.run(*args)
    assert res.returncode == 2
    expected = {"missing_input": "--input", "not_a_wav": "not a WAV file",
                "bad_spec": "SPEC", "bad_barge_in": "IN2.wav@SECONDS"}[case]
    assert expected in res.stderr
    assert "Traceback" not in res.stderr


def _table_matches_the_gates(stdout: str, tl: Path, rspp_cli: RsppCli) -> None:
    """The per-turn table of ``rspp run`` and ``rspp slo report`` give the same numbers."""
    lines = stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("turn  outcome"))
    columns = re.split(r"\s{2,}", lines[head])
    assert columns[2:] == ["speech end -> open", "speech end -> audio", "open -> audio",
                           "open decision", "cancel fence"]
    row = dict(zip(columns, re.split(r"\s{2,}", lines[head + 2]), strict=True))
    ms = {k: float(v.removesuffix(" ms")) for k, v in row.items() if v.endswith(" ms")}
    assert ms["speech end -> audio"] == ms["speech end -> open"] + ms["open -> audio"]
    assert "end of user speech (VAD) to turn_open" in stdout
    report = rspp_cli("slo", "report", str(tl), "--json")
    gates = {g["gate"]: g for g in json.loads(report.stdout)["gates"]}
    assert gates[7]["count"] == 1 and gates[7]["p50"] == ms["speech end -> audio"]
    assert gates[1]["count"] == 1 and gates[1]["p50"] == ms["open decision"]
