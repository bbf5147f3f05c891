"""Budgets (F-045..F-048, F-137), state scopes (F-155), session lifecycle (F-138),
timebase (NF-018) and correlation ids (NF-008)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from rspp.contracts import (
    AdaptiveAction,
    ControlSignal,
    Emitter,
    OutcomeKind,
    SignalName,
    TurnBudgets,
)
from rspp.kernel._clock import VirtualClock
from rspp.kernel._handles import BudgetHandle, StateHandle
from rspp.kernel._identity import Correlation, IdFactory, RecordStamp, Sequencer
from rspp.kernel._timebase import SkewEvent, Timebase, TimebaseError
from rspp.turns._arbiter import AuthorityVerdict, TerminalCause, TurnArbiter
from rspp.turns._budgets import BudgetError, BudgetKind, BudgetOutcome, BudgetTracker
from rspp.turns._session_lifecycle import SessionEvent, SessionLifecycle, SessionState
from rspp.turns._state import (
    InMemoryDurableStore,
    SqliteDurableStore,
    StaleStateError,
    StateManager,
    StateScope,
    StateScopeError,
)

pytestmark = pytest.mark.unit


def _validate(schema: dict[str, Any], rec: ControlSignal) -> None:
    wrapper = {
        "$schema": schema["$schema"],
        "$defs": schema["$defs"],
        "$ref": "#/$defs/control_signal",
    }
    jsonschema.Draft202012Validator(wrapper).validate(msgspec.json.decode(msgspec.json.encode(rec)))


def _stamp(clock: VirtualClock) -> RecordStamp:
    return RecordStamp(Correlation("acme", "s1", "pv-1"), Timebase(clock))


BUDGETS = TurnBudgets(
    turn_budget_ms=1000,
    node_budget_ms_default=200,
    path_budget_ms_default=500,
    edge_budget_ms_default=50,
)


def test_budget_warning_exhaustion_and_plan_resolved_outcomes(
    reference_schema: dict[str, Any],
) -> None:
    clock = VirtualClock()
    tracker = BudgetTracker(
        "s1:turn:1",
        BUDGETS,
        clock,
        _stamp(clock),
        authority_epoch=2,
        allowed_actions=(AdaptiveAction.FALLBACK, AdaptiveAction.DEGRADE),
    )
    stt = tracker.start(BudgetKind.NODE, "stt", has_fallback=True)
    llm = tracker.start(BudgetKind.NODE, "llm", 300)
    tracker.start(BudgetKind.EDGE, "llm->tts", advisory=True)
    handle: BudgetHandle = stt  # structural: mypy checks Budget implements BudgetHandle
    assert handle.remaining_ms() == 200
    assert tracker.next_deadline_ns() == 40_000_000  # edge warning at 80 % of 50 ms
    clock.advance(160)
    warnings, exhausted = tracker.poll()
    assert [w.reason for w in warnings] == ["edge:llm->tts:160/50ms", "node:stt:160/200ms"]
    assert [(e.budget.budget_id, e.outcome) for e in exhausted] == [
        ("llm->tts", BudgetOutcome.CONTINUE)
    ]
    clock.advance(40)
    _, exhausted = tracker.poll()
    assert [(e.budget.budget_id, e.outcome) for e in exhausted] == [("stt", BudgetOutcome.FALLBACK)]
    assert [r.signal.value for r in exhausted[0].records] == ["budget_exhausted", "fallback"]
    assert stt.exhausted and stt.remaining_ms() == 0 and llm.remaining_ms() == 100
    clock.advance(100)
    _, exhausted = tracker.poll()
    assert [(e.budget.budget_id, e.outcome) for e in exhausted] == [("llm", BudgetOutcome.DEGRADE)]
    clock.advance(700)
    _, exhausted = tracker.poll()
    assert [(e.budget.kind, e.outcome) for e in exhausted] == [
        (BudgetKind.TURN, BudgetOutcome.TERMINATE)
    ]
    assert tracker.poll() == ([], [])  # each signal once
    for rec in [*warnings, *(r for e in exhausted for r in e.records)]:
        _validate(reference_schema, rec)
        assert rec.emitted_by.value == "RK-17" and rec.turn_id == "s1:turn:1"
    with pytest.raises(BudgetError, match="must be > 0"):
        tracker.start(BudgetKind.NODE, "bad", -5)
    with pytest.raises(BudgetError, match="no path budget"):
        tracker.get(BudgetKind.PATH, "missing")


def test_turn_budget_terminate_feeds_arbiter_t10() -> None:
    clock = VirtualClock()
    stamp = _stamp(clock)
    arb = TurnArbiter(stamp, authority_epoch=1)
    arb.propose()
    arb.admission(OutcomeKind.ADMIT, "ok")
    arb.snapshots(None)
    arb.authority(AuthorityVerdict.VALID)
    arb.plan_materialised("f" * 64)
    tracker = BudgetTracker(arb.turn_id or "", BUDGETS, clock, stamp, authority_epoch=1)
    clock.advance(1000)
    _, exhausted = tracker.poll()
    assert exhausted[-1].outcome is BudgetOutcome.TERMINATE
    step = arb.failure(TerminalCause.BUDGET_TERMINATE, "budget_exhausted:turn")
    assert step.signals == ("abort", "close")


async def test_state_scopes_and_durable_reattach(tmp_path: Path) -> None:
    mgr = StateManager("s1", InMemoryDurableStore())
    with pytest.raises(StateScopeError, match="session-scoped"):
        mgr.handle("memory", "session", StateScope.TURN_EPHEMERAL)
    turn = mgr.handle("stt", "turn", StateScope.TURN_EPHEMERAL)
    state_handle: StateHandle = turn
    assert state_handle.get("missing", 7) == 7
    turn.set("partial", "hel")
    other = mgr.handle("llm", "turn", StateScope.TURN_EPHEMERAL)
    assert other.get("partial") is None  # namespaced per node
    mgr.end_turn()
    assert turn.get("partial") is None  # no leak into the next turn

    store = SqliteDurableStore(str(tmp_path / "state.db"))
    owner = StateManager("s1", store)
    await owner.attach()
    durable = owner.handle("memory", "session", StateScope.SESSION_DURABLE)
    hot = owner.handle("memory", "session", StateScope.SESSION_HOT)
    durable.set("name", "Ada")
    hot.set("cache", [1, 2])
    assert await owner.flush() == 1
    new_owner = StateManager("s1", store)  # failover: reattach durable state
    await new_owner.attach()
    assert new_owner.handle("memory", "session", StateScope.SESSION_DURABLE).get("name") == "Ada"
    new_owner.handle("memory", "session", StateScope.SESSION_DURABLE).set("name", "Grace")
    assert await new_owner.flush() == 2
    durable.set("name", "stale-writer")
    with pytest.raises(StaleStateError, match="reload before writing"):
        await owner.flush()  # the old owner cannot overwrite
    store.close()


def test_session_lifecycle_legal_and_illegal(reference_schema: dict[str, Any]) -> None:
    life = SessionLifecycle(_stamp(VirtualClock()), authority_epoch=1)
    for ev in (
        SessionEvent.CONNECTED,
        SessionEvent.DISCONNECTED,
        SessionEvent.STALL,
        SessionEvent.RECONNECTED,
        SessionEvent.DRAIN,
        SessionEvent.END,
    ):
        life.apply(ev)
    assert life.state is SessionState.ENDED
    assert [s.signal.value for s in life.signals] == [
        "connected",
        "disconnected",
        "stall",
        "connected",
        "ended",
    ]
    for sig in life.signals:
        _validate(reference_schema, sig)
    history = list(life.history)
    assert life.apply(SessionEvent.CONNECTED) is None  # ENDED -> ACTIVE
    assert life.apply(SessionEvent.END) is None  # duplicate end
    assert [r.code for r in life.rejections] == ["illegal_transition", "duplicate_end"]
    assert life.state is SessionState.ENDED and life.history == history  # no mutation
    assert "allowed: []" in life.rejections[0].detail


def test_timebase_monotonic_wall_mapping() -> None:
    clock = VirtualClock(start_wall_ms=10_000)
    tb = Timebase(clock, max_skew_ms=50)
    clock.advance(100)
    assert tb.runtime_ms() == 100 and tb.wall_ms() == 10_100
    clock._start_wall_ms -= 5_000  # the OS wall clock steps back 5 s
    w = tb.wall_ms()
    assert w == 10_100 and tb.skews[-1].action == "absorbed_backward"
    clock._start_wall_ms += 10_000  # and then jumps forward 5 s past the projection
    clock.advance(10)
    assert tb.wall_ms() == 15_110 and tb.skews[-1].action == "corrected_forward"
    with pytest.raises(TimebaseError, match="max_skew_ms"):
        Timebase(clock, max_skew_ms=-1)


def test_timebase_reports_each_correction_once() -> None:
    """NF-018: a step beyond ``max_skew_ms`` is reported once (``on_skew``), however many
    reads follow at that offset; a further step back is a new report, a step undone is
    none, and wall stamps never go back."""
    clock = VirtualClock(start_wall_ms=10_000)
    told: list[SkewEvent] = []
    tb = Timebase(clock, max_skew_ms=250, on_skew=told.append)
    clock.advance(100)
    assert tb.wall_ms() == 10_100 and told == []
    clock._start_wall_ms += 200  # within the bound: nothing to correct
    clock.advance(10)
    assert tb.wall_ms() == 10_110 and told == []
    clock._start_wall_ms -= 3_600_200  # an hour back (NTP step)
    walls = []
    for _ in range(5):
        clock.advance(10)
        walls.append(tb.wall_ms())
    assert walls == [10_120, 10_130, 10_140, 10_150, 10_160]  # projected, never back
    assert [(e.action, e.observed_skew_ms) for e in told] == [("absorbed_backward",
                                                                -3_600_000)]
    clock._start_wall_ms -= 1_000  # a second further back: a new report
    clock.advance(10)
    tb.wall_ms()
    clock._start_wall_ms += 3_601_000  # the steps undone: agrees again, nothing to say
    clock.advance(10)
    assert tb.wall_ms() == 10_180 and len(told) == 2
    clock._start_wall_ms += 5_000  # 5 s ahead: corrected forward, once
    clock.advance(10)
    assert tb.wall_ms() == 15_190 and tb.wall_ms() == 15_190
    assert [e.action for e in told] == ["absorbed_backward"] * 2 + ["corrected_forward"]
    assert told[-1].describe() == (
        "corrected_forward: wall clock ahead of the session's projection by 5000 ms: wall "
        "stamps corrected forward (max_skew_ms 250)")
    assert tb.skew_count == 3 and list(tb.skews) == told


def test_correlation_ids_everywhere() -> None:
    assert Correlation("acme", "s1", "pv-1", "s1:turn:1").labels() == {
        "tenant_id": "acme",
        "session_id": "s1",
        "pipeline_version": "pv-1",
        "turn_id": "s1:turn:1",
    }
    ids = IdFactory("s1")
    assert [ids.turn_id(), ids.turn_id(), ids.provider_invocation_id("tts")] == [
        "s1:turn:1",
        "s1:turn:2",
        "s1:pi.tts:1",
    ]
    seq = Sequencer(5)
    assert (seq(), seq(), seq.peek) == (5, 6, 7)
    sig = _stamp(VirtualClock()).signal(
        SignalName.TURN_OPEN, Emitter.RK_03, authority_epoch=1, turn_id="s1:turn:1"
    )
    assert (sig.session_id, sig.turn_id, sig.pipeline_version) == ("s1", "s1:turn:1", "pv-1")
