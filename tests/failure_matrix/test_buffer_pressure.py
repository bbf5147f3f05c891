"""Failure matrix row "buffer pressure": a consumer slower than real time on a bounded edge.

Through ``rspp run --real-time``: a side consumer of the input audio needs 40 ms per
20 ms frame behind a 4-item ``drop`` edge with item watermarks. The edge stays bounded
and sheds: every dropped frame leaves a ``drop_notice`` on that edge, each high
watermark crossing is answered by a low one, no other edge drops anything, and the
main path loses nothing (exact transcript, the reply, one commit and close).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from .conftest import (
    assert_lifecycles,
    assert_valid,
    read_timeline,
    rspp,
    run_json,
    signals,
    spec_with,
)

EDGE = "input.audio->tap.audio"


def test_buffer_pressure_sheds_on_the_bounded_edge_with_lineage_and_the_turn_commits(
    question: tuple[bytes, Path], tmp_path: Path
) -> None:
    spec = spec_with(tmp_path, "pressure.yaml", [
        ("  - id: tts\n", "  - id: tap\n    type: python:fm_nodes:SlowTap\n  - id: tts\n"),
        ("  - {from: vad.audio, to: stt.audio}",  # the main path is deep: only the tap sheds
         "  - {from: vad.audio, to: stt.audio, buffer: {max_queue_ms: 20000, "
         "max_queue_items: 5000, max_latency_contribution_ms: 20000}}\n"
         "  - {from: input.audio, to: tap.audio, buffer: {strategy: drop, max_queue_items: 4, "
         "watermarks: {queue_items: {high: 3, low: 1}}}}"),
    ])
    timeline = tmp_path / "timeline.jsonl"
    out = run_json(rspp("run", str(spec), "--input", str(question[1]), "--timeline",
                        str(timeline), "--json", "--real-time"))
    (turn,) = out["turns"]
    assert (turn["terminal"], turn["transcript"]) == ("commit", "what is the weather like today")
    assert turn["reply"].startswith("I cannot check the weather offline")
    lines = read_timeline(timeline)
    drops = signals(lines, "drop_notice")
    assert drops and {d["edge_id"] for d in drops} == {EDGE}, drops[:3]
    assert {d["reason"] for d in drops} <= {"watermark_shed", "capacity_drop"}, drops[:3]
    marks = [s["reason"].split(":")[0] for s in signals(lines, "watermark")
             if s["edge_id"] == EDGE]
    assert marks and marks[0] == "high_watermark_crossed"
    assert marks.count("high_watermark_crossed") - marks.count("low_watermark_crossed") in (0, 1)
    assert all(a != b for a, b in itertools.pairwise(marks))  # high, low, high, ...
    assert assert_lifecycles(lines)[turn["turn_id"]] == [
        ("turn_open", None), ("commit", None), ("close", None)]
    assert_valid(timeline)
