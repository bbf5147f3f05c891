"""Replay/divergence types: counts and the pass/fail verdict follow the findings."""

from __future__ import annotations

import msgspec
import pytest

from rspp.contracts import (
    Divergence,
    DivergenceClass,
    DivergencePolicy,
    DivergenceReport,
    ReplayMode,
    ReplayRequest,
    ReplayTolerances,
    encode_json,
)

pytestmark = pytest.mark.unit


def _finding(cls: DivergenceClass) -> Divergence:
    return Divergence(
        divergence_class=cls,
        message="differs",
        turn_id="t1",
        event_ids=("e1",),
        expected="a",
        actual="b",
    )


def test_timing_only_passes_by_default_and_counts_every_class() -> None:
    report = DivergenceReport.build(
        ReplayMode.REPLAY_DECISIONS, [_finding(DivergenceClass.TIMING)] * 2
    )
    assert report.passed
    assert report.counts[DivergenceClass.TIMING] == 2
    assert set(report.counts) == set(DivergenceClass)
    assert sum(report.counts.values()) == len(report.findings)


@pytest.mark.parametrize("cls", [c for c in DivergenceClass if c is not DivergenceClass.TIMING])
def test_non_timing_divergence_fails(cls: DivergenceClass) -> None:
    report = DivergenceReport.build(ReplayMode.RECOMPUTE_DECISIONS, [_finding(cls)])
    assert not report.passed
    assert report.counts[cls] == 1


def test_no_policy_waives_authority_divergences() -> None:
    """A policy that leaves AUTHORITY out (built or decoded) still fails on it."""
    built = DivergencePolicy(fail_on=(DivergenceClass.TIMING,))
    decoded = msgspec.json.decode(b'{"fail_on": ["plan"]}', type=DivergencePolicy)
    for policy in (built, decoded):
        assert DivergenceClass.AUTHORITY in policy.fail_on
        report = DivergenceReport.build(
            ReplayMode.RE_SIMULATE_NODES, [_finding(DivergenceClass.AUTHORITY)], policy=policy)
        assert not report.passed


def test_policy_can_cap_timing_findings_and_ignore_classes() -> None:
    policy = DivergencePolicy(fail_on=(DivergenceClass.PLAN,), max_timing_findings=1)
    ok = DivergenceReport.build(
        ReplayMode.RE_SIMULATE_NODES, [_finding(DivergenceClass.ORDERING)], policy=policy
    )
    assert ok.passed
    too_many = DivergenceReport.build(
        ReplayMode.RE_SIMULATE_NODES, [_finding(DivergenceClass.TIMING)] * 2, policy=policy
    )
    assert not too_many.passed


def test_report_and_request_round_trip_json() -> None:
    request = ReplayRequest(
        recording_ref="rec-1",
        mode=ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS,
        turn_ids=("t1",),
        tolerances=ReplayTolerances(timing_ms=20),
    )
    assert msgspec.json.decode(encode_json(request), type=ReplayRequest) == request
    report = DivergenceReport.build(request.mode, [_finding(DivergenceClass.PLAN)])
    assert msgspec.json.decode(encode_json(report), type=DivergenceReport) == report
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(
            b'{"recording_ref": "", "mode": "replay_decisions"}', type=ReplayRequest
        )
