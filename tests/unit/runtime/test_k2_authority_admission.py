"""Authority guard (F-156, F-158, NF-027) and local admission (F-049, F-050, NF-006)."""

from __future__ import annotations

from typing import Any

import jsonschema
import msgspec
import pytest

from rspp.contracts import (
    AdmissionPolicy,
    DecisionOutcome,
    OutcomeKind,
    OutcomeScope,
    SnapshotMeta,
)
from rspp.errors import AuthorityError
from rspp.kernel._clock import VirtualClock
from rspp.turns._admission import AdmissionError, LocalAdmission, SchedulingShed
from rspp.turns._arbiter import AuthorityVerdict
from rspp.turns._authority import AuthorityGuard, IdempotencyDedupe, IngressVerdict

pytestmark = pytest.mark.unit


def _validate(schema: dict[str, Any], rec: DecisionOutcome) -> None:
    wrapper = {
        "$schema": schema["$schema"],
        "$defs": schema["$defs"],
        "$ref": "#/$defs/decision_outcome",
    }
    jsonschema.Draft202012Validator(wrapper).validate(msgspec.json.decode(msgspec.json.encode(rec)))


def test_epoch_enforced_on_ingress_and_egress_through_rotation() -> None:
    guard = AuthorityGuard(5)
    assert guard.check_ingress(5, event_id="e1") is IngressVerdict.ACCEPT
    assert guard.admit_output(5)
    guard.rotate(6)  # lease rotation mid-session
    assert guard.check_ingress(5, event_id="e2") is IngressVerdict.STALE_EPOCH
    outputs = [guard.admit_output(e) for e in (5, 4, 6, 7)]
    assert outputs == [False, False, True, False]
    assert guard.accepted_outputs == 2  # both at the then-current epoch; stale accepted = 0
    assert guard.verdict(5) is AuthorityVerdict.STALE and guard.verdict(6) is AuthorityVerdict.VALID
    guard.revoke()
    assert guard.verdict(6) is AuthorityVerdict.DEAUTHORIZED
    assert not guard.admit_output(6)
    assert guard.check_ingress(6, event_id="e3") is IngressVerdict.DEAUTHORIZED
    with pytest.raises(AuthorityError, match="only grow"):
        guard.rotate(3)
    guard.rotate(7)
    assert guard.admit_output(7)
    assert guard.rejected == {IngressVerdict.STALE_EPOCH: 4, IngressVerdict.DEAUTHORIZED: 2}


def test_idempotency_dedupe_across_retry_reconnect_and_failover() -> None:
    guard = AuthorityGuard(1)
    assert guard.check_ingress(1, event_id="a", idempotency_key="k1") is IngressVerdict.ACCEPT
    assert (
        guard.check_ingress(1, event_id="a-retry", idempotency_key="k1") is IngressVerdict.DUPLICATE
    )
    assert guard.check_ingress(1, event_id="b", idempotency_key="k2") is IngressVerdict.ACCEPT
    # failover: the new owner (new epoch) imports the window and keeps deduping
    new_owner = AuthorityGuard(2)
    new_owner.dedupe.load(guard.dedupe.export())
    assert (
        new_owner.check_ingress(2, event_id="b-replayed", idempotency_key="k2")
        is IngressVerdict.DUPLICATE
    )
    assert new_owner.check_ingress(2, event_id="c", idempotency_key="k3") is IngressVerdict.ACCEPT
    marker = new_owner.dedupe.markers[0]
    assert (marker.idempotency_key, marker.first_event_id, marker.duplicate_event_id) == (
        "k2",
        "b",
        "b-replayed",
    )
    small = IdempotencyDedupe(capacity=2)
    for k in ("x", "y", "z"):
        small.seen(k, k)
    assert not small.seen("x", "x2")  # evicted (bounded memory), accepted again


def _policy(**kw: int) -> AdmissionPolicy:
    base = {"max_concurrent_sessions": 2, "sessions_per_minute": 3, "turns_per_minute": 2}
    base.update(kw)
    return AdmissionPolicy(
        meta=SnapshotMeta(snapshot_id="ap", version=1, issued_at_ms=0, expires_at_ms=10**13),
        tenant_id="acme",
        **base,
    )


def test_session_quota_reject_and_rate_defer(reference_schema: dict[str, Any]) -> None:
    clock = VirtualClock()
    adm = LocalAdmission(clock)
    with pytest.raises(AdmissionError, match="set_policy"):
        adm.admit_session("acme", "s0")
    adm.set_policy(_policy())
    d1, d2, d3 = (adm.admit_session("acme", s) for s in ("s1", "s2", "s3"))
    assert [d.kind for d in (d1, d2, d3)] == [
        OutcomeKind.ADMIT,
        OutcomeKind.ADMIT,
        OutcomeKind.REJECT,
    ]
    assert (
        d3.outcome.reason == "max_concurrent_sessions:2" and d3.outcome.scope is OutcomeScope.TENANT
    )
    adm.end_session("acme", "s1")
    d4 = adm.admit_session("acme", "s4")  # 3rd start within the minute: allowed (limit 3)
    assert d4.admitted
    adm.end_session("acme", "s2")
    d5 = adm.admit_session("acme", "s5")
    assert d5.kind is OutcomeKind.DEFER and d5.retry_after_ms == 60_000
    clock.advance(60_000)
    assert adm.admit_session("acme", "s5").admitted
    assert adm.admit_session("acme", "s4").admitted  # existing session: still admitted
    for d in (d1, d3, d5):
        _validate(reference_schema, d.outcome)
    m = adm.metrics("acme")
    assert m == {"admit": 5, "reject": 1, "defer": 1, "active_sessions": 2}


def test_turn_rate_limit(reference_schema: dict[str, Any]) -> None:
    clock = VirtualClock()
    adm = LocalAdmission(clock)
    adm.set_policy(_policy())
    adm.admit_session("acme", "s1")
    kinds = [adm.admit_turn("acme", "s1", f"t{i}").kind for i in range(3)]
    assert kinds == [OutcomeKind.ADMIT, OutcomeKind.ADMIT, OutcomeKind.DEFER]
    rejected = adm.admit_turn("acme", "nope", "t9")
    assert rejected.kind is OutcomeKind.REJECT and rejected.outcome.turn_id == "t9"
    _validate(reference_schema, rejected.outcome)
    clock.advance(60_001)
    assert adm.admit_turn("acme", "s1", "t3").admitted


def test_shed_is_deterministic_and_fair(reference_schema: dict[str, Any]) -> None:
    def run() -> list[str]:
        shed = SchedulingShed(OutcomeScope.EDGE_ENQUEUE, 8, session_id="s", clock=VirtualClock())
        out = []
        for i in range(12):  # a noisy key floods; a quiet key arrives later
            key = "noisy" if i < 10 else "quiet"
            d = shed.offer(key)
            out.append(f"{key}:{'shed' if d else 'ok'}")
            if d is not None:
                _validate(reference_schema, d)
                assert d.phase.value == "scheduling_point" and d.scope is OutcomeScope.EDGE_ENQUEUE
        return out

    first = run()
    assert first == run()
    assert first.count("noisy:ok") == 4  # pressure at half capacity stops the hog
    assert first[-2:] == ["quiet:ok", "quiet:ok"]  # the quiet key still gets through
    with pytest.raises(AdmissionError, match="scheduling point"):
        SchedulingShed(OutcomeScope.SESSION, 4, session_id="s", clock=VirtualClock())
