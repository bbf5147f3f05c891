"""Divergence comparator over hand-built timelines, one test per class (F-077)."""

from __future__ import annotations

import copy
import json

import pytest

from rspp.contracts import (
    CancelScopeKind,
    DivergenceClass,
    DivergencePolicy,
    Emitter,
    ReplayTolerances,
    SignalName,
    make_entry,
)
from rspp.observability import (
    OR02Evidence,
    TimelineBuilder,
    compare_timelines,
    report_to_json,
    report_to_markdown,
)

pytestmark = pytest.mark.unit

C = DivergenceClass


def _run(**turn_kwargs: object) -> list[dict[str, object]]:
    b = TimelineBuilder()
    b.turn("t1")
    b.turn("t2", **turn_kwargs)  # type: ignore[arg-type]
    return b.lines()


def _counts(expected: list[dict[str, object]], actual: list[dict[str, object]],
            **kw: object) -> dict[str, int]:
    return report_to_json(compare_timelines(expected, actual, **kw))["divergences"]  # type: ignore[arg-type,no-any-return]


def _only(counts: dict[str, int], *names: str) -> None:
    assert {k for k, v in counts.items() if v} == set(names), counts


def test_identical_runs_have_no_divergence() -> None:
    report = compare_timelines(_run(), _run())
    assert report.passed and report.findings == ()
    assert report_to_json(report)["divergences"] == {
        "ORDERING": 0, "PLAN": 0, "OUTCOME": 0, "TIMING": 0, "AUTHORITY": 0,
        "PROVIDER_CHOICE": 0}


def test_session_id_and_wall_clock_do_not_matter() -> None:
    other = TimelineBuilder(session_id="replayed", wall_offset_ms=5)
    other.turn("t1")
    other.turn("t2")
    assert compare_timelines(_run(), other.lines()).findings == ()


def test_ordering() -> None:
    actual = _run()
    llm = next(ln for ln in actual if ln["record"].get("node_id") == "llm"  # type: ignore[union-attr]
               and ln["record"].get("turn_id") == "t2")  # type: ignore[union-attr]
    tts = next(ln for ln in actual if ln["record"].get("node_id") == "tts"  # type: ignore[union-attr]
               and ln["record"].get("turn_id") == "t2")  # type: ignore[union-attr]
    a, b = llm["record"], tts["record"]
    a["runtime_sequence"], b["runtime_sequence"] = b["runtime_sequence"], a["runtime_sequence"]  # type: ignore[index]
    counts = _counts(_run(), actual)
    _only(counts, "ORDERING")
    assert counts["ORDERING"] == 1


def test_plan() -> None:
    actual = _run()
    plan = next(ln for ln in actual if ln["kind"] == "resolved_turn_plan"
                and ln["record"]["turn_id"] == "t2")  # type: ignore[index]
    plan["record"]["plan_hash"] = "f" * 64  # type: ignore[index]
    plan["record"]["budgets"]["turn_budget_ms"] = 9000  # type: ignore[index]
    report = compare_timelines(_run(), actual)
    _only(report_to_json(report)["divergences"], "PLAN")
    assert "budgets" in report.findings[0].message and not report.passed


def test_outcome_terminal_and_text() -> None:
    counts = _counts(_run(), _run(text="something else"))
    _only(counts, "OUTCOME")
    report = compare_timelines(_run(), _run(terminal="abort"))
    messages = [f.message for f in report.findings if f.divergence_class == C.OUTCOME]
    assert "terminal outcome differs" in messages
    terminal = next(f for f in report.findings if f.message == "terminal outcome differs")
    assert (terminal.expected, terminal.actual) == ("commit", "abort(provider_error)")


