"""Turn arbitration policy (F-140) on a served session with a live client.

``rspp serve`` (embedded control plane) serves the offline assistant with ``turns:
{overlap: queue}``; ``rspp talk`` speaks a question and, 0.5 s into the reply, a second
one. The reply plays on (no ``clear``, no abort), the second question is queued and
answered after the first turn committed; the served timeline records ``defer
overlap_queued`` between the two turns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rspp.testing import PATIENT_BUDGETS, voice_assistant_spec

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

pytestmark = pytest.mark.e2e

KEY = "serve-arbitration-e2e-admin-key"


def test_served_session_queues_an_overlapping_question(
    serve_process: Callable[..., ServeProcess], spoken: dict[str, Path], tmp_path: Path,
    rspp_cli: RsppCli,
) -> None:
    # the offline assistant with room for a loaded machine (patient budgets and provider
    # timeouts, a deep VAD -> STT edge), queueing an overlapping question
    spec = tmp_path / "voice.yaml"
    spec.write_text(voice_assistant_spec(
        "voice-assistant", head=PATIENT_BUDGETS, tail="turns:\n  overlap: queue",
        providers="  stt: {primary: pocketsphinx, timeout_ms: 20000}\n"
                  "  llm: {primary: local}\n  tts: {primary: espeak, timeout_ms: 20000}",
        buffers={"stt.audio": "{max_queue_ms: 20000, max_queue_items: 5000, "
                              "max_latency_contribution_ms: 20000}"}))
    timelines = tmp_path / "timelines"
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--timeline-dir", str(timelines)).wait_ready()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    env["RSPP_API_KEY"] = KEY
    talk = rspp_cli("talk", "--server", srv.url, "--tenant", "acme", "--input",
                    str(spoken["question"]), "--barge-in", f"{spoken['interrupt']}@0.5",
                    env=env, timeout=180)
    assert talk.returncode == 0, talk.stdout + talk.stderr
    out = talk.stdout
    assert "you: what is the weather" in out and "you: what is your name" in out, out
    assert "[cleared]" not in out and "aborted" not in out, out
    assert "assistant: My name is" in out, out
    code, _, err = srv.terminate()
    assert code == 0, err
    (timeline,) = timelines.glob("*.jsonl")
    sigs = [(r["signal"], r.get("reason"), r.get("turn_id"))
            for r in (json.loads(x)["record"] for x in timeline.read_text().splitlines()
                      if '"control_signal"' in x)
            if r["signal"] in ("turn_open", "commit", "defer", "barge_in")]
    opened = [t for s, _, t in sigs if s == "turn_open"]
    assert len(opened) == 2 and "barge_in" not in [s for s, _, _ in sigs], sigs
    assert sigs.index(("turn_open", None, opened[0])) \
        < sigs.index(("defer", "overlap_queued", None)) \
        < sigs.index(("commit", None, opened[0])) < sigs.index(("turn_open", None, opened[1]))
