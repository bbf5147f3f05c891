"""Turn arbiter: every truth-table row T1..T12 and every same-point precedence tie.

Each case drives a fresh arbiter to the row's state, applies the row's input and
asserts the exact ordered emission (signals with emitter and reason, decision
outcomes, turn transitions); every record is validated with ``jsonschema``
against the reference schema (F-138, F-139, F-140, F-141, F-156).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import jsonschema
import msgspec
import pytest

from rspp.contracts import (
    ControlSignal,
    DecisionOutcome,
    OutcomeKind,
    OutcomeScope,
    ResolvedTurnPlan,
    TurnState,
    TurnTransition,
)
from rspp.kernel._clock import VirtualClock
from rspp.kernel._identity import Correlation, RecordStamp
from rspp.kernel._timebase import Timebase
from rspp.turns._arbiter import (
    ArbiterPolicy,
    AuthorityVerdict,
    Continuation,
    LatePolicy,
    OverlapPolicy,
    Step,
    TerminalCause,
    TurnArbiter,
)

pytestmark = pytest.mark.unit

I, O, A, T, C = (  # noqa: E741 - the five states of the truth table
    TurnState.IDLE,
    TurnState.OPENING,
    TurnState.ACTIVE,
    TurnState.TERMINAL,
    TurnState.CLOSED,
)
PLAN_HASH = "a" * 64
_KIND: dict[type, str] = {
    ControlSignal: "control_signal",
    DecisionOutcome: "decision_outcome",
    TurnTransition: "turn_transition",
    ResolvedTurnPlan: "resolved_turn_plan",
}


def schema_validate(schema: dict[str, Any], record: object) -> None:
    """Validate one contract record with jsonschema against the reference schema."""
    kind = _KIND[type(record)]
    wrapper = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{kind}"}
    jsonschema.Draft202012Validator(wrapper).validate(
        msgspec.json.decode(msgspec.json.encode(record))
    )


def make_arbiter(policy: ArbiterPolicy | None = None, epoch: int = 3) -> TurnArbiter:
    clock = VirtualClock()
    stamp = RecordStamp(Correlation("tenant-a", "sess-1", "pv-1"), Timebase(clock))
    return TurnArbiter(stamp, authority_epoch=epoch, policy=policy)


def to_opening(arb: TurnArbiter) -> None:
    arb.propose()


def to_checked(arb: TurnArbiter) -> None:
    """Opening with admission and the snapshot check (T2) passed: authority comes next."""
    arb.propose()
    arb.admission(OutcomeKind.ADMIT, "capacity_ok")
    arb.snapshots(None)


def to_admitted(arb: TurnArbiter) -> None:
    arb.propose()
    arb.admission(OutcomeKind.ADMIT, "capacity_ok")
    arb.snapshots(None)
    arb.authority(AuthorityVerdict.VALID)


def to_active(arb: TurnArbiter) -> None:
    to_admitted(arb)
    arb.plan_materialised(PLAN_HASH)


def to_closed(arb: TurnArbiter) -> None:
    to_active(arb)
    arb.generation_complete()


def summary(step: Step) -> list[tuple[str, ...]]:
    """The step as comparable tuples: ('sig', name, emitter, reason), ('out', ...), ('tr', ...)."""
    out: list[tuple[str, ...]] = []
    for r in step.records:
        if isinstance(r, ControlSignal):
            out.append(("sig", r.signal.value, r.emitted_by.value, r.reason or ""))
        elif isinstance(r, DecisionOutcome):
            out.append(("out", r.outcome_kind.value, r.phase.value, r.scope.value))
        else:
            out.append(("tr", r.from_state.value, r.trigger.value, r.to_state.value))
    return out


def tr(a: TurnState, trig: str, b: TurnState) -> tuple[str, ...]:
    return ("tr", a.value, trig, b.value)


COMMIT_CLOSE = [
    ("sig", "commit", "RK-03", ""),
    tr(A, "commit", T),
    ("sig", "close", "RK-03", ""),
    tr(T, "close", C),
]


def abort_close(reason: str) -> list[tuple[str, ...]]:
    return [
        ("sig", "abort", "RK-03", reason),
        tr(A, "abort", T),
        ("sig", "close", "RK-03", ""),
        tr(T, "close", C),
    ]


DRAIN_ACTIVE = [
    ("sig", "deauthorized_drain", "RK-24", "lease_revoked"),
    ("out", "deauthorized_drain", "active_turn", "turn"),
]

# (case id, setup, input, expected emission, expected next state)
Case = tuple[
    str,
    Callable[[TurnArbiter], None],
    Callable[[TurnArbiter], Step],
    list[tuple[str, ...]],
    TurnState,
]
CASES: list[Case] = [
    ("T1", lambda a: None, lambda a: a.propose(), [tr(I, "turn_open_proposed", O)], O),
    (
        "T2-reject",
        to_opening,
        lambda a: a.admission(OutcomeKind.REJECT, "snapshot_stale"),
        [
            ("sig", "reject", "RK-25", "snapshot_stale"),
            ("out", "reject", "pre_turn", "turn"),
            tr(O, "reject", I),
        ],
        I,
    ),
    (
        "T2-defer",
        to_opening,
        lambda a: a.admission(OutcomeKind.DEFER, "snapshot_missing"),
        [
            ("sig", "defer", "RK-25", "snapshot_missing"),
            ("out", "defer", "pre_turn", "turn"),
            tr(O, "defer", I),
        ],
        I,
    ),
    (
        "T3",
        to_checked,
        lambda a: a.authority(AuthorityVerdict.STALE),
        [
            ("sig", "stale_epoch_reject", "RK-24", "stale_epoch"),
            ("out", "stale_epoch_reject", "pre_turn", "turn"),
            tr(O, "stale_epoch_reject", I),
        ],
        I,
    ),
    (
        "T4",
        to_checked,
        lambda a: a.authority(AuthorityVerdict.DEAUTHORIZED),
        [
            ("sig", "deauthorized_drain", "RK-24", "deauthorized"),
            ("out", "deauthorized_drain", "pre_turn", "turn"),
            tr(O, "deauthorized_drain", I),
        ],
        I,
    ),
    (
        "T2-snapshot-stale",
        lambda a: (a.propose(), a.admission(OutcomeKind.ADMIT, "ok")),
        lambda a: a.snapshots(OutcomeKind.DEFER, "snapshot_stale:routing_view"),
        [
            ("sig", "defer", "RK-25", "snapshot_stale:routing_view"),
            ("out", "defer", "pre_turn", "turn"),
            tr(O, "defer", I),
        ],
        I,
    ),
    (
        "T4-revoked-while-opening",
        to_opening,
        lambda a: a.authority_revoked(4),
        [
            ("sig", "deauthorized_drain", "RK-24", "lease_revoked"),
            ("out", "deauthorized_drain", "pre_turn", "turn"),
            tr(O, "deauthorized_drain", I),
        ],
        I,
    ),
    (
        "T5",
        to_admitted,
        lambda a: a.plan_materialised(PLAN_HASH),
        [("sig", "turn_open", "RK-03", ""), tr(O, "turn_open", A)],
        A,
    ),
    (
        "T5a-reject",
        to_admitted,
        lambda a: a.plan_failed(OutcomeKind.REJECT, "abi_incompatible"),
        [
            ("sig", "reject", "RK-25", "abi_incompatible"),
            ("out", "reject", "pre_turn", "turn"),
            tr(O, "reject", I),
        ],
        I,
    ),
    (
        "T5a-defer",
        to_admitted,
        lambda a: a.plan_failed(OutcomeKind.DEFER, "snapshot_stale"),
        [
            ("sig", "defer", "RK-25", "snapshot_stale"),
            ("out", "defer", "pre_turn", "turn"),
            tr(O, "defer", I),
        ],
        I,
    ),
    ("T6", to_active, lambda a: a.generation_complete(), COMMIT_CLOSE, C),
    ("T7", to_active, lambda a: a.cancel_accepted("barge_in"), abort_close("cancelled"), C),
    (
        "T8",
        to_active,
        lambda a: a.authority_revoked(4),
        DRAIN_ACTIVE + abort_close("authority_loss"),
        C,
    ),
    (
        "T9",
        to_active,
        lambda a: a.evidence_append_failed(),
        abort_close("recording_evidence_unavailable"),
        C,
    ),
    (
        "T10-budget",
        to_active,
        lambda a: a.failure(TerminalCause.BUDGET_TERMINATE, "budget_exhausted"),
        abort_close("budget_exhausted"),
        C,
    ),
    (
        "T10-provider",
        to_active,
        lambda a: a.failure(TerminalCause.PROVIDER_ERROR, "provider_error"),
        abort_close("provider_error"),
        C,
    ),
    (
        "T10-degrade-is-legal",
        to_active,
        lambda a: a.failure(TerminalCause.PROVIDER_ERROR, "tts_failed", Continuation.DEGRADE),
        [("sig", "degrade", "RK-17", "tts_failed")],
        A,
    ),
    (
        "T10-fallback-is-legal",
        to_active,
        lambda a: a.failure(TerminalCause.BUDGET_TERMINATE, "stt_slow", Continuation.FALLBACK),
        [("sig", "fallback", "RK-17", "stt_slow")],
        A,
    ),
    (
        "T10-continue-is-legal",
        to_active,
        lambda a: a.failure(TerminalCause.RUNTIME_ERROR, "node_hiccup", Continuation.CONTINUE),
        [],
        A,
    ),
    ("T11-diagnostics", to_closed, lambda a: a.late_event("sess-1:turn:1", 3), [], C),
    (
        "T12-active",
        to_active,
        lambda a: a.event(2),
        [
            ("sig", "stale_epoch_reject", "RK-24", "stale_epoch:2<3"),
            ("out", "stale_epoch_reject", "scheduling_point", "edge_enqueue"),
        ],
        A,
    ),
    (
        "T12-idle",
        lambda a: None,
        lambda a: a.event(1),
        [
            ("sig", "stale_epoch_reject", "RK-24", "stale_epoch:1<3"),
            ("out", "stale_epoch_reject", "scheduling_point", "edge_enqueue"),
        ],
        I,
    ),
    (
        "T12-closed-output",
        to_closed,
        lambda a: a.output("sess-1:turn:1", 2),
        [
            ("sig", "stale_epoch_reject", "RK-24", "stale_epoch:2<3"),
            ("out", "stale_epoch_reject", "scheduling_point", "edge_dequeue"),
        ],
        C,
    ),
]


@pytest.mark.parametrize(
    ("case", "setup", "action", "expected", "next_state"), CASES, ids=[c[0] for c in CASES]
)
def test_truth_table_row(
    case: str,
    setup: Callable[[TurnArbiter], None],
    action: Callable[[TurnArbiter], Step],
    expected: list[tuple[str, ...]],
    next_state: TurnState,
    reference_schema: dict[str, Any],
) -> None:
    arb = make_arbiter()
    setup(arb)
    step = action(arb)
    assert summary(step) == expected
    assert arb.state is next_state
    for record in step.records:
        schema_validate(reference_schema, record)
    if case.split("-")[0] in ("T1", "T2", "T3", "T4", "T5a"):  # pre-turn: never abort/close
        assert not {"abort", "close", "commit"} & {s.value for s in step.signals}


def test_turn_scoped_signals_carry_turn_and_epoch_at_open() -> None:
    arb = make_arbiter(epoch=7)
    to_active(arb)
    step = arb.authority_revoked(8)
    sigs = [r for r in step.records if isinstance(r, ControlSignal)]
    assert {s.turn_id for s in sigs} == {"sess-1:turn:1"}
    assert [s.authority_epoch for s in sigs] == [7, 7, 7]
    assert arb.authority_epoch == 8


PRECEDENCE = [
    TerminalCause.AUTHORITY_LOSS,
    TerminalCause.CANCEL,
    TerminalCause.BUDGET_TERMINATE,
    TerminalCause.PROVIDER_ERROR,
    TerminalCause.RUNTIME_ERROR,
    TerminalCause.DISCONNECT,
    TerminalCause.CLEANUP_TIMEOUT,
]


def _expected_for(cause: TerminalCause) -> list[tuple[str, ...]]:
    if cause is TerminalCause.AUTHORITY_LOSS:
        return [
            ("sig", "deauthorized_drain", "RK-24", "authority_loss"),
            ("out", "deauthorized_drain", "active_turn", "turn"),
            *abort_close("authority_loss"),
        ]
    if cause is TerminalCause.CANCEL:
        return abort_close("cancelled")
    return abort_close(cause.value)


@pytest.mark.parametrize(
    ("first", "second"), list(itertools.permutations(PRECEDENCE, 2)), ids=lambda c: c.value
)
def test_same_point_precedence_pairs(
    first: TerminalCause, second: TerminalCause, reference_schema: dict[str, Any]
) -> None:
    arb = make_arbiter()
    to_active(arb)
    step = arb.same_point([(first, first.value), (second, second.value)])
    # Every cause has its own rank: the winner never depends on the order given.
    assert first.rank != second.rank
    winner = min((first, second), key=lambda c: c.rank)
    assert summary(step) == _expected_for(winner)
    swapped = make_arbiter()
    to_active(swapped)
    assert summary(swapped.same_point([(second, second.value), (first, first.value)])) == summary(
        step
    )
    assert [d.code for d in step.diagnostics] == ["precedence_suppressed"]
    assert arb.state is C
    for record in step.records:
        schema_validate(reference_schema, record)


def test_cancel_then_revoke_at_same_point_is_t8_not_t7() -> None:
    arb = make_arbiter()
    to_active(arb)
    step = arb.same_point(
        [(TerminalCause.CANCEL, "barge_in"), (TerminalCause.AUTHORITY_LOSS, "lease_revoked")]
    )
    assert summary(step) == DRAIN_ACTIVE + abort_close("authority_loss")


def test_illegal_inputs_give_diagnostics_and_change_nothing() -> None:
    arb = make_arbiter()
    # forced terminal on a pre-turn (never opened) request: no abort/close (F-141)
    for action in (
        arb.generation_complete,
        arb.evidence_append_failed,
        lambda: arb.cancel_accepted("user_cancel"),
    ):
        step = action()
        assert step.records == ()
        assert step.diagnostics[0].code == "illegal_input"
    arb.propose()
    step = arb.plan_materialised(PLAN_HASH)  # before admission + authority
    assert step.records == () and step.diagnostics[0].code == "turn_open_precondition"
    assert arb.state is O
    arb.admission(OutcomeKind.DEFER, "snapshot_missing")
    assert arb.cancel_accepted().diagnostics[0].code == "illegal_input"
    to_closed(arb)
    dup = arb.generation_complete()
    assert dup.records == () and dup.diagnostics[0].code == "duplicate_terminal"
    dup2 = arb.cancel_accepted()
    assert dup2.records == () and dup2.diagnostics[0].code == "duplicate_terminal"


def test_late_event_policies() -> None:
    dropped = make_arbiter(ArbiterPolicy(late_events=LatePolicy.DROP))
    to_closed(dropped)
    assert dropped.late_event("sess-1:turn:1", 3) == Step()
    assert dropped.dropped_late_events == 1 and dropped.state is C

    remap = make_arbiter(ArbiterPolicy(late_events=LatePolicy.REMAP))
    to_closed(remap)
    step = remap.late_event("sess-1:turn:1", 3)
    assert step.transitions == ((I, "turn_open_proposed", O),)
    assert remap.turn_id == "sess-1:turn:2"  # a new turn; the closed one never reopens
    assert remap.is_closed("sess-1:turn:1")

    diag = make_arbiter()
    to_closed(diag)
    step = diag.late_event("sess-1:turn:1", 3)
    assert step.records == () and step.diagnostics[0].code == "late_event"
    # a late event with a stale epoch is T12, not T11
    assert diag.late_event("sess-1:turn:1", 1).signals == ("stale_epoch_reject",)


def test_overlap_policies() -> None:
    pre = make_arbiter(ArbiterPolicy(overlap=OverlapPolicy.PREEMPT))
    to_active(pre)
    step = pre.propose(reason="barge_in")
    assert summary(step) == [*abort_close("cancelled"), tr(I, "turn_open_proposed", O)]
    assert pre.turn_id == "sess-1:turn:2"

    rej = make_arbiter(ArbiterPolicy(overlap=OverlapPolicy.REJECT))
    to_active(rej)
    assert rej.propose().diagnostics[0].code == "overlap_rejected"
    assert rej.state is A

    que = make_arbiter(ArbiterPolicy(overlap=OverlapPolicy.QUEUE))
    to_active(que)
    assert que.propose(reason="second").diagnostics[0].code == "overlap_queued"
    step = que.generation_complete()
    assert summary(step) == [*COMMIT_CLOSE, tr(I, "turn_open_proposed", O)]
    assert que.state is O and que.turn_id == "sess-1:turn:2"


def test_authority_before_the_snapshot_check_is_out_of_order() -> None:
    arb = make_arbiter()
    arb.propose()
    arb.admission(OutcomeKind.ADMIT, "ok")
    step = arb.authority(AuthorityVerdict.STALE)
    assert step.records == () and arb.state is O
    assert [d.code for d in step.diagnostics] == ["pre_turn_order"]
    assert arb.snapshots(OutcomeKind.REJECT, "abi_incompatible:x").transitions == (
        (O, "reject", I),)


def test_stale_event_during_opening_is_t3() -> None:
    arb = make_arbiter()
    to_opening(arb)
    step = arb.event(1)
    assert not step.accepted
    assert step.transitions == ((O, "stale_epoch_reject", I),)


def test_outputs_only_pass_for_active_turn_at_current_epoch() -> None:
    arb = make_arbiter()
    to_active(arb)
    assert arb.output("sess-1:turn:1", 3).accepted
    assert not arb.output("sess-1:turn:1", 2).accepted
    arb.cancel_accepted("barge_in")
    after = arb.output("sess-1:turn:1", 3)
    assert not after.accepted and after.diagnostics[0].code == "output_after_terminal"
    assert arb.accepted_outputs == 1


def test_end_of_utterance_bypasses_vad() -> None:
    arb = make_arbiter()
    step = arb.end_of_utterance()
    assert step.vad_bypass is not None and step.vad_bypass.turn_id == "sess-1:turn:1"
    assert step.transitions == ((I, "turn_open_proposed", O),)


def test_identical_inputs_give_identical_records() -> None:
    def run() -> list[bytes]:
        arb = make_arbiter()
        steps = [
            arb.propose(),
            arb.admission(OutcomeKind.ADMIT, "ok"),
            arb.snapshots(None),
            arb.authority(AuthorityVerdict.VALID),
            arb.plan_materialised(PLAN_HASH),
            arb.propose(reason="barge_in"),
            arb.late_event("sess-1:turn:1", 3),
            arb.event(1, OutcomeScope.NODE_DISPATCH),
        ]
        return [msgspec.json.encode(r) for s in steps for r in s.records]

    assert run() == run()
