"""When a turn's generation is complete (truth table T6) in graphs other than the assistant.

* The final transcript fanned out to one more output (``stt.final -> output.heard``): that
  output is part of the reply and ends with the STT's end-of-stream marker; the turn used
  to wait for it forever and ended ``abort(session_end)``.
* No LLM: an echo (``stt.final -> tts.text``) speaks the transcript and ends its audio on
  the STT's end-of-stream marker; an STT-only graph's reply is its final transcript. Both
  used to stay Active until the session ended (``abort(session_end)``).

Each runs through ``rspp run`` and the echo's L2 timeline replays with no divergence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = (REPO / "pipelines" / "examples" / "voice_assistant.yaml").read_text()
HEAD = VOICE.split("\nnodes:")[0]
FRONT = """
nodes:
  - {id: vad, type: vad, params: {engine: energy, endpointing: silence, silence_ms: 500}}
  - {id: stt, type: stt}
  - {id: tts, type: tts}
edges:
  - {from: input.audio, to: vad.audio}
  - {from: vad.audio, to: stt.audio}
  - {from: vad.vad, to: stt.vad}
  - {from: stt.final, to: output.transcript}
"""
SPECS = {
    "fanned_transcript": VOICE + "  - {from: stt.final, to: output.heard}\n",
    "echo": HEAD + FRONT + "  - {from: stt.final, to: tts.text}\n"
                           "  - {from: tts.audio, to: output.audio}\n",
    "stt_only": HEAD.replace("  llm: {primary: local}\n", "").replace(
        "  tts: {primary: espeak}\n", "") + FRONT.replace("  - {id: tts, type: tts}\n", ""),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_turn_without_an_llm_reply_commits(name: str, spoken: dict[str, Path],
                                             rspp_cli: RsppCli, tmp_path: Path) -> None:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(SPECS[name])
    tl = tmp_path / "t.jsonl"
    res = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--timeline", str(tl),
                       "--record-level", "L2", "--json")
    assert res.returncode == 0, res.stderr
    [turn] = json.loads(res.stdout)["turns"]
    assert turn["terminal"] == "commit", turn
    assert "weather" in turn["transcript"], turn
    if name == "stt_only":
        assert turn["reply"] == "", turn
    else:  # the echo speaks the transcript; the fanned output carries it beside the reply
        assert "weather" in turn["reply"], turn
    lines = [json.loads(x) for x in tl.read_text().splitlines()]
    signals = [ln["record"]["signal"] for ln in lines if ln["kind"] == "control_signal"]
    assert signals.count("commit") == 1 and "abort" not in signals, signals
    if name != "echo":
        return
    report = tmp_path / "replay.json"
    rep = rspp_cli("replay", str(tl), "--spec", str(spec), "--report", str(report))
    doc = json.loads(report.read_text())
    assert all(doc["divergences"][c] == 0 for c in ("ORDERING", "PLAN", "OUTCOME", "AUTHORITY")
               ), doc["findings"]
    assert rep.returncode == 0, rep.stdout + rep.stderr
