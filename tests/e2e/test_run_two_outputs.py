"""A reply on two outputs through ``rspp run`` and ``rspp replay``.

The offline assistant with one more edge, ``llm.text -> output.text``: the reply leaves
as the LLM's text and as the TTS's speech. The text ends long before the speech; the
turn still commits only after its audio played (it used to commit at the text's end of
stream, and the speech that followed was never played). The L2 timeline replays with
no ORDERING, PLAN, OUTCOME or AUTHORITY divergence (the replay ends the reply the same
way).
"""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"


def test_a_reply_on_text_and_speech_commits_after_its_audio_and_replays(
        spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path) -> None:
    spec = tmp_path / "voice_two_outputs.yaml"
    spec.write_text(VOICE.read_text() + "  - {from: llm.text, to: output.text}\n")
    out, tl = tmp_path / "reply.wav", tmp_path / "t.jsonl"
    res = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--output", str(out),
                       "--timeline", str(tl), "--record-level", "L2", "--json")
    assert res.returncode == 0, res.stderr
    [turn] = json.loads(res.stdout)["turns"]
    assert turn["terminal"] == "commit" and "weather" in turn["reply"], turn
    with wave.open(str(out)) as w:
        assert w.getnframes() > w.getframerate()  # more than a second of spoken reply
    lines = [json.loads(x) for x in tl.read_text().splitlines()]
    edges = [(i, ln["record"].get("edge_id")) for i, ln in enumerate(lines)
             if ln["kind"] == "event_record"]
    signals = {ln["record"]["signal"]: i for i, ln in enumerate(lines)
               if ln["kind"] == "control_signal"}
    text = [i for i, e in edges if e == "output.text"]
    audio = [i for i, e in edges if e == "output.audio"]
    assert text and audio and max(text) < max(audio)  # the text ended first
    assert max(audio) < signals["playback_completed"] < signals["commit"]
    rspp_cli.replays_clean(tl, spec, tmp_path / "replay.json")
