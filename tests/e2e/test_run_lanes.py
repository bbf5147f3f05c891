"""Per-edge lane rules in a running session, through ``rspp run`` (F-147).

A custom inline node (``flood``) behind the VAD sends mixed-lane traffic to one async
``sink`` over three spec edges; the sink records what it takes, in order (an audit each):

* ``flood.mixed -> sink.mixed`` is a shared DataLane edge with its own lane rules
  (``telemetry_max_items: 8``, ``control_max_items: 32``, ``telemetry_handling: drop``).
  Under normal load (frames 1-10) each frame sends one data, one TelemetryLane and one
  ControlLane event; on frame 12 a flood sends 40 telemetry, 5 data and 3 control events
  in one go (so the buffer is full before the sink runs);
* ``flood.notes -> sink.notes`` declares ``lane: TelemetryLane`` with a bound of 4: its
  30 data events of the flood are queued, served and shed as telemetry;
* ``flood.urgent -> sink.urgent`` declares ``lane: ControlLane``: its two events of the
  flood are served before any data the flood queued.

The records show each lane following its rules: drops only on the TelemetryLane (within
the configured bounds), every control event delivered (ControlLane events on a data edge
reach the node), every data event delivered in order.
"""

from __future__ import annotations

import json
import textwrap
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

NODES = textwrap.dedent('''
    from rspp import Event, Node
    from rspp.contracts import Lane


    class Flood(Node):
        """Mixed-lane traffic: a little per frame, then one flood on frame 12."""
        inputs = ("audio",)
        outputs = ("mixed", "notes", "urgent")
        port_types = {"audio": "audio", "mixed": "text", "notes": "text", "urgent": "text"}

        def __init__(self, ctx, params=None):
            super().__init__(ctx, params)
            self.n = 0

        def _send(self, port, text, lane=Lane.DATA):
            self.ctx.emit(Event("text", text, final=True, lane=lane), port)

        def process(self, event, port):
            self.n += 1
            n = self.n
            if n <= 10:
                self._send("mixed", f"d{n}")
                self._send("mixed", f"t{n}", Lane.TELEMETRY)
                self._send("mixed", f"c{n}", Lane.CONTROL)
            elif n == 12:
                for i in range(1, 41):
                    self._send("mixed", f"T{i}", Lane.TELEMETRY)
                    if i % 8 == 0:
                        self._send("mixed", f"D{i // 8}")
                    if i % 13 == 0:
                        self._send("mixed", f"C{i // 13}", Lane.CONTROL)
                for i in range(1, 31):
                    self._send("notes", f"n{i}")
                for i in range(1, 3):
                    self._send("urgent", f"u{i}")
            return None


    class Sink(Node):
        """Records every event it takes, in order."""
        inputs = ("mixed", "notes", "urgent")
        outputs = ("out",)
        port_types = {"mixed": "text", "notes": "text", "urgent": "text", "out": "text"}

        async def process(self, event, port):
            self.ctx.audit(f"took:{port}:{event.payload}")
            return None
''')

SPEC = """\
name: lanes
version: 1.0.0
nodes:
  - {id: vad, type: vad, params: {engine: energy, endpointing: silence, silence_ms: 500}}
  - {id: flood, type: "python:lane_nodes:Flood"}
  - {id: sink, type: "python:lane_nodes:Sink"}
edges:
  - {from: input.audio, to: vad.audio}
  - {from: vad.audio, to: flood.audio}
  - from: flood.mixed
    to: sink.mixed
    buffer: {strategy: drop, max_queue_items: 64, telemetry_max_items: %(tel)s,
             control_max_items: 32, telemetry_handling: drop}
  - from: flood.notes
    to: sink.notes
    lane: TelemetryLane
    buffer: {telemetry_max_items: 4, telemetry_handling: drop}
  - {from: flood.urgent, to: sink.urgent, lane: ControlLane}
  - {from: sink.out, to: output.text}
"""


def _tone(path: Path) -> Path:
    """0.25 s silence, 1 s of a 440 Hz tone (speech to the energy VAD), 1.5 s silence."""
    rate = 16000
    tone = (np.sin(2 * np.pi * 440 * np.arange(rate) / rate) * 3000).astype("<i2")
    pcm = np.concatenate([np.zeros(rate // 4, "<i2"), tone, np.zeros(rate * 3 // 2, "<i2")])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def _write(tmp_path: Path, tel: str = "8") -> Path:
    (tmp_path / "lane_nodes.py").write_text(NODES)
    spec = tmp_path / "lanes.yaml"
    spec.write_text(SPEC % {"tel": tel})
    return spec


def test_each_lane_follows_the_spec_edges_rules_under_a_flood(
        rspp_cli: RsppCli, tmp_path: Path) -> None:
    spec, timeline = _write(tmp_path), tmp_path / "t.jsonl"
    res = rspp_cli.run(str(spec), "--input", str(_tone(tmp_path / "tone.wav")),
                       "--timeline", str(timeline), "--json")
    assert res.returncode == 0, res.stderr
    records: list[dict[str, Any]] = [json.loads(x)["record"]
                                     for x in timeline.read_text().splitlines()]
    took = [r["reason"].removeprefix("took:") for r in records
            if str(r.get("reason", "")).startswith("took:")]
    mixed = [t.removeprefix("mixed:") for t in took if t.startswith("mixed:")]

    # data: every event delivered, in order (nothing of the DataLane was shed)
    data = [t for t in mixed if t[0] in "dD"]
    assert data == [f"d{i}" for i in range(1, 11)] + [f"D{i}" for i in range(1, 6)]
    # control: every event delivered (on a data edge too), the flood's served first
    assert [t for t in mixed if t[0] in "cC"] == \
        [f"c{i}" for i in range(1, 11)] + ["C1", "C2", "C3"]
    assert [t for t in took if t.startswith("urgent:")] == ["urgent:u1", "urgent:u2"]
    flood = took[took.index("mixed:C1"):]
    first_data = flood.index("mixed:D1")
    assert {"mixed:C2", "mixed:C3", "urgent:u1", "urgent:u2"} <= set(flood[:first_data])
    # telemetry: served last, shed first within the edge's bound (the oldest kept)
    tel = [t for t in mixed if t[0] == "T"]
    assert 1 <= len(tel) <= 8 and tel == [f"T{i}" for i in range(1, len(tel) + 1)], tel
    after = flood[flood.index("mixed:T1"):]  # nothing but telemetry once it is served
    assert all(t.startswith(("mixed:T", "notes:")) for t in after), after
    notes = [t.removeprefix("notes:") for t in took if t.startswith("notes:")]
    assert notes == ["n1", "n2", "n3", "n4"]  # the TelemetryLane edge's bound is 4

    drops = [r for r in records if r.get("signal") == "drop_notice"]
    assert drops, "the flood overflowed nothing"
    assert {r["target_lane"] for r in drops} == {"TelemetryLane"}, drops
    assert {r["reason"] for r in drops} == {"telemetry_overflow"}
    assert {r["edge_id"] for r in drops} == {"flood.mixed->sink.mixed",
                                             "flood.notes->sink.notes"}
    shed = sum(r["seq_range"]["end"] - r["seq_range"]["start"] + 1 for r in drops
               if r["edge_id"] == "flood.notes->sink.notes")
    assert shed == 26  # 30 queued, 4 kept


def test_lint_names_a_lane_bound_below_one(rspp_cli: RsppCli, tmp_path: Path) -> None:
    res = rspp_cli("lint", str(_write(tmp_path, tel="0")))
    assert res.returncode != 0
    assert "telemetry_max_items" in res.stdout + res.stderr
