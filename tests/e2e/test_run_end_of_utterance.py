"""Push-to-talk through ``rspp run --end-of-utterance-at`` (F-042).

The VAD waits 5 s of silence before it ends speech, longer than the silence after the
question, so without the client's signal no turn opens; with an end of utterance just
after the question the turn opens on it (``explicit_end_of_utterance``) and commits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rspp.transports import read_wav

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_end_of_utterance_opens_the_turn_without_waiting_for_vad_silence(
    rspp_cli: RsppCli, spoken: dict[str, Path], tmp_path: Path
) -> None:
    spec = tmp_path / "patient_vad.yaml"
    text = (REPO / "pipelines" / "examples" / "voice_assistant.yaml").read_text()
    spec.write_text(text.replace("silence_ms: 500}", "silence_ms: 5000}", 1))
    question = spoken["question"]
    pcm, rate = read_wav(question)
    release = len(pcm) / 2 / rate + 0.1
    waiting = rspp_cli.run(str(spec), "--input", str(question), "--json")
    assert waiting.returncode == 1  # the VAD alone never ends the speech
    assert json.loads(waiting.stdout)["turns"] == []
    assert "no speech turn was detected" in waiting.stderr
    timeline = tmp_path / "t.jsonl"
    res = rspp_cli.run(str(spec), "--input", str(question), "--end-of-utterance-at",
                       f"{release:.2f}", "--timeline", str(timeline), "--json")
    assert res.returncode == 0, res.stderr
    (turn,) = json.loads(res.stdout)["turns"]
    assert turn["terminal"] == "commit" and "weather" in turn["transcript"]
    records = [json.loads(line) for line in timeline.read_text().splitlines()]
    proposals = [r["record"]["reason"] for r in records if r["kind"] == "control_signal"
                 and r["record"].get("signal") == "turn_open_proposed"]
    assert proposals == ["explicit_end_of_utterance"]
