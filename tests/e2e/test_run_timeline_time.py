"""Time correctness on a running session's timeline (NF-018), through ``rspp run``.

The offline assistant (VAD, STT, LLM, segmenter, TTS: inline nodes and workers) answers
one question; its L2 timeline is then checked in file order (the order the recorder
appended it): runtime and wall-clock timestamps never go back, every edge carries its
events in strictly increasing runtime sequence, ingress audio advances its media time
frame by frame, and the turn's lifecycle markers follow the contract order.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
STAMPED = ("event_record", "control_signal", "decision_outcome")


def test_a_run_timeline_is_monotonic_per_clock_per_edge_and_in_media_time(
        spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path) -> None:
    timeline = tmp_path / "t.jsonl"
    res = rspp_cli.run(str(REPO / "pipelines" / "examples" / "voice_assistant.yaml"),
                       "--input", str(spoken["question"]), "--timeline", str(timeline),
                       "--record-level", "L2", "--json")
    assert res.returncode == 0, res.stderr
    [turn] = json.loads(res.stdout)["turns"]
    assert turn["terminal"] == "commit", turn
    lines = [json.loads(x) for x in timeline.read_text().splitlines()]
    records = [(ln["kind"], ln["record"]) for ln in lines if ln["kind"] in STAMPED]
    assert len(records) > 100
    for clock in ("runtime_timestamp_ms", "wall_clock_timestamp_ms"):
        stamps = [rec[clock] for _, rec in records]
        assert all(b >= a for a, b in itertools.pairwise(stamps)), clock
    per_edge: dict[str, list[int]] = {}
    for kind, rec in records:
        if kind == "event_record" and rec.get("edge_id"):
            per_edge.setdefault(rec["edge_id"], []).append(rec["runtime_sequence"])
    # inner edges of workers and the outputs are recorded as well as the ingress
    assert {"input.audio", "stt.final", "llm.text", "output.audio"} <= set(per_edge)
    for edge, seqs in per_edge.items():
        assert all(b > a for a, b in itertools.pairwise(seqs)), edge
    media = [rec["media_time"]["sample_index"] for kind, rec in records
             if kind == "event_record" and rec.get("edge_id") == "input.audio"]
    steps = {b - a for a, b in itertools.pairwise(media)}
    assert media[0] == 0 and steps == {320}  # 20 ms frames at 16 kHz, none lost or repeated
    order = {rec["signal"]: rec["runtime_sequence"] for kind, rec in records
             if kind == "control_signal"}
    assert order["turn_open_proposed"] < order["turn_open"] < order["commit"] < order["close"]
    assert order["turn_open"] < min(seq for seq in per_edge["output.audio"])
    assert max(per_edge["output.audio"]) < order["playback_completed"] < order["commit"]
