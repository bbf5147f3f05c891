"""Turn driver wiring (no audio engines): T2, T3, T5a, T5/T6, T7 and the egress fence.

A real SessionActor runs a passthrough graph; the driver's public hooks are
called as the VAD/transport would call them; every record is validated against
the reference schema.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator

import rspp.nodes  # noqa: F401  (registers the built-in passthrough the graphs use)
from rspp.contracts import ControlSignal, TurnStartBundle, TurnTransition
from rspp.kernel import Event, GraphBuilder, SessionActor, SystemClock, VirtualClock
from rspp.runner import LOCAL_RUNTIME_ID, local_bundle
from rspp.spec import compile_spec, load_spec
from rspp.turns._admission import LocalAdmission
from rspp.turns._arbiter import ArbiterPolicy, LatePolicy, OverlapPolicy
from rspp.turns._authority import AuthorityGuard
from rspp.turns._cancel import CancelReason
from rspp.turns._plan_resolver import PlanResolver
from rspp.turns._snapshot_source import StaticSnapshotSource
from rspp.turns._turn_driver import TurnDriver

pytestmark = pytest.mark.integration

VOICE = Path(__file__).resolve().parents[3] / "pipelines" / "examples" / "voice_assistant.yaml"
KINDS = {ControlSignal: "control_signal", TurnTransition: "turn_transition"}


class Rig:
    def __init__(self, bundle_edit: Any = None, turns_per_minute: int = 600,
                 enforce_budgets: bool = True, policy: ArbiterPolicy | None = None,
                 clock: SystemClock | VirtualClock | None = None) -> None:
        gd = compile_spec(load_spec(VOICE))
        clock = clock or SystemClock()
        bundle = local_bundle(gd, now_ms=clock.wall_ms())
        if bundle_edit is not None:
            bundle = bundle_edit(bundle)
        self.records: list[msgspec.Struct] = []
        self.outputs: list[tuple[str, Event]] = []
        graph = (GraphBuilder("drv").node("p", "passthrough").edge("input.text", "p.in")
                 .edge("p.out", "output.text").build())
        self.session = SessionActor(graph, session_id="drv", clock=clock,
                                    output_sink=lambda p, e: self.outputs.append((p, e)))
        self.admission = LocalAdmission(clock)
        assert bundle.admission_policy is not None
        self.admission.set_policy(msgspec.structs.replace(
            bundle.admission_policy, turns_per_minute=turns_per_minute))
        self.admission.admit_session("local", "drv")
        self.authority = AuthorityGuard(1)
        resolver = PlanResolver(gd, StaticSnapshotSource(bundle), clock,
                                runtime_id=LOCAL_RUNTIME_ID)
        self.driver = TurnDriver(self.session, resolver, tenant_id="local",
                                 authority=self.authority, admission=self.admission,
                                 record=self.records.append, reply_ports=("text",),
                                 enforce_budgets=enforce_budgets, policy=policy)

    async def propose(self) -> str | None:
        self.driver.end_of_utterance("vad_silence")
        return await self.driver.turn_for_utterance()

    def signals(self) -> list[tuple[str, str | None]]:
        return [(r.signal.value, r.reason) for r in self.records if isinstance(r, ControlSignal)]

    def validate(self, schema: dict[str, Any]) -> None:
        for rec in self.records:
            kind = KINDS.get(type(rec)) or {
                "DecisionOutcome": "decision_outcome",
                "ResolvedTurnPlan": "resolved_turn_plan"}[type(rec).__name__]
            v = Draft202012Validator({**schema, "$ref": f"#/$defs/{kind}"})
            data = msgspec.json.decode(msgspec.json.encode(rec))
            errors = [e.message for e in v.iter_errors(data)]
            assert not errors, (kind, errors)


@pytest.mark.parametrize("late", [LatePolicy.DIAGNOSTICS, LatePolicy.DROP])
async def test_turn_opens_outputs_pass_then_commit_close(
        late: LatePolicy, reference_schema: dict[str, Any]) -> None:
    rig = Rig(policy=ArbiterPolicy(late_events=late))
    async with rig.session:
        tid = await rig.propose()
        assert tid is not None
        rig.session.push(Event("text", "hi", turn_id=tid), "text")
        await rig.session.drain()
        rig.driver.output_complete(tid)
        await rig.session.drain()
        for text in ("late", "later"):  # after close: T11, the decision recorded once
            rig.session.push(Event("text", text, turn_id=tid), "text")
            await rig.session.drain()
    decision = "late_event_dropped" if late is LatePolicy.DROP else "late_event_ignored"
    assert rig.signals() == [("turn_open_proposed", "vad_silence"), ("admit", "within_quota"),
                             ("turn_open", None), ("commit", None), ("close", None),
                             ("reject", decision)]
    late_rec = rig.records[-1]
    assert isinstance(late_rec, ControlSignal) and late_rec.turn_id == tid
    assert [e.payload for _, e in rig.outputs if e.kind == "text"] == ["hi"]
    assert any(d.startswith("late_event:") for d in rig.driver.diagnostics) \
        is (late is LatePolicy.DIAGNOSTICS)
    # both late outputs are refused by the gate; the drop policy counts its decision too
    assert rig.driver.arbiter.dropped_late_events == (3 if late is LatePolicy.DROP else 2)
    row = rig.driver.summary()[0]
    assert row["terminal"] == "commit" and row["first_output_ms"] is not None
    rig.validate(reference_schema)


async def test_admission_defer_is_pre_turn_without_abort_or_close(
    reference_schema: dict[str, Any]
) -> None:
    rig = Rig(turns_per_minute=1)
    async with rig.session:
        first = await rig.propose()
        assert first is not None
        rig.driver.output_complete(first)
        await rig.session.drain()
        assert await rig.propose() is None
        await rig.session.drain()
    names = [s for s, _ in rig.signals()]
    assert names[-2:] == ["turn_open_proposed", "defer"]
    assert names.count("close") == 1 and "abort" not in names
    rig.validate(reference_schema)


async def test_missing_snapshot_defers_without_turn_open(reference_schema: dict[str, Any]) -> None:
    def drop(b: TurnStartBundle) -> TurnStartBundle:
        return msgspec.structs.replace(b, provider_health=None)

    rig = Rig(bundle_edit=drop)
    async with rig.session:
        assert await rig.propose() is None
    assert rig.signals()[-1] == ("defer", "snapshot_missing:provider_health")
    assert "turn_open" not in [s for s, _ in rig.signals()]
    rig.validate(reference_schema)


async def test_stale_epoch_rejects_the_proposal(reference_schema: dict[str, Any]) -> None:
    rig = Rig()
    rig.authority.rotate(5)  # the arbiter still proposes under epoch 1
    async with rig.session:
        assert await rig.propose() is None
    assert [s for s, _ in rig.signals()][-1] == "stale_epoch_reject"
    rig.validate(reference_schema)


async def test_cancel_fences_egress_and_aborts_once(reference_schema: dict[str, Any]) -> None:
    rig = Rig()
    async with rig.session:
        tid = await rig.propose()
        assert tid is not None
        rig.session.push(Event("text", "before", turn_id=tid), "text")
        await rig.session.drain()
        rig.driver.cancel(tid, CancelReason.BARGE_IN)
        rig.session.push(Event("text", "after", turn_id=tid), "text")
        await rig.session.drain()
        rig.driver.output_complete(tid)  # a late completion changes nothing
        await rig.session.drain()
    assert [e.payload for _, e in rig.outputs if e.kind == "text"] == ["before"]
    names = [s for s, _ in rig.signals()]
    assert names[-3:] == ["cancel", "abort", "close"]
    assert names.count("abort") == 1 and "commit" not in names
    assert ("abort", "cancelled") in rig.signals()
    assert rig.driver.summary()[0]["cancel_fence_ms"] is not None
    rig.validate(reference_schema)


async def test_session_end_closes_an_unfinished_turn(reference_schema: dict[str, Any]) -> None:
    """Every accepted turn gets exactly one terminal then close, even if the client leaves."""
    rig = Rig()
    async with rig.session:
        assert await rig.propose() is not None
        rig.driver.end_session()
        await rig.session.drain()
        rig.driver.end_session()  # idempotent: no turn is active any more
        await rig.session.drain()
    assert rig.signals()[-2:] == [("abort", "session_end"), ("close", None)]
    rig.validate(reference_schema)


def tight_budget(b: TurnStartBundle) -> TurnStartBundle:
    assert b.policy_resolution is not None
    return msgspec.structs.replace(b, policy_resolution=msgspec.structs.replace(
        b.policy_resolution, turn_budget_ms=60))


@pytest.mark.parametrize("enforce", [True, False])
async def test_turn_budget_terminates_or_reports(
    enforce: bool, reference_schema: dict[str, Any]
) -> None:
    """RK-17: an exhausted turn budget ends the turn (T10) or, advisory, is only reported."""
    rig = Rig(bundle_edit=tight_budget, enforce_budgets=enforce)
    async with rig.session:
        tid = await rig.propose()
        assert tid is not None
        for _ in range(200):
            await asyncio.sleep(0.01)
            if "budget_exhausted" in [s for s, _ in rig.signals()]:
                break
        await rig.session.drain()
        rig.driver.output_complete(tid)
        await rig.session.drain()
        await rig.driver.aclose()
    names = [s for s, _ in rig.signals()]
    assert names.index("budget_warning") < names.index("budget_exhausted")
    if enforce:
        assert ("abort", "budget_exhausted") in rig.signals() and "commit" not in names
    else:
        assert "abort" not in names and names[-2:] == ["commit", "close"]
    rig.validate(reference_schema)


async def test_queue_keeps_the_newest_overlapping_proposal(
        reference_schema: dict[str, Any]) -> None:
    """F-140 ``queue``: of two proposals while a turn is Active the newest waits (the older
    is ``reject overlap_superseded``, its input told so) and opens when the turn closes."""
    rig = Rig(policy=ArbiterPolicy(overlap=OverlapPolicy.QUEUE))
    async with rig.session:
        first = await rig.propose()
        assert first is not None
        rig.driver.end_of_utterance("vad_silence")
        rig.driver.end_of_utterance("vad_silence")
        await rig.session.drain()
        superseded = await rig.driver.turn_for_input()
        assert superseded == (None, "reject:overlap_superseded")
        assert rig.driver.active_turn == first  # the Active turn was not cancelled
        rig.driver.output_complete(first)
        second = await rig.driver.turn_for_utterance()
        assert second is not None and second != first and rig.driver.active_turn == second
    sigs = [(s, r) for s, r in rig.signals() if s not in ("admit", "turn_open_proposed")]
    assert sigs[:6] == [("turn_open", None), ("defer", "overlap_queued"),
                        ("defer", "overlap_queued"), ("reject", "overlap_superseded"),
                        ("commit", None), ("close", None)]
    assert sigs[6] == ("turn_open", None)
    rig.validate(reference_schema)


@pytest.mark.parametrize("first", ["rspp.budget", "rspp.user_cancel"])
async def test_cancel_owns_the_terminal_when_the_turn_budget_runs_out_at_the_same_point(
        first: str, reference_schema: dict[str, Any]) -> None:
    """Same-point precedence (cancel > budget terminate): the turn budget is exhausted and
    the user cancels at one scheduling point (both commands on the control lane before
    either is served); in either order the cancel owns the terminal: one
    ``abort(cancelled)``, ``close``; the exhausted budget is recorded, not its abort."""
    clock = VirtualClock(auto_advance=False)  # time moves only when the test says so
    rig = Rig(clock=clock)
    async with rig.session:
        tid = await rig.propose()
        assert tid is not None and rig.driver.budgets is not None
        clock.advance(rig.driver.budgets.turn.budget_ms + 1)  # the turn budget ran out
        second = "rspp.user_cancel" if first == "rspp.budget" else "rspp.budget"
        for name in (first, second):
            rig.session.control(name, turn_id=tid, reason="user_cancel")
        await rig.session.drain()
    sigs = rig.signals()
    terminals = [(s, r) for s, r in sigs if s in ("commit", "abort", "close")]
    assert terminals == [("abort", "cancelled"), ("close", None)]
    assert any(s == "cancel" and (r or "").startswith("user_cancel") for s, r in sigs)
    suppressed = [d for d in rig.driver.diagnostics if d.startswith("precedence_suppressed:")]
    if first == "rspp.budget":  # served first: the exhaustion is recorded, then gives way
        assert any(s == "budget_exhausted" for s, _ in sigs)
        assert suppressed == ["precedence_suppressed:budget_exhausted:budget_exhausted"]
    else:  # the turn is closed when the budget's command comes: nothing more happens
        assert suppressed == []
    rig.validate(reference_schema)