def test_timing_with_tolerance() -> None:
    slow = _run(first_output_ms=600)
    assert _counts(_run(), slow, tolerances=ReplayTolerances(timing_ms=1000))["TIMING"] == 0
    report = compare_timelines(_run(), slow, tolerances=ReplayTolerances(timing_ms=50))
    _only(report_to_json(report)["divergences"], "TIMING")
    assert report.passed  # TIMING is informational under the default policy
    strict = compare_timelines(_run(), slow, policy=DivergencePolicy(fail_on=(C.TIMING,)))
    assert not strict.passed and report_to_json(strict)["failing_classes"] == ["TIMING"]


def test_authority() -> None:
    report = compare_timelines(_run(), _run(epoch=2))
    _only(report_to_json(report)["divergences"], "AUTHORITY", "PLAN")
    extra = _run()
    b = TimelineBuilder()
    b.items = []
    b.now_ms, b._seq = 99_999, 10_000  # type: ignore[attr-defined]
    b.signal(SignalName.STALE_EPOCH_REJECT, Emitter.RK_24, "t2", authority_epoch=0,
             reason="stale")
    counts = _counts(_run(), extra + b.lines())
    _only(counts, "AUTHORITY")


def test_a_shed_on_one_side_only_is_timing() -> None:
    b = TimelineBuilder()
    b.items = []
    b.now_ms, b._seq = 99_999, 10_000  # type: ignore[attr-defined]
    b.signal(SignalName.SHED, Emitter.RK_25, None, reason="max_queue_items_exceeded:e:1",
             edge_id="e")
    report = compare_timelines(_run(), _run() + b.lines())
    _only(report_to_json(report)["divergences"], "TIMING")
    assert report.passed  # an overload shed is not a replay failure


def test_an_invocation_cancel_on_one_side_only_is_not_a_divergence() -> None:
    # whether a provider call was still in flight when its node scope was cancelled is
    # provider timing (F-160): a replay on recorded outputs has no call in flight
    b = TimelineBuilder()
    b.items = []
    b.now_ms, b._seq = 99_999, 10_000  # type: ignore[attr-defined]
    b.signal(SignalName.CANCEL, Emitter.RK_16, "t2", reason="barge_in:cooperative",
             scope=CancelScopeKind.PROVIDER_INVOCATION, node_id="tts",
             provider_invocation_id="inv-1")
    report = compare_timelines(_run() + b.lines(), _run())
    assert report.findings == () and report.passed
    # the node scope's own cancel is still compared
    n = TimelineBuilder()
    n.items = []
    n.now_ms, n._seq = 99_999, 10_000  # type: ignore[attr-defined]
    n.signal(SignalName.CANCEL, Emitter.RK_16, "t2", reason="barge_in:cooperative",
             scope=CancelScopeKind.NODE, node_id="tts")
    assert compare_timelines(_run() + n.lines(), _run()).findings != ()


def test_provider_choice() -> None:
    changed = _run(provider_bindings={"stt": "fake-stt", "llm": "other-llm", "tts": "fake-tts"})
    report = compare_timelines(_run(), changed)
    counts = report_to_json(report)["divergences"]
    _only(counts, "PROVIDER_CHOICE", "PLAN")
    assert counts["PROVIDER_CHOICE"] == 2  # plan bindings + evidence invocations


def test_policy_and_renderings() -> None:
    report = compare_timelines(_run(), _run(text="other"),
                               policy=DivergencePolicy(fail_on=(C.PLAN,)))
    assert report.passed
    data = report_to_json(report)
    json.dumps(data)
    assert data["findings"][0]["class"] == "OUTCOME"
    md = report_to_markdown(report)
    assert "| OUTCOME | 1 | no |" in md and "**Verdict:** PASS" in md
    failing = compare_timelines(_run(), _run(text="other"))
    assert "| OUTCOME | 1 | yes |" in report_to_markdown(failing)


def test_accepts_contract_timeline_entries() -> None:
    b = TimelineBuilder()
    b.turn("t1")
    entries = [make_entry(r, p) for r, p in b.items if not isinstance(r, OR02Evidence)]  # type: ignore[arg-type]
    assert compare_timelines(entries, copy.deepcopy(entries)).findings == ()
    assert compare_timelines(entries, b.lines()).findings == ()
