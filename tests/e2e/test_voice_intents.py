"""Five questions asked by voice through ``rspp run`` get the right answers (issue 13).

The questions come from the WER corpus, spoken by the product's espeak-ng TTS
into one WAV (a pause between questions long enough for each reply to play),
and run through the example spec with the real engines (pocketsphinx with its
domain model, the local responder, espeak-ng). Media time drives the run (no
``--real-time``), so a busy machine only makes it slower, never different.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rspp.testing import Utterance, load_corpus, speak
from rspp.transports import write_wav

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
GAP_S = 7  # longer than any of these replies: the next question never barges in
QUESTIONS = ("what is your name", "what is | four times six", "what time is it",
             "what is the date today", "tell me a joke")


def _dates() -> set[str]:
    now = datetime.now().astimezone()
    return {f"Today is {d.strftime('%A')}, {d.day} {d.strftime('%B %Y')}."
            for d in (now, now - timedelta(days=1))}  # the run may straddle midnight


def _ask(questions: list[Utterance], path: Path) -> Path:
    gap = np.zeros(16000 * GAP_S, dtype=np.int16)
    pcm = b"".join(speak(u) + gap.tobytes() for u in questions)
    write_wav(path, pcm, 16000)
    return path


def test_five_spoken_intents_are_understood_and_answered(
    rspp_cli: RsppCli, tmp_path: Path
) -> None:
    corpus = {u.text: u for u in load_corpus()}
    asked = [corpus[q] for q in QUESTIONS]
    wav = _ask(asked, tmp_path / "five.wav")
    res = rspp_cli("run", str(VOICE), "--input", str(wav), "--json", timeout=360)
    assert res.returncode == 0, res.stderr
    turns = json.loads(res.stdout)["turns"]
    # one turn per question: the pause inside "what is | four times six" did not split it
    assert [t["terminal"] for t in turns] == ["commit"] * 5, turns
    name, sums, clock, date, joke = turns
    assert name["transcript"] == "what is your name"
    assert name["reply"] == "My name is Rusty, a local stand-in voice assistant."
    assert sums["transcript"] == "what is four times six"
    assert sums["reply"] == "four times six is twenty four."
    assert clock["transcript"] == "what time is it"
    assert re.fullmatch(r"It is (1[0-2]|[1-9]):[0-5]\d (AM|PM)\.", clock["reply"]), clock
    assert date["transcript"] == "what is the date today"
    assert date["reply"] in _dates(), date
    assert "joke" in joke["transcript"] and joke["reply"].count("?") == 1, joke
    assert all(t["played_s"] > 0.5 for t in turns)  # every answer was spoken


def test_pauses_inside_sentences_do_not_split_turns_in_real_time(
    rspp_cli: RsppCli, tmp_path: Path
) -> None:
    """Every corpus sentence with a hesitation is one turn under adaptive endpointing, paced
    in real time so its early end is live (a lagging recogniser only makes it wait)."""
    paused = [u for u in load_corpus() if u.has_pause]
    gap = np.zeros(16000 * 4, dtype=np.int16).tobytes()
    wav = tmp_path / "paused.wav"
    write_wav(wav, b"".join(speak(u) + gap for u in paused), 16000)
    spec = tmp_path / "adaptive.yaml"
    shipped = "params: {engine: energy, endpointing: silence, silence_ms: 500}"
    assert shipped in VOICE.read_text()
    adaptive = "params: {engine: energy, endpointing: adaptive, complete_silence_ms: 250}"
    spec.write_text(VOICE.read_text().replace(shipped, adaptive))
    res = rspp_cli("run", str(spec), "--input", str(wav), "--json", "--real-time", timeout=360)
    assert res.returncode == 0, res.stderr
    turns = json.loads(res.stdout)["turns"]
    assert len(turns) == len(paused), [t["transcript"] for t in turns]
    for utt, turn in zip(paused, turns, strict=True):
        before, after = (part.split() for part in utt.text.split("|"))
        # the words after the pause landed in the same turn as the words before it
        assert len(turn["transcript"].split()) >= len(before) + len(after) - 1, (utt, turn)
