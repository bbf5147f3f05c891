"""Failure matrix row "node failure": a node raises on every reply sentence (T10, F-134).

Through ``rspp run``: each turn the failing node touches ends ``abort`` with the error's
reason and ``close`` (never a commit, never a hang), the failed inputs are dead-lettered
with the error code, the session survives to answer the next question the same way,
and the timeline satisfies the contract.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import assert_lifecycles, assert_valid, read_timeline, rspp, run_json, spec_with


def test_node_failure_aborts_the_turn_dead_letters_the_input_and_the_session_survives(
    two_questions: Path, tmp_path: Path
) -> None:
    spec = spec_with(tmp_path, "crash.yaml", [
        ("  - id: tts\n", "  - id: crash\n    type: python:fm_nodes:Crash\n  - id: tts\n"),
        ("  - {from: segmenter.text, to: tts.text}",
         "  - {from: segmenter.text, to: crash.text}\n  - {from: crash.text, to: tts.text}"),
    ])
    timeline = tmp_path / "timeline.jsonl"
    out = run_json(rspp("run", str(spec), "--input", str(two_questions), "--timeline",
                        str(timeline), "--json"))
    turns = out["turns"]
    assert len(turns) == 2, out  # the failure did not end the session
    assert [(t["terminal"], t["reason"]) for t in turns] == [
        ("abort", "runtime_internal_error")] * 2
    assert all(t["transcript"] == "what is the weather like today" for t in turns)
    # nothing lost silently: one dead letter per failed input, naming node and error
    assert len(out["dead_letters"]) == 2
    assert all(d.startswith("crash:runtime_internal_error:") for d in out["dead_letters"])
    assert out["output_seconds"] == 0 and out["after_fence_outputs"] == 0
    lines = read_timeline(timeline)
    lifecycles = assert_lifecycles(lines)
    assert {t["turn_id"] for t in turns} <= set(lifecycles)
    for t in turns:
        assert lifecycles[t["turn_id"]][-2:] == [("abort", "runtime_internal_error"),
                                                 ("close", None)]
    errors = [ln["record"] for ln in lines if ln["kind"] == "event_record"
              and ln["record"].get("node_id") == "crash"
              and ln["record"].get("reason") == "runtime_internal_error"]
    assert len(errors) == 2  # an error event per failure, on the failing node
    assert_valid(timeline)
