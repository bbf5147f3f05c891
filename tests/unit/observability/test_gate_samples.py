"""Per-turn gate samples (live sessions) and the one gate definition they share with
``rspp slo report`` (issue 18: gated rollouts evaluate the same gates)."""

from __future__ import annotations

import msgspec
import pytest

from rspp.observability import (
    GATES,
    GateAccumulator,
    TimelineBuilder,
    TurnGateSample,
    as_lines,
    evaluate_gates,
    gate_report,
)

pytestmark = pytest.mark.unit


def _verdicts(report: object) -> list[tuple[int, str, float | None, int]]:
    gates = msgspec.to_builtins(report)["gates"]
    return [(g["gate"], g["status"], g["p95"], g["count"]) for g in gates]


def _traffic() -> TimelineBuilder:
    b = TimelineBuilder()
    for i in range(6):
        b.turn(f"t{i}", decision_ms=10 + i, first_output_ms=200 + 100 * i,
               playback_ms=300 + 50 * i)
    b.turn("tc", cancel_fence_ms=40)
    b.turn("slow", decision_ms=300, first_output_ms=1900, playback_ms=2500)
    return b


def test_live_samples_turn_by_turn_give_the_timeline_verdicts() -> None:
    """Fed line by line, asking for closed turns after every line (as a live session
    does), the samples evaluate to exactly the report of the whole timeline."""
    lines = as_lines(_traffic().lines())
    whole = evaluate_gates(lines)
    live = GateAccumulator()
    samples: list[TurnGateSample] = []
    for line in lines:
        live.add(line)
        samples.extend(live.closed_turns())
    assert [s.turn_id for s in samples] == ["t0", "t1", "t2", "t3", "t4", "t5", "tc", "slow"]
    assert live.closed_turns() == []  # each turn is reported once
    assert _verdicts(gate_report(samples)) == _verdicts(whole)
    assert whole.failed  # the slow turn fails gates 1, 2 and 7 in both
    slow = samples[-1]
    assert slow.turn_open_ms == 300 and slow.first_output_ms == 1900
    assert slow.evidence_complete and slow.lifecycle_ok and slow.invalid == ()
    # the live accumulator forgot the reported turns' evidence
    assert all(not s.outputs and not s.signals for s in live._sessions.values())


def test_gate_report_over_samples_uses_the_shared_thresholds() -> None:
    ok = [TurnGateSample(session_id="s", turn_id=f"t{i}", first_output_ms=100.0,
                         turn_open_ms=5.0, end_to_end_ms=400.0, outputs_checked=1,
                         evidence_complete=True, lifecycle_ok=True) for i in range(19)]
    slow = TurnGateSample(session_id="s", turn_id="late", first_output_ms=2400.0,
                          turn_open_ms=5.0, end_to_end_ms=400.0, evidence_complete=True,
                          lifecycle_ok=True)
    passing = {g.gate: g for g in gate_report(ok).gates}
    assert passing[2].status == "pass" and passing[3].status == "no_samples"
    # nearest rank: 1 slow turn in 20 is below the p95 rank, 2 in 21 reach it
    assert {g.gate: g for g in gate_report([*ok, slow]).gates}[2].status == "pass"
    failing = {g.gate: g for g in gate_report([*ok, slow, slow]).gates}
    assert failing[2].status == "fail" and failing[2].p95 == 2400.0
    assert failing[2].threshold == GATES[1].threshold == "p95 <= 1500 ms"
    broken = TurnGateSample(session_id="s", turn_id="x", invalid=(7,))
    g = {r.gate: r for r in gate_report([*ok, broken]).gates}
    assert g[7].status == "fail" and "missing or invalid anchor" in g[7].diagnostics[0]
    assert g[5].status == "fail" and g[5].value == 95.0  # 19 of 20 complete
