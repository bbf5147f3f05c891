"""Property: random interleavings keep the lifecycle invariants (F-139, F-140, NF-027).

Proposals, admissions, authority checks, cancels, revocations, provider
failures, evidence failures, late events and stale-epoch outputs are
interleaved at random. For every run: each accepted turn has exactly one
terminal (commit or abort) followed by exactly one close and nothing after;
never-opened turns never get abort/close; accepted stale-epoch outputs are 0;
every record validates against the reference schema; replaying the same input
sequence gives byte-identical records.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspp.contracts import ControlSignal, DecisionOutcome, OutcomeKind, TurnTransition
from rspp.kernel._clock import VirtualClock
from rspp.kernel._identity import Correlation, RecordStamp
from rspp.kernel._timebase import Timebase
from rspp.turns._arbiter import (
    ArbiterPolicy,
    AuthorityVerdict,
    Continuation,
    LatePolicy,
    LifecycleRecord,
    OverlapPolicy,
    TerminalCause,
    TurnArbiter,
)

pytestmark = pytest.mark.unit

OPS = st.one_of(
    st.tuples(st.just("open")),
    st.tuples(st.just("propose")),
    st.tuples(st.just("admission"), st.sampled_from(list(OutcomeKind)[:3])),
    st.tuples(st.just("authority"), st.sampled_from(list(AuthorityVerdict))),
    st.tuples(st.just("plan"), st.booleans()),
    st.tuples(st.just("complete")),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("revoke")),
    st.tuples(
        st.just("failure"),
        st.sampled_from(list(TerminalCause)),
        st.sampled_from([None, *Continuation]),
    ),
    st.tuples(st.just("evidence_fail")),
    st.tuples(
        st.just("same_point"),
        st.lists(st.sampled_from(list(TerminalCause)), min_size=2, max_size=4),
    ),
    st.tuples(st.just("late"), st.integers(1, 6), st.booleans()),
    st.tuples(st.just("output"), st.integers(-2, 0)),
    st.tuples(st.just("eou")),
)

_VALIDATORS: dict[str, jsonschema.Draft202012Validator] = {}


def _validator(schema: dict[str, Any], kind: str) -> jsonschema.Draft202012Validator:
    if kind not in _VALIDATORS:
        wrapper = {
            "$schema": schema["$schema"],
            "$defs": schema["$defs"],
            "$ref": f"#/$defs/{kind}",
        }
        _VALIDATORS[kind] = jsonschema.Draft202012Validator(wrapper)
    return _VALIDATORS[kind]


def run(
    ops: list[tuple[Any, ...]], policy: ArbiterPolicy
) -> tuple[TurnArbiter, list[LifecycleRecord], int]:
    stamp = RecordStamp(Correlation("t", "s", "pv"), Timebase(VirtualClock()))
    arb = TurnArbiter(stamp, authority_epoch=1, policy=policy)
    log: list[LifecycleRecord] = []
    stale_accepted = 0
    for op in ops:
        name = op[0]
        if name == "open":  # the happy opening sequence, so many runs have accepted turns
            for step in (
                arb.propose(),
                arb.admission(OutcomeKind.ADMIT, "ok"),
                arb.snapshots(None),
                arb.authority(AuthorityVerdict.VALID),
            ):
                log.extend(step.records)
            step = arb.plan_materialised("c" * 64)
        elif name == "propose":
            step = arb.propose()
        elif name == "admission":
            step = arb.admission(op[1], "r")
        elif name == "authority":
            step = arb.authority(op[1])
        elif name == "plan":
            step = (
                arb.plan_materialised("b" * 64)
                if op[1]
                else arb.plan_failed(OutcomeKind.DEFER, "plan_failed")
            )
        elif name == "complete":
            step = arb.generation_complete()
        elif name == "cancel":
            step = arb.cancel_accepted("barge_in")
        elif name == "revoke":
            step = arb.authority_revoked(arb.authority_epoch + 1)
        elif name == "failure":
            step = arb.failure(op[1], op[1].value, op[2])
        elif name == "evidence_fail":
            step = arb.evidence_append_failed()
        elif name == "same_point":
            step = arb.same_point([(c, c.value) for c in op[1]])
        elif name == "late":
            epoch = arb.authority_epoch - (1 if op[2] else 0)
            step = arb.late_event(f"s:turn:{op[1]}", epoch)
        elif name == "output":
            epoch = max(0, arb.authority_epoch + op[1])
            target = arb.turn_id or "s:turn:1"
            step = arb.output(target, epoch)
            if step.accepted and epoch < arb.authority_epoch:
                stale_accepted += 1
        else:
            step = arb.end_of_utterance()
        log.extend(step.records)
    # finish: whatever is still active is cancelled, whatever is opening is deferred
    log.extend(arb.cancel_accepted("session_end").records)
    log.extend(arb.admission(OutcomeKind.DEFER, "session_end").records)
    return arb, log, stale_accepted


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(OPS, max_size=60),
    overlap=st.sampled_from(list(OverlapPolicy)),
    late=st.sampled_from(list(LatePolicy)),
)
def test_random_interleavings_keep_lifecycle_invariants(
    ops: list[tuple[Any, ...]],
    overlap: OverlapPolicy,
    late: LatePolicy,
    reference_schema: dict[str, Any],
) -> None:
    policy = ArbiterPolicy(overlap=overlap, late_events=late)
    _arb, log, stale_accepted = run(ops, policy)
    assert stale_accepted == 0

    lifecycle: dict[str, list[str]] = defaultdict(list)
    for rec in log:
        if isinstance(rec, ControlSignal):
            _validator(reference_schema, "control_signal").validate(
                msgspec.json.decode(msgspec.json.encode(rec))
            )
            if rec.signal.value in ("turn_open", "commit", "abort", "close"):
                assert rec.turn_id is not None
                lifecycle[rec.turn_id].append(rec.signal.value)
        elif isinstance(rec, DecisionOutcome):
            _validator(reference_schema, "decision_outcome").validate(
                msgspec.json.decode(msgspec.json.encode(rec))
            )
        else:
            assert isinstance(rec, TurnTransition)
            _validator(reference_schema, "turn_transition").validate(
                msgspec.json.decode(msgspec.json.encode(rec))
            )

    if any(op[0] == "open" for op in ops) and not lifecycle:
        # an "open" op in Idle must have produced an accepted turn unless the slot was busy
        assert all(op[0] != "open" for op in ops[:1])
    for turn_id, seq in lifecycle.items():
        assert seq[0] == "turn_open", (turn_id, seq)
        assert len(seq) == 3, (turn_id, seq)  # exactly one terminal, then close, then nothing
        assert seq[1] in ("commit", "abort") and seq[2] == "close", (turn_id, seq)

    # determinism: same inputs -> byte-identical records
    _arb2, log2, _ = run(ops, policy)
    assert [msgspec.json.encode(r) for r in log] == [msgspec.json.encode(r) for r in log2]
