"""The turn driver: Kernel II wired into a SessionActor through its public hooks.

Nodes (VAD / turn detector / STT / TTS) call the driver's hook methods
synchronously; each enqueues a ControlLane command (``rspp.*``) that the
driver's ``on_control`` handler serves before any data, so every lifecycle
decision happens on the session's scheduler in sequence order:

* end of utterance -> ``turn_open_proposed`` (RK-02) -> T1 -> local admission
  (T2) -> authority (T3/T4) -> plan freeze (T5/T5a) -> ``turn_open`` and the
  kernel ``turn_start``; the STT's final transcript is stamped with that turn;
* the transport reports playback complete -> OR-02 evidence -> ``commit``,
  ``close`` (T6; T9 when evidence cannot be appended);
* user speech while the assistant plays (barge-in) or a new utterance while a
  turn is Active (preempt) -> cancel scope cancelled, egress fence applied,
  ``cancel`` (RK-16) -> ``abort(cancelled)``, ``close`` (T7) -> kernel cancel
  (queued data of the turn flushed, hard nodes stopped);
* a dead-lettered node failure of the Active turn -> ``abort(reason)`` (T10);
  a TTS outage with text-only degrade -> ``degrade`` (RK-17), the turn goes on.

The egress gate (:class:`DriverGate`) passes an output only when the turn's
cancel scope admits it (fence), its epoch is current (authority) and the
arbiter says the turn is Active: nothing of a turn leaves after its fence.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from rspp.contracts import (
    CancelScopeKind,
    ControlSignal,
    Emitter,
    Lane,
    MediaTime,
    OutcomeKind,
    OutcomeScope,
    ResolvedTurnPlan,
    SignalName,
    TurnState,
)
from rspp.kernel._deadletter import DeadLetter
from rspp.kernel._egress import ControlCommand, TurnFenceGate
from rspp.kernel._events import Event
from rspp.kernel._identity import Correlation, RecordStamp
from rspp.kernel._session import SessionActor
from rspp.turns._admission import LocalAdmission
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
from rspp.turns._authority import AuthorityGuard, IngressVerdict
from rspp.turns._budget_watch import BudgetWatch
from rspp.turns._budgets import BudgetTracker
from rspp.turns._cancel import DEFAULT_GRACE_MS, CancelError, CancelReason, CancelScopeTree
from rspp.turns._late_events import LateArrival, LateEvents
from rspp.turns._node_scopes import NodeScopes
from rspp.turns._overload import OverloadPosture
from rspp.turns._plan_resolver import PlanResolver
from rspp.turns._session_lifecycle import SessionLifecycle
from rspp.turns._turn_timing import TurnTiming

__all__ = ["DriverGate", "TurnDriver", "TurnTiming"]

RecordSink = Callable[[msgspec.Struct], None]
EvidenceSink = Callable[[Mapping[str, object]], bool]


class DriverGate(TurnFenceGate):
    """Egress gate: kernel fence + cancel-scope fence + authority + arbiter (F-175, T12)."""

    __slots__ = ("driver",)

    def __init__(self, driver: TurnDriver) -> None:
        super().__init__()
        self.driver = driver

    def allow(self, port: str, event: Event) -> bool:
        if not super().allow(port, event):
            if event.lane is not Lane.CONTROL:  # of a closed turn: a late event (T11)
                self.driver.late.refused(port, event)
            return False
        tid = event.turn_id
        if tid is None:
            return True
        if event.lane is Lane.CONTROL:
            return True
        return self.driver.admit_output(port, event)


class TurnDriver:
    """Turn lifecycle of one session (see the module docstring)."""

    def __init__(
        self,
        session: SessionActor,
        resolver: PlanResolver,
        *,
        tenant_id: str,
        authority: AuthorityGuard,
        admission: LocalAdmission,
        record: RecordSink,
        evidence: EvidenceSink | None = None,
        policy: ArbiterPolicy | None = None,
        on_plan: Callable[[ResolvedTurnPlan], None] | None = None,
        reply_ports: tuple[str, ...] = ("audio",),
        invocations: Callable[[str], tuple[Mapping[str, object], ...]] | None = None,
        enforce_budgets: bool = True,
    ) -> None:
        self.session = session
        self.resolver = resolver
        self.tenant_id = tenant_id
        self.authority = authority
        self.admission = admission
        self._record = record
        self._evidence = evidence
        self.on_plan = on_plan
        self.invocations = invocations
        self.enforce_budgets = enforce_budgets
        self.reply_ports = reply_ports
        self.clock = session.clock
        self.timebase = session.timebase
        corr = Correlation(tenant_id, session.session_id, session.pipeline_version)
        self.stamp = RecordStamp(corr, self.timebase, next_seq=session._next_seq)
        #: the Active turn's budgets and their deadline timer (RK-17)
        self.budget_watch = BudgetWatch(session, self.stamp, self.emit,
                                        enforce=enforce_budgets)
        turns = getattr(resolver.graph, "turns", None)  # the spec's policy (F-140)
        if policy is None and turns is not None:
            policy = ArbiterPolicy(OverlapPolicy(turns.overlap), LatePolicy(turns.late_events))
        self.arbiter = TurnArbiter(self.stamp, authority_epoch=authority.epoch, policy=policy)
        self._queued: deque[tuple[int, int]] = deque()
        #: outputs of closed turns (T11): live arrivals, or a replay's recorded ones
        self.late = LateEvents(session.session_id, self._late_event,
                               self.arbiter.is_closed)
        #: terminal causes that gave way to a higher one pending at the same scheduling
        #: point (DESIGN's same-point precedence); the winner's terminal reports them
        self._yielded: dict[str, list[tuple[TerminalCause, str]]] = {}
        budgets = getattr(resolver.graph, "budgets", None)
        grace = getattr(getattr(budgets, "cancel_grace", None), "value", DEFAULT_GRACE_MS)
        self.cancels = CancelScopeTree(session.session_id, session.clock, stamp=self.stamp)
        #: per-turn node scopes: a turn cancel reaches each node's scope (F-034, F-041)
        self.node_scopes = NodeScopes(session, self.cancels, self.emit, default_grace_ms=grace,
                                      epoch=lambda: self.authority.epoch)
        self.gate = DriverGate(self)
        #: the session's states (F-138): CONNECTING, ACTIVE, RECONNECTING, DRAINING, ENDED
        self.session_lifecycle = SessionLifecycle(self.stamp, authority_epoch=authority.epoch)
        #: shed records of overloaded edges and the spec's degrade posture (F-148, F-048)
        self.overload = OverloadPosture(session, self.stamp, self.emit,
                                        epoch=lambda: self.authority.epoch,
                                        policy=getattr(resolver.graph, "overload", None))
        self.timings: dict[str, TurnTiming] = {}
        self.order: list[str] = []
        self.lifecycle: list[msgspec.Struct] = []
        self.speaking: str | None = None
        #: the user speaks an utterance not proposed yet (F-013 correlation)
        self._utterance = False
        #: the transport's cancel fence: ``(turn_id, cause)``; the cause is what the client
        #: is told (``barge_in``, ``user_cancel``, ``timeout``, ``provider_error``,
        #: ``session_end``, ``deauthorized_drain`` on a lease rotation, ``lease_lost``)
        self.on_stop_playback: Callable[[str, str], None] | None = None
        #: told the new lease epoch after a rotation (node services stamp it on signals)
        self.on_epoch: Callable[[int], None] | None = None
        #: one per pending proposal: (turn id, None) once it opened, (None, why) when it was
        #: refused before opening (``defer:turns_per_minute:1``) or never decided
        self._waiters: deque[asyncio.Future[tuple[str | None, str | None]]] = deque()
        self._eou_ns: deque[int] = deque()
        self._degraded: set[str] = set()
        self.diagnostics: list[str] = []
        session.set_egress_gate(self.gate)
        session.on_control(self._on_control)

    # ------------------------------------------------------------ records
    def emit(self, rec: msgspec.Struct) -> None:
        self.lifecycle.append(rec)
        self._record(rec)

    def _apply(self, step: Step) -> Step:
        for rec in step.records:
            self.emit(rec)
            if isinstance(rec, ControlSignal) and rec.signal is SignalName.STALE_EPOCH_REJECT:
                # F-131: the refusal is also an error of the taxonomy (code
                # authority_epoch_mismatch, default action reject), a side note at the
                # signal's sequence (the signal beside it names the epochs)
                self.session.signals.telemetry(
                    kind="error", turn_id=rec.turn_id, reason="authority_epoch_mismatch",
                    at_sequence=rec.runtime_sequence)
        if step.diagnostics:
            self.diagnostics.extend(f"{d.code}:{d.detail}" for d in step.diagnostics)
            for d in step.diagnostics:
                if d.code == "precedence_suppressed":  # who did not own the terminal
                    self.session.signals.telemetry(kind="audit", turn_id=d.turn_id,
                                                   reason=f"precedence_suppressed:{d.detail}")
        return step

    @property
    def budgets(self) -> BudgetTracker | None:
        """The Active turn's budgets (None between turns)."""
        return self.budget_watch.tracker

    @property
    def active_turn(self) -> str | None:
        return self.arbiter.turn_id if self.arbiter.state is TurnState.ACTIVE else None

    @property
    def busy(self) -> bool:
        """A proposal is pending or a turn is Opening/Active."""
        return bool(self._waiters) or self.arbiter.state in (TurnState.OPENING, TurnState.ACTIVE)

    # ------------------------------------------------- hooks called by nodes
    def speech_started(self, sample_index: int | None) -> None:
        # barge-in is preemption: a queue/reject overlap policy lets the reply play on
        if self.speaking is not None and self.arbiter.policy.overlap is OverlapPolicy.PREEMPT:
            self.session.control("rspp.barge_in", turn_id=self.speaking, reason="barge_in")
        self._utterance = True
        self._correlate()

    def _correlate(self) -> None:
        """What records of turn-less events name from now on (F-013, docs/correlation.md):
        the Opening or Active turn; else, while the user speaks an utterance not proposed
        yet, the id its proposal will take; else nothing (session scope)."""
        a, s = self.arbiter, self.session
        tid: str | None = None
        if a.state is TurnState.ACTIVE or a.state is TurnState.OPENING:
            tid = a.turn_id
        elif self._utterance:
            tid = self.stamp.ids.next_turn_id()
        s.record_turn = s.signals.record_turn = tid

    def end_of_utterance(self, reason: str) -> None:
        self._waiters.append(asyncio.get_running_loop().create_future())
        self._eou_ns.append(self.clock.monotonic_ns())
        self.session.control("rspp.propose", reason=reason)

    async def turn_for_utterance(self) -> str | None:
        return (await self.turn_for_input())[0]

    async def turn_for_input(self) -> tuple[str | None, str | None]:
        """The oldest pending proposal's outcome: ``(turn_id, None)`` when its turn opened,
        ``(None, why)`` when it stayed pre-turn (F-141): ``why`` is ``KIND:REASON`` of the
        refusal (``defer:turns_per_minute:1``, ``reject:...``, ``stale_epoch_reject:...``)."""
        if not self._waiters:
            return self.active_turn, None
        fut = self._waiters[0]
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout=10.0)
        except TimeoutError:
            return None, "undecided:no_decision_within_10s"
        finally:
            if self._waiters and self._waiters[0] is fut:
                self._waiters.popleft()

    def degraded(self, turn_id: str | None, reason: str) -> None:
        self.session.control("rspp.degrade", turn_id=turn_id, reason=reason)

    def node_audit(self, node_id: str, turn_id: str | None, reason: str) -> None:
        self.session.signals.telemetry(kind="audit", node_id=node_id, turn_id=turn_id,
                                       reason=reason)

    def turn_failed(self, turn_id: str, reason: str) -> None:
        self.session.control("rspp.failure", turn_id=turn_id, reason=reason)

    def node_failed(self, dl: DeadLetter) -> None:
        tid = dl.event.turn_id
        if tid is not None:
            self.session.control("rspp.failure", turn_id=tid, reason=dl.error.error_code)

    # -------------------------------------------- calls from the transport
    def playback_started(self, turn_id: str) -> None:
        t = self.timings.get(turn_id)
        if t is not None and t.playback_started_ns is None:
            t.playback_started_ns = self.clock.monotonic_ns()
        self.speaking = turn_id

    def generation_complete(self, turn_id: str) -> None:
        """The last output of ``turn_id`` reached the transport: the turn budget stops."""
        b = self.budgets
        if b is not None and b.turn_id == turn_id:
            b.turn.stop()

    def output_complete(self, turn_id: str) -> None:
        """Every output of ``turn_id`` was delivered (played): commit."""
        if self.speaking == turn_id:
            self.speaking = None
        self.session.control("rspp.complete", turn_id=turn_id)

    def playback_committed(self, turn_id: str, samples: int) -> None:
        """A cancel's commit point (F-039): the first ``samples`` of the turn's reply play out.

        Called by the transport while the cancel is being accepted (before the turn's scope
        closes); the fence keeps it as the scope's commit point, the summary reports it.
        """
        try:
            scope = self.cancels.scope(turn_id)
        except CancelError:
            return
        self.cancels.fence.mark_played(scope, samples)
        t = self.timings.get(turn_id)
        if t is not None:
            t.committed_samples = self.cancels.fence.commit_point(scope)

    def admit_output(self, port: str, event: Event) -> bool:
        tid = event.turn_id or ""
        try:
            scope = self.cancels.scope(tid)
        except Exception:
            scope = None
        if scope is not None and not self.cancels.fence.admit(scope):
            self.late.refused(port, event)
            return False
        epoch = self.arbiter.turn_epoch or self.authority.epoch
        if not self.authority.admit_output(epoch):
            if not self.authority.revoked:  # T12: an output produced under an older epoch
                self._apply(self.arbiter.event(epoch, OutcomeScope.EDGE_DEQUEUE, turn_id=tid))
            return False
        step = self.arbiter.output(tid, self.authority.epoch)
        if not step.accepted:
            if self.arbiter.is_closed(tid):
                self.late.refused(port, event)
            else:
                self._apply(step)
            return False
        t = self.timings.get(tid)
        if t is not None and t.first_output_ns is None and port in self.reply_ports:
            t.first_output_ns = self.clock.monotonic_ns()
        return True

    # ------------------------------------------------------- control lane
    async def _on_control(self, cmd: ControlCommand) -> bool | None:
        name = cmd.name
        if not name.startswith("rspp."):
            return None
        try:
            await self._serve(cmd, name)
        finally:
            self._correlate()
        return False

    async def _serve(self, cmd: ControlCommand, name: str) -> None:
        if name == "rspp.propose":
            self._utterance = False  # its proposal (Opening, queued or refused) takes over
            await self._propose(cmd.reason or "vad_end_of_utterance")
        elif name == "rspp.open_queued":
            tid, now = self.arbiter.turn_id, self.clock.monotonic_ns()
            if tid and cmd.turn_id == tid and tid not in self.timings:  # still Opening
                await self._open(tid, *(self._queued.popleft() if self._queued else (now, now)))
        elif name == "rspp.complete":
            self._complete(cmd.turn_id)
        elif name == "rspp.barge_in":
            if cmd.turn_id is not None:
                self._signal(SignalName.BARGE_IN, Emitter.RK_06, cmd.turn_id, "barge_in")
                self.cancel(cmd.turn_id, CancelReason.BARGE_IN)
        elif name == "rspp.user_cancel":  # the client asked to stop the reply (F-035)
            if cmd.turn_id is not None:
                self.cancel(cmd.turn_id, CancelReason.USER_CANCEL)
        elif name == "rspp.failure":
            self._failure(cmd.turn_id, cmd.reason or "node_error")
        elif name == "rspp.budget":
            self._failure(self.budget_watch.poll(self.active_turn), "budget_exhausted")
        elif name == "rspp.authority":
            self._authority_step(cmd.turn_id, cmd.reason or "lease_revoked")
        elif name == "rspp.interrupted":
            if cmd.turn_id is not None:
                self._apply(self.arbiter.interrupted_elsewhere(
                    cmd.turn_id, int(cmd.data.get("epoch", self.authority.epoch)),
                    cmd.reason or "session_moved"))
        elif name == "rspp.degrade":
            tid = cmd.turn_id
            if tid is not None and tid == self.active_turn and tid not in self._degraded:
                self._degraded.add(tid)
                self._apply(self.arbiter.failure(TerminalCause.PROVIDER_ERROR,
                                                 cmd.reason or "tts_unavailable",
                                                 Continuation.DEGRADE))

    # ---------------------------------------------------------- authority
    def authority_changed(self, new_epoch: int | None, reason: str) -> None:
        """The session's lease rotated to ``new_epoch`` or was lost (``None``) (F-156, F-157).

        The guard changes at once, so the egress gate refuses every output of the old epoch
        from this instant, and the turn being spoken is fenced and its queued audio dropped;
        the lifecycle records (T8 for an Active turn, T4 for an Opening one) follow on the
        control lane at the next scheduling point.
        """
        g = self.authority
        was_revoked = g.revoked
        if new_epoch is None:
            g.revoke()
        elif new_epoch > g.epoch or (g.revoked and new_epoch == g.epoch):
            g.rotate(new_epoch)
        else:
            return  # not newer: epochs are fencing tokens and only grow
        self.session.signals.authority_epoch = g.epoch
        self.arbiter.authority_epoch = max(self.arbiter.authority_epoch, g.epoch)
        self.session_lifecycle.authority_epoch = g.epoch
        if self.on_epoch is not None:
            self.on_epoch(g.epoch)
        # the change comes from outside the pipeline (the control plane's lease): recorded
        # so that a replay applies it at this same point, a rotation as the control plane's
        # ``lease_rotated`` (CP-07) at the new epoch, a loss as the session's own
        # ``deauthorized_drain`` (RK-24, session scoped: the session drains)
        if new_epoch is not None:
            self._signal(SignalName.LEASE_ROTATED, Emitter.CP_07, None, reason,
                         session_scoped=True)
        elif not was_revoked:
            self._signal(SignalName.DEAUTHORIZED_DRAIN, Emitter.RK_24, None, reason,
                         session_scoped=True)
        tid = self.arbiter.turn_id if self.arbiter.state in (TurnState.OPENING,
                                                             TurnState.ACTIVE) else None
        if tid is not None:
            self.gate.fence(tid)
            if self.on_stop_playback is not None:
                self.on_stop_playback(tid, "lease_lost" if new_epoch is None
                                      else "deauthorized_drain")
        self.session.control("rspp.authority", turn_id=tid, reason=reason)

    def interrupted_elsewhere(self, turn_id: str, turn_epoch: int, reason: str) -> None:
        """The session resumed here while ``turn_id`` was Active on its previous owner:
        record that turn's end (T8 at its own epoch) on the control lane (F-157)."""
        self.session.control("rspp.interrupted", turn_id=turn_id, reason=reason,
                             epoch=turn_epoch)

    def accept_input(self, key: str, edge_id: str) -> bool:
        """Ingress dedupe (F-158): False for an input whose idempotency ``key`` this session
        already took (before a reconnect or on its previous runtime: the window is in the
        session's checkpoint); the duplicate leaves a ``drop_notice`` naming the first."""
        event_id = self.stamp.ids.next("input")
        verdict = self.authority.check_ingress(self.authority.epoch, event_id=event_id,
                                               idempotency_key=key)
        if verdict is not IngressVerdict.DUPLICATE:
            return True  # (a stale or revoked epoch is the turn's own authority check)
        marker = self.authority.dedupe.markers[-1]
        n = int(event_id.rsplit(":", 1)[1])
        self.session.signals.signal(
            SignalName.DROP_NOTICE, Emitter.RK_13, edge_id=edge_id, target_lane=Lane.DATA,
            reason=f"duplicate_idempotency_key:{key}:first={marker.first_event_id}",
            seq_range=(n, n))
        return False

    def release_input(self, key: str) -> None:
        """The input taken under ``key`` was refused before its turn opened (F-141): the
        key is free again, so the client's retry under it is not a duplicate."""
        self.authority.dedupe.forget(key)

    def check_ingress_epoch(self, epoch: int, event_id: str) -> bool:
        """Ingress authority check (F-156): input carrying ``epoch`` (e.g. a reconnect with a
        token of that lease epoch) is accepted only at the current, unrevoked epoch; a stale
        one is ``stale_epoch_reject`` (T12, no transition)."""
        verdict = self.authority.check_ingress(epoch, event_id=event_id)
        if verdict is IngressVerdict.STALE_EPOCH:
            self._apply(self.arbiter.event(epoch, OutcomeScope.EDGE_ENQUEUE))
        return verdict is IngressVerdict.ACCEPT

    def _authority_step(self, tid: str | None, reason: str) -> None:
        """T8 (Active), T4 (Opening) or only the arbiter's new epoch (Idle)."""
        active = self.active_turn
        if tid is not None and tid == active:
            t = self.timings[tid]
            scope = self.cancels.scope(tid)
            lat = self.cancels.cancel(scope, CancelReason.AUTHORITY_LOSS)
            self.node_scopes.cancel(tid, CancelReason.AUTHORITY_LOSS, lat)
            if self.speaking == tid:
                self.speaking = None
            self._evidence_ok(t, "abort", "authority_loss")
            self._terminal(tid, self.arbiter.same_point(
                [(TerminalCause.AUTHORITY_LOSS, reason), *self._yielded.pop(tid, ())],
                new_epoch=self.authority.epoch))
            self.session.cancel_turn(tid, "authority_loss")
            self.cancels.close(scope)
            return
        self._apply(self.arbiter.authority_revoked(self.authority.epoch, reason))

    def _signal(self, name: SignalName, emitter: Emitter, turn_id: str | None,
                reason: str, *, session_scoped: bool = False) -> None:
        self.emit(self.stamp.signal(name, emitter, authority_epoch=self.authority.epoch,
                                    turn_id=turn_id, reason=reason,
                                    session_scoped=session_scoped))

    def _resolve_waiter(self, turn_id: str | None, refusal: str | None = None) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result((turn_id, refusal))
                return

    def _refuse(self, t: TurnTiming | None, step: Step | None, fallback: str) -> None:
        """The proposal stays pre-turn (T2/T3/T4/T5a): no turn_open, no terminal, no close;
        its input is told why (``KIND:REASON`` of the refusal outcome)."""
        why = fallback
        if step is not None:
            for out in step.outcomes:
                if out.outcome_kind is not OutcomeKind.ADMIT:
                    why = f"{out.outcome_kind.value}:{out.reason}"
        if t is not None:
            t.terminal, t.reason = "refused", why
        self._resolve_waiter(None, why)
        self._open_queued()

    def _late_event(self, a: LateArrival) -> None:
        """T11: an output of a closed turn arrived (once a turn; see rspp.turns._late_events):
        the policy's decision is recorded naming what arrived, so a replay can feed it."""
        step = self._apply(self.arbiter.late_event(a.turn_id, self.authority.epoch))
        if not step.records:
            code = "dropped" if self.arbiter.policy.late_events is LatePolicy.DROP else "ignored"
            rec = self.stamp.signal(SignalName.REJECT, Emitter.RK_25,
                                    authority_epoch=self.authority.epoch, turn_id=a.turn_id,
                                    reason=f"late_event_{code}", node_id=a.node_id,
                                    edge_id=a.edge_id, causal_parent_id=a.event_id,
                                    session_scoped=True)
            if a.sample_index is not None:
                rec = msgspec.structs.replace(rec, media_time=MediaTime(
                    sample_index=a.sample_index))
            self.emit(rec)

    def _open_queued(self) -> None:
        """A queued proposal became the arbiter's Opening turn: drive its opening (F-140)."""
        tid = self.arbiter.turn_id
        if self.arbiter.state is TurnState.OPENING and tid and tid not in self.timings:
            self.session.control("rspp.open_queued", turn_id=tid)

    def _overlap(self, diag: str, queued_before: int) -> None:
        """A proposal while a turn is Opening/Active under ``queue`` or ``reject`` (F-140)."""
        if diag == "overlap_rejected":
            self._signal(SignalName.REJECT, Emitter.RK_25, None, diag, session_scoped=True)
            self._refuse(None, None, f"reject:{diag}")
            return
        self._signal(SignalName.DEFER, Emitter.RK_25, None, diag, session_scoped=True)
        if queued_before >= self.arbiter.policy.max_queued_proposals:  # the newest one waits
            self._queued.popleft()
            self._signal(SignalName.REJECT, Emitter.RK_25, None, "overlap_superseded",
                         session_scoped=True)
            self._refuse(None, None, "reject:overlap_superseded")

    async def _propose(self, reason: str) -> None:
        active = self.active_turn
        if active is not None and self.arbiter.policy.overlap is OverlapPolicy.PREEMPT:
            self.cancel(active, CancelReason.BARGE_IN)
        eou_ns = self._eou_ns.popleft() if self._eou_ns else self.clock.monotonic_ns()
        self._signal(SignalName.TURN_OPEN_PROPOSED, Emitter.RK_02, None, reason,
                     session_scoped=True)
        proposed_ns = self.clock.monotonic_ns()
        queued_before = len(self._queued)
        proposal = self._apply(self.arbiter.propose(reason=reason))
        codes = [d.code for d in proposal.diagnostics]
        if "overlap_queued" in codes:
            self._queued.append((eou_ns, proposed_ns))
        if codes and codes[0] in ("overlap_queued", "overlap_rejected"):
            return self._overlap(codes[0], queued_before)
        tid = self.arbiter.turn_id
        if tid is None or self.arbiter.state is not TurnState.OPENING:
            self._refuse(None, None, f"overlap:{codes[0] if codes else 'not_opened'}")
            return
        await self._open(tid, eou_ns, proposed_ns)

    async def _open(self, tid: str, eou_ns: int, proposed_ns: int) -> None:  # T2..T5
        t = TurnTiming(tid, eou_ns, proposed_ns, proposed_ms=self.timebase.runtime_ms())
        self.timings[tid] = t
        self.order.append(tid)
        sid = self.session.session_id
        decision = self.admission.admit_turn(self.tenant_id, sid, tid)
        t.admission_reason = decision.outcome.reason
        last = self._apply(self.arbiter.admission(decision.kind, decision.outcome.reason))
        # the truth table's order: admission and snapshot validity (T2), then authority
        # (T3/T4), then plan materialisation (T5/T5a)
        bundle = None
        if self.arbiter.state is TurnState.OPENING:
            bundle = await self.resolver.fetch(tenant_id=self.tenant_id, session_id=sid)
            bad = self.resolver.check(bundle)
            last = self._apply(self.arbiter.snapshots(bad.kind if bad else None,
                                                      bad.reason if bad else "snapshots_valid"))
        verdict = AuthorityVerdict.DEAUTHORIZED
        if self.arbiter.state is TurnState.OPENING and self.arbiter.turn_id == tid:
            verdict = self.authority.verdict(self.arbiter.turn_epoch or self.authority.epoch)
            last = self._apply(self.arbiter.authority(verdict))
        if bundle is None or self.arbiter.state is not TurnState.OPENING \
                or self.arbiter.turn_id != tid or verdict is not AuthorityVerdict.VALID:
            self._refuse(t, last, "refused")
            return
        res = self.resolver.materialise(bundle, session_id=sid, turn_id=tid,
                                        authority_epoch=self.authority.epoch,
                                        start_sequence=self.stamp.next_seq())
        if res.plan is None:
            refusal = res.refusal
            kind = refusal.kind if refusal is not None else OutcomeKind.DEFER
            self._refuse(t, self._apply(self.arbiter.plan_failed(
                kind, refusal.reason if refusal else "plan")), "plan_failed")
            return
        t.plan = res.plan
        self.emit(res.plan)
        if self.on_plan is not None:
            self.on_plan(res.plan)
        self._apply(self.arbiter.plan_materialised(res.plan.plan_hash))
        t.open_ns = self.clock.monotonic_ns()
        t.open_ms = self.timebase.runtime_ms()
        self.node_scopes.open(self.cancels.open(CancelScopeKind.TURN, tid))
        self.budget_watch.start(tid, res.plan, authority_epoch=self.authority.epoch)
        self.session.control("turn_start", turn_id=tid, applied=True)
        self._resolve_waiter(tid)

    def _invocation_rows(self, tid: str) -> tuple[Mapping[str, object], ...]:
        """The turn's provider invocations, each linked to the node cancel scope it ran in
        (F-160; a replay's recorded rows carry their link already)."""
        rows = self.invocations(tid) if self.invocations else ()
        out = []
        for row in rows:
            node = row.get("node_id")
            scope = self.node_scopes.scope_of(tid, node) if isinstance(node, str) else None
            if scope is not None and "cancel_scope" not in row:
                row = {**row, "cancel_scope": scope.scope_id}
            out.append(row)
        return tuple(out)

    def _evidence_ok(self, t: TurnTiming, signal: str, reason: str | None) -> bool:
        if self._evidence is None or t.plan is None:
            return True
        plan = t.plan
        ev: dict[str, object] = {
            "or02_evidence_schema_version": "or02/v1",
            "session_id": self.session.session_id, "turn_id": t.turn_id,
            "pipeline_version": self.session.pipeline_version, "plan_hash": plan.plan_hash,
            "authority_epoch_at_open": plan.authority_epoch,
            "authority_epoch_at_terminal": self.authority.epoch,
            "admission_outcome": "admit", "admission_reason": t.admission_reason or "admitted",
            "snapshot_refs": plan.snapshot_provenance, "determinism": plan.determinism,
            "turn_open_proposed_ms": t.proposed_ms, "turn_open_ms": t.open_ms,
            "terminal_ms": self.timebase.runtime_ms(), "terminal_signal": signal,
            "provider_invocations": self._invocation_rows(t.turn_id),
            "recording_level": plan.recording_policy.recording_level,
            "runtime_timestamp_ms": self.timebase.runtime_ms(),
            "wall_clock_timestamp_ms": self.timebase.wall_ms(),
        }
        if signal == "abort":
            ev["abort_reason"] = reason or "aborted"
        if self.session.pool is not None:  # F-105: what the turn queued for pool slots
            ev["pool_wait_ms"] = self.session.pool_waits.take(t.turn_id)
        if t.cancel_accepted_ns is not None:
            ev["cancel"] = {
                "scope": "turn", "reason": t.cancel_reason or "barge_in",
                "cancel_accepted_ms": t.cancel_accepted_ns // 1_000_000,
                "cancel_fence_applied_ms": (t.cancel_fence_ns or t.cancel_accepted_ns) // 1_000_000,
            }
        return self._evidence(ev)

    def _terminal(self, tid: str, step: Step) -> None:
        self.budget_watch.end(tid)
        self._yielded.pop(tid, None)
        self._apply(step)
        t = self.timings.get(tid)
        if t is not None:
            for rec in step.records:
                if isinstance(rec, ControlSignal) and rec.signal in (SignalName.COMMIT,
                                                                     SignalName.ABORT):
                    t.terminal = rec.signal.value
                    t.reason = rec.reason
                    t.terminal_ns = self.clock.monotonic_ns()
        self.late.closed(tid)  # a replay's recorded late arrival waiting for the close
        self.session.control("turn_end", turn_id=tid, applied=True)
        self._open_queued()

    def _complete(self, tid: str | None) -> None:
        if tid is None or tid != self.active_turn:
            return
        t = self.timings[tid]
        if self._evidence_ok(t, "commit", None):
            self._terminal(tid, self.arbiter.generation_complete())
        else:
            self._terminal(tid, self.arbiter.evidence_append_failed())
        self.cancels.close(self.cancels.scope(tid))

    def cancel(self, tid: str, reason: CancelReason) -> None:
        """Accept a cancel of turn ``tid`` now: fence, ``cancel``, T7, kernel cancel."""
        try:
            scope = self.cancels.scope(tid)
        except Exception:
            scope = None
        t = self.timings.get(tid)
        if scope is not None:
            lat = self.cancels.cancel(scope, reason)
            self.emit(self.cancels.cancel_signal(
                scope, reason, authority_epoch=self.authority.epoch, turn_id=tid))
            self.node_scopes.cancel(tid, reason, lat)
            if t is not None:
                t.cancel_accepted_ns, t.cancel_fence_ns = lat.accepted_ns, lat.fence_applied_ns
                t.cancel_reason = reason.value
        self.gate.fence(tid)
        if self.on_stop_playback is not None:
            self.on_stop_playback(tid, reason.value)
        if self.speaking == tid:
            self.speaking = None
        if tid == self.active_turn and t is not None:
            self._evidence_ok(t, "abort", "cancelled")
            self._terminal(tid, self.arbiter.same_point(
                [(TerminalCause.CANCEL, reason.value), *self._yielded.pop(tid, ())]))
        self.session.cancel_turn(tid, reason.value)
        if scope is not None:
            self.cancels.close(scope)

    def _pending_cause(self, cmd: ControlCommand, tid: str) -> TerminalCause | None:
        """The terminal cause a pending control command stands for on the Active ``tid``."""
        name = cmd.name
        if name == "rspp.authority":
            return TerminalCause.AUTHORITY_LOSS if cmd.turn_id == tid else None
        if name in ("rspp.barge_in", "rspp.user_cancel"):
            return TerminalCause.CANCEL if cmd.turn_id == tid else None
        if name == "rspp.propose" and self.arbiter.policy.overlap is OverlapPolicy.PREEMPT:
            return TerminalCause.CANCEL  # a preempting proposal cancels the Active turn
        return None

    def _gives_way(self, tid: str, cause: TerminalCause, reason: str) -> bool:
        """Same-point precedence (authority_loss > cancel > budget > provider/runtime error >
        disconnect): when a trigger of a higher cause for ``tid`` is already on the control
        lane, ``cause`` does not end the turn (whatever the order the two were enqueued
        in); the winner's terminal records it as ``precedence_suppressed``."""
        for cmd in self.session.pending_control():
            c = self._pending_cause(cmd, tid)
            if c is not None and c.rank < cause.rank:
                self._yielded.setdefault(tid, []).append((cause, reason))
                return True
        return False

    def _failure(self, tid: str | None, reason: str) -> None:
        if tid is None or tid != self.active_turn:
            return
        gone = reason in ("session_end", "transport_disconnect")  # the client left
        cause = (TerminalCause.PROVIDER_ERROR if "provider" in reason
                 else TerminalCause.DISCONNECT if gone
                 else TerminalCause.BUDGET_TERMINATE if reason == "budget_exhausted"
                 else TerminalCause.RUNTIME_ERROR)
        if self._gives_way(tid, cause, reason):
            return
        t = self.timings[tid]
        scope = self.cancels.scope(tid)
        why = (CancelReason.TIMEOUT if reason == "budget_exhausted"
               else CancelReason.SESSION_END if gone
               else CancelReason.PROVIDER_ERROR)
        lat = self.cancels.cancel(scope, why)
        # the failure path cancels the turn's scope too, and says so with its reason (F-035)
        self.emit(self.cancels.cancel_signal(scope, why, authority_epoch=self.authority.epoch,
                                             turn_id=tid))
        self.node_scopes.cancel(tid, why, lat)
        t.cancel_accepted_ns, t.cancel_fence_ns = lat.accepted_ns, lat.fence_applied_ns
        t.cancel_reason = why.value
        self.gate.fence(tid)
        if self.on_stop_playback is not None:
            self.on_stop_playback(tid, why.value)
        self._evidence_ok(t, "abort", reason)
        self._terminal(tid, self.arbiter.failure(cause, reason))
        self.session.cancel_turn(tid, reason)
        self.cancels.close(scope)

    def user_cancel(self) -> str | None:
        """The user asked to stop the reply (F-035): cancel the speaking or Active turn.

        Queued on the session's control lane like every other turn command, so it is
        applied in order with them; returns the turn it targets (None: nothing to cancel).
        """
        tid = self.speaking or self.active_turn
        if tid is not None:
            self.session.control("rspp.user_cancel", turn_id=tid, reason="user_cancel")
        return tid

    def end_session(self) -> None:
        """The client is gone: a still Active turn ends ``abort(session_end)``, ``close``."""
        tid = self.active_turn
        if tid is not None:
            self.session.control("rspp.failure", turn_id=tid, reason="session_end")

    async def aclose(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result((None, "session_closed"))
        await self.budget_watch.aclose()
        await self.node_scopes.aclose()
        await self.overload.aclose()

    def summary(self) -> list[dict[str, Any]]:
        """Per-turn latency rows (ms) in proposal order."""
        rows = []
        for tid in self.order:
            t = self.timings[tid]
            rows.append({
                "turn_id": tid, "terminal": t.terminal, "reason": t.reason,
                "turn_open_decision_ms": t.turn_open_decision_ms,
                "first_output_ms": t.first_output_ms, "end_to_end_ms": t.end_to_end_ms,
                "cancel_fence_ms": t.cancel_fence_ms, "committed_samples": t.committed_samples,
            })
        return rows
