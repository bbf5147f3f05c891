"""The DeterminismContext of an ``rspp run`` turn, and its replay (F-150).

The showcase pipeline's turn has a fan-in ``merge`` node (rule ``arrival_order``
1.0), a ``select`` and the offline STT/LLM/TTS providers. ``rspp run --record-level
L2`` (a file run: not real time) records the turn's plan with its DeterminismContext:
the seed, the merge rule's identity, the ordering markers and the nondeterministic
inputs (the turn-start wall clock, one external call per control-plane snapshot read,
the capabilities the plan was built against). ``rspp replay`` of that recording (which
compiles the spec's custom ``python:`` node as ``rspp run`` does) re-freezes the same
plan: zero PLAN divergences and the same DeterminismContext in the replayed timeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHOWCASE = REPO / "pipelines" / "examples" / "showcase.yaml"


def plans(timeline: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in timeline.read_text().splitlines()]
    return [ln["record"] for ln in lines if ln["kind"] == "resolved_turn_plan"]


def test_a_run_turns_determinism_context_is_recorded_and_replays_unchanged(
    rspp_cli: RsppCli, spoken: dict[str, Path], tmp_path: Path
) -> None:
    timeline = tmp_path / "t.jsonl"
    run = rspp_cli.run(str(SHOWCASE), "--input", str(spoken["question"]),
                       "--record-level", "L2", "--timeline", str(timeline))
    assert run.returncode == 0, run.stdout + run.stderr
    (plan,) = plans(timeline)
    det = plan["determinism"]
    assert isinstance(det["seed"], int) and det["seed"] >= 0
    # the merge node's declared rule, not the profile default
    assert (det["merge_rule_id"], det["merge_rule_version"]) == ("arrival_order", "1.0")
    markers = det["ordering_markers"]
    assert markers[0].startswith("runtime_sequence_from:") and det["ordering_marker"] == markers[0]
    assert "lane_priority:ControlLane>DataLane>TelemetryLane" in markers
    assert any(m.startswith("topo_sha256:") for m in markers)
    inputs = {i["input_key"]: i for i in det["nondeterministic_inputs"]}
    assert inputs["turn_start_wall_ms"]["source"] == "system_time"
    # every control-plane snapshot the plan was resolved from is an external decision
    for name, ref in plan["snapshot_provenance"].items():
        read = inputs[f"snapshot:{name.removesuffix('_snapshot')}"]
        assert read["source"] == "external_call" and read["evidence_ref"] == ref
    for kind in ("stt", "llm", "tts"):
        assert inputs[f"capability:provider:{kind}"]["evidence_ref"].startswith("capabilities:")

    report, replayed = tmp_path / "r.json", tmp_path / "replayed.jsonl"
    out = rspp_cli("replay", str(timeline), "--spec", str(SHOWCASE), "--mode", "playback",
                   "--report", str(report), "--timeline-out", str(replayed))
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(report.read_text())
    assert all(doc["divergences"][c] == 0 for c in ("ORDERING", "PLAN", "OUTCOME",
                                                     "AUTHORITY")), doc["findings"]
    assert doc["provider_outputs_served"] > 0
    (again,) = plans(replayed)
    assert again["determinism"] == det and again["plan_hash"] == plan["plan_hash"]
