"""Ctrl-C during ``rspp run``: say what was interrupted, write what was produced, exit 130.

The run is a real subprocess on the offline assistant in real time; the test waits
for a recorded readiness signal (the first ``turn_open`` in the timeline file),
then sends SIGINT. No sleeps decide the outcome: the input holds 20 s of
silence after the question, so the run is still going when the signal arrives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from rspp.transports import read_wav, write_wav

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"


def _wait_for(path: Path, needle: str, proc: subprocess.Popen[str], limit_s: float = 90) -> None:
    """Poll the timeline the run is writing until ``needle`` appears (a readiness probe)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(encoding="utf-8", errors="replace"):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{needle} never appeared in {path}")


def test_ctrl_c_writes_output_closes_timeline_and_exits_130(
    spoken: dict[str, Path], tmp_path: Path
) -> None:
    pcm, rate = read_wav(spoken["question"])
    long_input = tmp_path / "long.wav"
    write_wav(long_input, pcm + bytes(2 * rate * 20), rate)
    timeline, output = tmp_path / "t.jsonl", tmp_path / "out.wav"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from rspp.cli import main; main()", "run", str(VOICE),
         "--input", str(long_input), "--real-time", "--timeline", str(timeline),
         "--output", str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "NO_COLOR": "1"},
    )
    _wait_for(timeline, '"turn_open"', proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=90)

    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{VOICE}: interrupted: Ctrl-C"), stderr
    assert "during turn" in lines[0] or "input at" in lines[0]
    assert f"wrote {output}" in lines[0] and str(timeline) in lines[0]
    assert "turn 1 transcript:" in stdout  # what was produced is reported, too
    with wave.open(str(output)) as w:  # the reply played before the interrupt is kept
        played = w.getnframes() / w.getframerate()
    assert f"reply audio: {played:.2f} s" in stdout
    records = [json.loads(line) for line in timeline.read_text().splitlines()]  # every line whole
    signals: dict[str, list[str]] = {}
    for line in records:
        rec: dict[str, Any] = line["record"]
        if line["kind"] == "control_signal" and rec.get("signal") in (
                "turn_open", "commit", "abort", "close"):
            signals.setdefault(rec["turn_id"], []).append(rec["signal"])
    assert signals
    for turn, seq in signals.items():  # the timeline is closed: every turn ended properly
        assert seq[0] == "turn_open" and seq[-1] == "close" and len(seq) == 3, (turn, seq)
    assert records[-1]["record"].get("reason") == "session_stopped"
