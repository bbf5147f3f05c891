"""A shed audio frame never strands a turn: the end of speech survives a full edge (``rspp run``).

The STT falls behind at the end of an utterance: a custom inline node (``lag``) between
the VAD and the STT delays frames by three and, from the VAD's end-of-utterance frame
on, holds them until six more frames arrived, then hands the last speech frames, the
end-of-utterance frame and the six that followed to the STT's edge in one go (the STT
cannot run in between). That edge holds 4 frames (``strategy: drop``, oldest first), so
the burst overflows it for sure. The end-of-utterance frame is a speech boundary: it is
never shed (the frames around it are, each recorded by a ``drop_notice``), so the STT
finalises on what it got and the turn commits at its end of speech; before the fix the
boundary frame was shed and the turn stayed open until its budget ran out.
The VAD's boundary events (``vad.vad -> stt.vad``) travel on the ControlLane.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

NODES = textwrap.dedent('''
    from rspp import Node


    class Lag(Node):
        """A delay line of 3 frames; the end of speech and 6 frames after it go out at once."""
        inputs = ("audio",)
        outputs = ("audio",)
        port_types = {"audio": "audio"}

        def __init__(self, ctx, params=None):
            super().__init__(ctx, params)
            self.held = []
            self.after_eou = None

        def process(self, event, port):
            self.held.append(event)
            if (event.attrs or {}).get("eou") and self.after_eou is None:
                self.after_eou = 0
                self.ctx.audit("lag:eou_held")
            elif self.after_eou is not None:
                self.after_eou += 1
            if self.after_eou is None:
                while len(self.held) > 3:
                    self.ctx.emit(self.held.pop(0), "audio")
            elif self.after_eou >= 6:
                self.ctx.audit(f"lag:burst:{len(self.held)}")
                for ev in self.held:
                    self.ctx.emit(ev, "audio")
                self.held, self.after_eou = [], None
            return None
''')

SPEC = """\
name: shed-boundary
version: 1.0.0
providers:
  stt: {primary: pocketsphinx}
nodes:
  - {id: vad, type: vad, params: {engine: energy, endpointing: silence, silence_ms: 500}}
  - {id: lag, type: "python:lag_nodes:Lag"}
  - {id: stt, type: stt}
edges:
  - {from: input.audio, to: vad.audio}
  - {from: vad.audio, to: lag.audio}
  - from: lag.audio
    to: stt.audio
    buffer: {strategy: drop, max_queue_items: 4}
  - {from: vad.vad, to: stt.vad}
  - {from: stt.final, to: output.transcript}
"""


def test_a_full_stt_edge_sheds_audio_but_the_turn_still_ends_at_its_end_of_speech(
        spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path) -> None:
    (tmp_path / "lag_nodes.py").write_text(NODES)
    spec, timeline = tmp_path / "shed.yaml", tmp_path / "t.jsonl"
    spec.write_text(SPEC)
    res = rspp_cli.run(str(spec), "--input", str(spoken["question"]),
                       "--timeline", str(timeline), "--json")
    assert res.returncode == 0, res.stderr
    records: list[dict[str, Any]] = [json.loads(x)["record"]
                                     for x in timeline.read_text().splitlines()]
    reasons = [str(r.get("reason", "")) for r in records]
    assert "lag:eou_held" in reasons and "lag:burst:10" in reasons, reasons
    # the burst overflowed the STT's edge: the shed frames are recorded
    drops = [r for r in records if r.get("signal") == "drop_notice"
             and r.get("edge_id") == "lag.audio->stt.audio"]
    assert drops and {r["reason"] for r in drops} == {"max_queue_items_exceeded"}, drops
    shed = sum(r["seq_range"]["end"] - r["seq_range"]["start"] + 1 for r in drops)
    assert shed >= 1
    # ... but not the end of speech: the turn ends with its transcript and commits
    [turn] = json.loads(res.stdout)["turns"]
    assert turn["terminal"] == "commit", turn
    assert "weather" in turn["transcript"], turn
    lifecycle = [r["signal"] for r in records
                 if r.get("signal") in ("turn_open", "commit", "abort", "close")]
    assert lifecycle == ["turn_open", "commit", "close"], lifecycle
