"""Audio chunks carry their encoding through a running session (F-023), via ``rspp run``.

The question is streamed as an 8 kHz WAV through the file transport into the offline
assistant (16 kHz recogniser). The L2 timeline shows each ingress chunk with its sample
rate, channels and codec (8000 Hz, mono, ``pcm_s16le``, 160 samples a 20 ms frame); the
recogniser reads the rate from the chunk (it resamples by it), so its transcript is
right only because the metadata is; the reply's audio chunks carry their own encoding and
the reply's ``audio_end`` closes the turn's output stream.
"""

from __future__ import annotations

import base64
import json
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _at_8khz(src: Path, dst: Path) -> Path:
    with wave.open(str(src)) as w:
        assert w.getframerate() == 16000
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    with wave.open(str(dst), "wb") as o:
        o.setnchannels(1)
        o.setsampwidth(2)
        o.setframerate(8000)
        o.writeframes(pcm[::2].tobytes())  # espeak's voice has little energy above 4 kHz
    return dst


def test_audio_chunks_carry_rate_channels_and_codec_from_ingress_to_the_recogniser(
        spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path) -> None:
    wav, timeline = _at_8khz(spoken["question"], tmp_path / "q8.wav"), tmp_path / "t.jsonl"
    res = rspp_cli.run(str(REPO / "pipelines" / "examples" / "voice_assistant.yaml"),
                       "--input", str(wav), "--timeline", str(timeline),
                       "--record-level", "L2", "--json")
    assert res.returncode == 0, res.stderr
    [turn] = json.loads(res.stdout)["turns"]
    assert turn["terminal"] == "commit" and "weather" in turn["transcript"], turn
    lines = [json.loads(x) for x in timeline.read_text().splitlines()]
    ingress = [ln["payload"] for ln in lines if ln["kind"] == "event_record"
               and ln["record"].get("edge_id") == "input.audio"]
    assert len(ingress) > 50
    for p in ingress:
        assert (p["type"], p["sample_rate_hz"], p["channels"], p["encoding"]) == (
            "audio", 8000, 1, "pcm_s16le"), p
    assert {len(base64.b64decode(p["data"])) for p in ingress[:-1]} == {320}  # 160 samples
    out = [ln for ln in lines if ln["kind"] == "event_record"
           and ln["record"].get("edge_id") == "output.audio"]
    chunks = [ln["payload"] for ln in out if ln["payload"]["type"] == "audio"]
    assert chunks and all((c["sample_rate_hz"], c["channels"], c["encoding"]) == (
        16000, 1, "pcm_s16le") for c in chunks), chunks[:2]
    last = out[-1]  # the reply's stream ends with its audio_end, of the same turn
    assert last["payload"].get("message") == "audio_end", last
    assert json.loads(last["payload"]["fields"]["attrs"]) == {"eos": True}
    assert {ln["record"]["turn_id"] for ln in out} == {last["record"]["turn_id"]}
