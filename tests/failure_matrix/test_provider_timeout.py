"""Failure matrix row "provider timeout": the LLM endpoint accepts and never answers.

Through ``rspp run --real-time`` (wall-clock budgets enforced, as in production) with
the Anthropic adapter pointed at the fake Anthropic server (the vendor's wire protocol)
that stalls every request: each attempt times out after the spec's ``timeout_ms``, the
invocation records ``timeout``, the controller switches to the fallback (``local``),
which answers; the turn commits once and the timeline says why
(``provider_error``, ``provider_switch``, OR-02 invocation outcomes).
"""

from __future__ import annotations

import json
from pathlib import Path

from rspp.testing.fakes import FakeProviderServers, Fault

from .conftest import (
    REPO,
    assert_lifecycles,
    assert_valid,
    read_timeline,
    rspp,
    run_json,
    signals,
    spec_with,
)

SPEC = REPO / "pipelines" / "examples" / "anthropic_offline_speech.yaml"


def test_provider_timeout_switches_to_the_fallback_and_the_turn_commits(
    question: tuple[bytes, Path], tmp_path: Path
) -> None:
    spec = spec_with(tmp_path, "timeout.yaml", [
        ("    timeout_ms: 4000 ", "    timeout_ms: 1000 "),
        ("providers:\n", "budgets: {turn_ms: 20000}\n\nproviders:\n"),
    ], base=SPEC)
    timeline = tmp_path / "timeline.jsonl"
    with FakeProviderServers() as fakes:
        fakes.anthropic.faults.sticky = Fault("stall", seconds=60)
        res = rspp("run", str(spec), "--input", str(question[1]), "--timeline", str(timeline),
                   "--json", "--real-time", extra_env=fakes.env)
        asked = len(fakes.anthropic.requests)
    out = run_json(res)
    (turn,) = out["turns"]
    assert turn["terminal"] == "commit", out
    assert turn["reply"].startswith("I cannot check the weather offline"), out  # the fallback
    assert asked >= 1  # the primary was really asked, over HTTP
    lines = read_timeline(timeline)
    assert assert_lifecycles(lines)[turn["turn_id"]] == [("turn_open", None), ("commit", None),
                                                         ("close", None)]
    errors = [s["reason"] for s in signals(lines, "provider_error")]
    assert errors and all("provider=anthropic outcome=timeout" in e for e in errors), errors
    (switch,) = [s["reason"] for s in signals(lines, "provider_switch")]
    assert "from=anthropic to=local cause=outcome=timeout" in switch
    (evidence,) = [ln["record"] for ln in lines if ln["kind"] == "or02_evidence"]
    outcomes = [(i["provider_id"], i["outcome"]) for i in evidence["provider_invocations"]
                if i["modality"] == "llm"]
    assert outcomes[-1] == ("local", "success") and ("anthropic", "timeout") in outcomes, (
        json.dumps(evidence["provider_invocations"]))
    assert out["dead_letters"] == []
    assert_valid(timeline)
