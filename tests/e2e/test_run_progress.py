"""``rspp run --real-time`` shows live progress on a terminal and nothing extra when piped."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from rspp.cli._progress import LiveProgress
from rspp.runner import RunProgress

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"


def _run_on_a_terminal(*args: str) -> tuple[int, str]:
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                            stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, cwd=REPO,
                            env=env)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def test_real_time_run_on_a_terminal_shows_position_state_and_words(
    spoken: dict[str, Path],
) -> None:
    code, out = _run_on_a_terminal("run", str(VOICE), "--input", str(spoken["question"]),
                                   "--real-time")
    assert code == 0, out[-2000:]
    total = "/1.7 s"  # the spoken question is 1.7 s long
    assert total in out and "\x1b[" in out  # a redrawn live view, not plain lines
    # The view is sampled (10 redraws a second), so which transient states a redraw catches
    # depends on scheduling; at least one turn state and the heard words must be shown.
    assert any(state in out for state in ("listening", "turn 1 open", "speaking turn 1"))
    assert "heard" in out
    assert "per-turn latency" in out  # the final report follows the live view


def test_progress_is_silent_off_a_terminal() -> None:
    buffer = io.StringIO()
    view = LiveProgress(Console(file=buffer))
    assert not view.enabled
    with view:
        view.update(RunProgress(audio_s=0.5, total_s=1.0, state="listening", turns=0,
                                transcript="", reply=""))
    assert buffer.getvalue() == "" and view.updates == 1
