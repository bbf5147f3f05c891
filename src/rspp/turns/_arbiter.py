"""The turn arbiter (RK-03): the normative truth table T1..T12 of DESIGN section 1.

Inputs are method calls made by the session actor; each returns a :class:`Step`
with the records emitted, *in order*: ControlLane signals, decision outcomes and
``turn_transition`` records, plus deterministic diagnostics for inputs that are
illegal in the current state (F-138, F-139, F-141). The arbiter never reads time
or randomness except through its :class:`~rspp.kernel._identity.RecordStamp`,
so identical inputs give identical outputs (F-140).

===== ====================================== =========================================
case  input (method)                         emitted, in order
===== ====================================== =========================================
T1    ``propose`` in Idle                    nothing (transition Idle->Opening)
T2    ``admission(reject|defer)``            reject|defer                 -> Idle
T2    ``snapshots(reject|defer)`` (after     reject|defer                 -> Idle
      admission, before authority)
T3    ``authority(STALE)``                   stale_epoch_reject           -> Idle
T4    ``authority(DEAUTHORIZED)``            deauthorized_drain           -> Idle
T5    ``plan_materialised``                  turn_open                    -> Active
T5a   ``plan_failed(reject|defer)``          reject|defer, no turn_open   -> Idle
T6    ``generation_complete``                commit, close                -> Closed
T7    ``cancel_accepted``                    abort(cancelled), close      -> Closed
T8    ``authority_revoked`` while Active     deauthorized_drain, abort(authority_loss), close
T9    ``evidence_append_failed``             abort(recording_evidence_unavailable), close
T10   ``failure`` without continuation       abort(reason), close
T11   ``late_event`` of a closed turn        drop | remap to a proposal | diagnostic
T12   ``event``/``output`` with stale epoch  stale_epoch_reject (diagnostic), no transition
===== ====================================== =========================================

Same-point precedence (``same_point``): authority_loss > cancel > budget
terminate > provider/runtime error > disconnect/cleanup timeout.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from rspp.contracts import (
    LEGAL_TRANSITIONS,
    CancelScopeKind,
    ControlSignal,
    DecisionOutcome,
    Emitter,
    OutcomeEmitter,
    OutcomeKind,
    OutcomePhase,
    OutcomeScope,
    SignalName,
    TransitionTrigger,
    TurnState,
    TurnTransition,
)
from rspp.errors import LifecycleError
from rspp.kernel._identity import RecordStamp

__all__ = [
    "ArbiterPolicy",
    "AuthorityVerdict",
    "Continuation",
    "Diagnostic",
    "LatePolicy",
    "LifecycleRecord",
    "OverlapPolicy",
    "Step",
    "TerminalCause",
    "TurnArbiter",
    "VadBypass",
]


class OverlapPolicy(StrEnum):
    """What a proposal does while another turn is Opening or Active (F-140)."""

    REJECT = "reject"  # diagnostic, proposal dropped
    QUEUE = "queue"  # held (bounded, newest kept) and opened when the slot frees
    PREEMPT = "preempt"  # barge-in: an Active turn is cancelled, the new one opens


class LatePolicy(StrEnum):
    """What an event of an already closed turn does (T11)."""

    DROP = "drop"
    REMAP = "remap"  # becomes a new turn proposal
    DIAGNOSTICS = "diagnostics"


class AuthorityVerdict(StrEnum):
    VALID = "valid"
    STALE = "stale"
    DEAUTHORIZED = "deauthorized"


class Continuation(StrEnum):
    """Plan-resolved legal continuation after a failure (F-137)."""

    CONTINUE = "continue"
    DEGRADE = "degrade"
    FALLBACK = "fallback"


class TerminalCause(StrEnum):
    """Causes of an abort, with their same-point precedence rank (lower wins)."""

    AUTHORITY_LOSS = "authority_loss"
    CANCEL = "cancel"
    BUDGET_TERMINATE = "budget_exhausted"
    PROVIDER_ERROR = "provider_error"
    RUNTIME_ERROR = "runtime_error"
    DISCONNECT = "disconnect"
    CLEANUP_TIMEOUT = "cleanup_timeout"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    TerminalCause.AUTHORITY_LOSS: 0,
    TerminalCause.CANCEL: 1,
    TerminalCause.BUDGET_TERMINATE: 2,
    TerminalCause.PROVIDER_ERROR: 3,
    TerminalCause.RUNTIME_ERROR: 4,
    TerminalCause.DISCONNECT: 5,
    TerminalCause.CLEANUP_TIMEOUT: 6,
}
"""A total order: every cause has its own rank, so the winner never depends on argument order
(DESIGN's same-point precedence, with provider before runtime errors and disconnect before the
cleanup timeout it leads to). Equal causes are ordered by their reason text."""


@dataclass(frozen=True, slots=True)
class ArbiterPolicy:
    """Configurable, deterministic arbitration (F-140)."""

    overlap: OverlapPolicy = OverlapPolicy.PREEMPT
    late_events: LatePolicy = LatePolicy.DIAGNOSTICS
    max_queued_proposals: int = 1
    #: the truth table's pre-turn order: the snapshot check (T2) must pass before the
    #: authority check (T3/T4) and ``turn_open`` (T5); off: callers that check no snapshots
    snapshot_check_first: bool = True


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A deterministic explanation of an input that changed nothing (or lost precedence)."""

    code: str
    detail: str
    turn_id: str | None
    state: TurnState


@dataclass(frozen=True, slots=True)
class VadBypass:
    """F-042: the VAD/turn-detection node must finalise ``turn_id`` now, without waiting."""

    turn_id: str
    reason: str = "explicit_end_of_utterance"


LifecycleRecord: TypeAlias = ControlSignal | DecisionOutcome | TurnTransition


@dataclass(frozen=True, slots=True)
class Step:
    """What one arbiter input produced, in emission order."""

    records: tuple[LifecycleRecord, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    vad_bypass: VadBypass | None = None
    accepted: bool = True

    @property
    def signals(self) -> tuple[SignalName, ...]:
        return tuple(r.signal for r in self.records if isinstance(r, ControlSignal))

    @property
    def transitions(self) -> tuple[tuple[TurnState, TransitionTrigger, TurnState], ...]:
        return tuple(
            (r.from_state, r.trigger, r.to_state)
            for r in self.records
            if isinstance(r, TurnTransition)
        )

    @property
    def outcomes(self) -> tuple[DecisionOutcome, ...]:
        return tuple(r for r in self.records if isinstance(r, DecisionOutcome))


#: the Step of an accepted output (frozen: one instance serves every accepted output)
_ACCEPTED = Step((), accepted=True)


_PRE_TURN_KINDS = {OutcomeKind.REJECT: SignalName.REJECT, OutcomeKind.DEFER: SignalName.DEFER}


class TurnArbiter:
    """Per-session turn lifecycle arbiter; owned by the session actor (no locks)."""

    def __init__(
        self,
        stamp: RecordStamp,
        *,
        authority_epoch: int,
        policy: ArbiterPolicy | None = None,
        closed_memory: int = 1024,
    ) -> None:
        self._stamp = stamp
        self.policy = policy if policy is not None else ArbiterPolicy()
        self.authority_epoch = authority_epoch
        self.state = TurnState.IDLE
        self.turn_id: str | None = None
        self.turn_epoch: int | None = None
        self.plan_hash: str | None = None
        self._admitted = False
        self._snapshots_ok = False
        self._authority_ok = False
        self._proposal_reason = ""
        self._queued: deque[str] = deque(maxlen=self.policy.max_queued_proposals)
        self._closed: deque[str] = deque(maxlen=closed_memory)
        self._closed_set: set[str] = set()
        self.dropped_late_events = 0
        self.rejected_stale = 0
        self.accepted_outputs = 0

    # ------------------------------------------------------------------ helpers
    def _transition(
        self, out: list[LifecycleRecord], trigger: TransitionTrigger, to: TurnState
    ) -> None:
        frm = TurnState.IDLE if self.state is TurnState.CLOSED else self.state
        if (frm, trigger, to) not in LEGAL_TRANSITIONS:  # programming error in this module
            raise LifecycleError(f"illegal transition {frm} --{trigger}--> {to}")
        out.append(TurnTransition(from_state=frm, trigger=trigger, to_state=to))
        self.state = to

    def _sig(
        self,
        name: SignalName,
        emitter: Emitter,
        *,
        reason: str | None = None,
        epoch: int | None = None,
        session_scoped: bool = False,
        scope: CancelScopeKind | None = None,
    ) -> ControlSignal:
        return self._stamp.signal(
            name,
            emitter,
            authority_epoch=self.authority_epoch if epoch is None else epoch,
            turn_id=self.turn_id,
            reason=reason,
            session_scoped=session_scoped,
            scope=scope,
        )

    def _outcome(
        self,
        kind: OutcomeKind,
        phase: OutcomePhase,
        scope: OutcomeScope,
        emitter: OutcomeEmitter,
        reason: str,
        epoch: int | None = None,
    ) -> DecisionOutcome:
        return self._stamp.outcome(
            kind, phase, scope, emitter, reason=reason, turn_id=self.turn_id, authority_epoch=epoch
        )

    def _diag(self, code: str, detail: str, turn_id: str | None = None) -> Step:
        return Step((), (Diagnostic(code, detail, turn_id or self.turn_id, self.state),))

    def _reset_slot(self) -> None:
        self.turn_id = None
        self.turn_epoch = None
        self.plan_hash = None
        self._admitted = False
        self._snapshots_ok = False
        self._authority_ok = False

    def _back_to_idle(self, out: list[LifecycleRecord], trigger: TransitionTrigger) -> None:
        self._transition(out, trigger, TurnState.IDLE)
        self._reset_slot()
        self._start_queued(out)

    def _start_queued(self, out: list[LifecycleRecord]) -> None:
        if self._queued and self.state in (TurnState.IDLE, TurnState.CLOSED):
            self._open_proposal(out, self._queued.popleft(), None)

    def _open_proposal(self, out: list[LifecycleRecord], reason: str, epoch: int | None) -> None:
        self.turn_id = self._stamp.ids.turn_id()
        self.turn_epoch = self.authority_epoch if epoch is None else epoch
        self._proposal_reason = reason
        self._transition(out, TransitionTrigger.TURN_OPEN_PROPOSED, TurnState.OPENING)

    def _terminate(
        self, out: list[LifecycleRecord], trigger: TransitionTrigger, reason: str | None
    ) -> None:
        name = SignalName.COMMIT if trigger is TransitionTrigger.COMMIT else SignalName.ABORT
        # Terminal signals carry the turn's own epoch (OR-02: epoch at open and terminal).
        epoch = self.turn_epoch
        out.append(self._sig(name, Emitter.RK_03, reason=reason, epoch=epoch))
        self._transition(out, trigger, TurnState.TERMINAL)
        out.append(self._sig(SignalName.CLOSE, Emitter.RK_03, epoch=epoch))
        self._transition(out, TransitionTrigger.CLOSE, TurnState.CLOSED)
        closed = self.turn_id
        if closed is not None:
            if len(self._closed) == self._closed.maxlen:
                self._closed_set.discard(self._closed[0])
            self._closed.append(closed)
            self._closed_set.add(closed)
        self._reset_slot()
        self._start_queued(out)

    @property
    def accepting_proposals(self) -> bool:
        return self.state in (TurnState.IDLE, TurnState.CLOSED)

    def is_closed(self, turn_id: str) -> bool:
        return turn_id in self._closed_set

    # ------------------------------------------------------------------ T1 / overlap
    def propose(self, *, reason: str = "turn_open_proposed", epoch: int | None = None) -> Step:
        """T1: ``turn_open_proposed`` (intent only). Overlaps follow ``policy.overlap``."""
        out: list[LifecycleRecord] = []
        if self.accepting_proposals:
            self._open_proposal(out, reason, epoch)
            return Step(tuple(out))
        overlap = self.policy.overlap
        if self.state is TurnState.ACTIVE and overlap is OverlapPolicy.PREEMPT:
            self._queued.clear()  # the preempting proposal supersedes older queued ones
            self._terminate(out, TransitionTrigger.ABORT, "cancelled")
            self._open_proposal(out, reason, epoch)
            return Step(tuple(out), (Diagnostic("preempted", reason, None, self.state),))
        if overlap is OverlapPolicy.REJECT:
            return self._diag("overlap_rejected", f"proposal '{reason}' while {self.state}")
        if len(self._queued) == self._queued.maxlen:
            self._queued.popleft()  # coalesce: keep the newest proposals
        self._queued.append(reason)
        return self._diag("overlap_queued", f"proposal '{reason}' queued while {self.state}")

    def end_of_utterance(self, *, epoch: int | None = None) -> Step:
        """F-042: explicit client end-of-utterance proposes a turn and bypasses VAD."""
        step = self.propose(reason="explicit_end_of_utterance", epoch=epoch)
        if self.state is TurnState.OPENING and self.turn_id is not None:
            return Step(step.records, step.diagnostics, VadBypass(self.turn_id))
        return step

    # ------------------------------------------------------------------ Opening
    def _require(self, state: TurnState, what: str) -> Step | None:
        if self.state is not state:
            return self._diag("illegal_input", f"{what} not allowed in state {self.state}")
        return None

    def admission(self, kind: OutcomeKind, reason: str) -> Step:
        """T2 (reject/defer) or admit (stays Opening) - pre-turn, never abort/close."""
        if (bad := self._require(TurnState.OPENING, f"admission({kind})")) is not None:
            return bad
        out: list[LifecycleRecord] = []
        if kind is OutcomeKind.ADMIT:
            out.append(
                self._sig(SignalName.ADMIT, Emitter.RK_25, reason=reason, session_scoped=True)
            )
            out.append(
                self._outcome(
                    kind, OutcomePhase.PRE_TURN, OutcomeScope.TURN, OutcomeEmitter.RK_25, reason
                )
            )
            self._admitted = True
            return Step(tuple(out))
        if kind not in _PRE_TURN_KINDS:
            return self._diag("illegal_input", f"admission kind {kind} is not admit/reject/defer")
        self._pre_turn_refusal(out, kind, reason)
        return Step(tuple(out))

    def _pre_turn_refusal(self, out: list[LifecycleRecord], kind: OutcomeKind, reason: str) -> None:
        out.append(
            self._sig(_PRE_TURN_KINDS[kind], Emitter.RK_25, reason=reason, session_scoped=True)
        )
        out.append(
            self._outcome(
                kind, OutcomePhase.PRE_TURN, OutcomeScope.TURN, OutcomeEmitter.RK_25, reason
            )
        )
        self._back_to_idle(out, TransitionTrigger(kind.value))

    def snapshots(self, refusal: OutcomeKind | None, reason: str = "snapshots_valid") -> Step:
        """T2's snapshot half: stale, missing or incompatible turn-start snapshots -> defer or
        reject -> Idle; valid ones (``refusal`` None) keep the proposal Opening. Checked after
        admission and before authority (T3/T4), in the truth table's order."""
        if (bad := self._require(TurnState.OPENING, "snapshots")) is not None:
            return bad
        if not self._admitted:
            return self._diag("pre_turn_order", "snapshot check (T2) before admission")
        if refusal is None:
            self._snapshots_ok = True
            return Step(())
        if refusal not in _PRE_TURN_KINDS:
            return self._diag("illegal_input", f"snapshot refusal {refusal} is not reject/defer")
        out: list[LifecycleRecord] = []
        self._pre_turn_refusal(out, refusal, reason)
        return Step(tuple(out))

    def authority(self, verdict: AuthorityVerdict, reason: str | None = None) -> Step:
        """T3 (stale epoch), T4 (deauthorized) or a valid authority check."""
        if (bad := self._require(TurnState.OPENING, f"authority({verdict})")) is not None:
            return bad
        if self.policy.snapshot_check_first and not self._snapshots_ok:
            return self._diag("pre_turn_order", "authority check (T3/T4) before the snapshot "
                              "check (T2); the truth table checks snapshots first")
        return self._authority_verdict(verdict, reason)

    def _authority_verdict(self, verdict: AuthorityVerdict, reason: str | None) -> Step:
        out: list[LifecycleRecord] = []
        if verdict is AuthorityVerdict.VALID:
            self._authority_ok = True
            return Step(())
        self._pre_open_authority(out, verdict, reason)
        return Step(tuple(out))

    def _pre_open_authority(
        self, out: list[LifecycleRecord], verdict: AuthorityVerdict, reason: str | None
    ) -> None:
        epoch = self.turn_epoch if self.turn_epoch is not None else self.authority_epoch
        stale = verdict is AuthorityVerdict.STALE  # T3, else T4: same records, other kind
        why = reason or ("stale_epoch" if stale else "deauthorized")
        signal, kind, trigger = (
            (SignalName.STALE_EPOCH_REJECT, OutcomeKind.STALE_EPOCH_REJECT,
             TransitionTrigger.STALE_EPOCH_REJECT)
            if stale
            else (SignalName.DEAUTHORIZED_DRAIN, OutcomeKind.DEAUTHORIZED_DRAIN,
                  TransitionTrigger.DEAUTHORIZED_DRAIN)
        )
        out.append(self._sig(signal, Emitter.RK_24, reason=why, epoch=epoch, session_scoped=True))
        out.append(self._outcome(kind, OutcomePhase.PRE_TURN, OutcomeScope.TURN,
                                 OutcomeEmitter.RK_24, why, epoch))
        self._back_to_idle(out, trigger)

    def plan_materialised(self, plan_hash: str) -> Step:
        """T5: admitted and authority valid -> ``turn_open``; otherwise a diagnostic."""
        if (bad := self._require(TurnState.OPENING, "plan_materialised")) is not None:
            return bad
        snapshots_ok = self._snapshots_ok or not self.policy.snapshot_check_first
        if not (self._admitted and snapshots_ok and self._authority_ok):
            missing = [
                n
                for n, ok in (("admission", self._admitted), ("snapshots", snapshots_ok),
                              ("authority", self._authority_ok))
                if not ok
            ]
            return self._diag("turn_open_precondition", f"missing {', '.join(missing)} check")
        out: list[LifecycleRecord] = []
        self.plan_hash = plan_hash
        out.append(self._sig(SignalName.TURN_OPEN, Emitter.RK_03, epoch=self.turn_epoch))
        self._transition(out, TransitionTrigger.TURN_OPEN, TurnState.ACTIVE)
        return Step(tuple(out))

    def plan_failed(self, kind: OutcomeKind, reason: str) -> Step:
        """T5a: plan materialisation failed -> defer or reject, no ``turn_open``."""
        if (bad := self._require(TurnState.OPENING, "plan_failed")) is not None:
            return bad
        if kind not in _PRE_TURN_KINDS:
            return self._diag("illegal_input", f"plan_failed kind {kind} is not reject/defer")
        out: list[LifecycleRecord] = []
        self._pre_turn_refusal(out, kind, reason)
        return Step(tuple(out))

    # ------------------------------------------------------------------ Active
    def _active_or_diag(self, what: str) -> Step | None:
        if self.state is TurnState.ACTIVE:
            return None
        code = "duplicate_terminal" if self.state is TurnState.CLOSED else "illegal_input"
        return self._diag(code, f"{what} rejected in state {self.state}: no turn is active")

    def generation_complete(self) -> Step:
        """T6: ``commit``, ``close`` (terminal evidence appended by the caller first)."""
        if (bad := self._active_or_diag("commit")) is not None:
            return bad
        out: list[LifecycleRecord] = []
        self._terminate(out, TransitionTrigger.COMMIT, None)
        return Step(tuple(out))

    def cancel_accepted(self, reason: str = "user_cancel") -> Step:
        """T7: ``abort(cancelled)``, ``close``; ``reason`` is the cancel reason code."""
        return self.same_point([(TerminalCause.CANCEL, reason)])

    def authority_revoked(self, new_epoch: int, reason: str = "lease_revoked") -> Step:
        """T8 while Active; T4 (pre-open drain) while Opening; otherwise just the new epoch."""
        if self.state is TurnState.OPENING:
            self.authority_epoch = max(self.authority_epoch, new_epoch)
            out: list[LifecycleRecord] = []
            self._pre_open_authority(out, AuthorityVerdict.DEAUTHORIZED, reason)
            return Step(tuple(out))
        if self.state is not TurnState.ACTIVE:
            self.authority_epoch = max(self.authority_epoch, new_epoch)
            return Step(())
        return self.same_point([(TerminalCause.AUTHORITY_LOSS, reason)], new_epoch=new_epoch)

    def interrupted_elsewhere(self, turn_id: str, turn_epoch: int, reason: str) -> Step:
        """T8 for a turn that was Active on the session's previous owner when it failed over
        or migrated: this owner resumed the session at a newer epoch, so the turn lost its
        authority. ``deauthorized_drain``, ``abort(authority_loss)``, ``close`` at the
        turn's own epoch; the turn counts as closed here (late events of it are T11)."""
        if not self.accepting_proposals:
            return self._diag("illegal_input", f"interrupted turn {turn_id} reported while "
                              f"{self.state}", turn_id)
        if turn_id in self._closed_set:
            return self._diag("duplicate_terminal", f"turn {turn_id} is already closed",
                              turn_id)
        self.state = TurnState.ACTIVE
        self.turn_id = turn_id
        self.turn_epoch = turn_epoch
        return self.same_point([(TerminalCause.AUTHORITY_LOSS, reason)])

    def evidence_append_failed(self) -> Step:
        """T9: ``abort(recording_evidence_unavailable)``, ``close``."""
        if (bad := self._active_or_diag("abort(recording_evidence_unavailable)")) is not None:
            return bad
        out: list[LifecycleRecord] = []
        self._terminate(out, TransitionTrigger.ABORT, "recording_evidence_unavailable")
        return Step(tuple(out))

    def failure(
        self, cause: TerminalCause, reason: str, continuation: Continuation | None = None
    ) -> Step:
        """T10, or the plan-resolved legal continuation (continue, degrade, fallback)."""
        if (bad := self._active_or_diag(f"failure({cause})")) is not None:
            return bad
        if continuation is Continuation.CONTINUE:
            return Step((), (Diagnostic("continue", reason, self.turn_id, self.state),))
        if continuation is not None:
            name = (
                SignalName.DEGRADE if continuation is Continuation.DEGRADE else SignalName.FALLBACK
            )
            return Step((self._sig(name, Emitter.RK_17, reason=reason),))
        return self.same_point([(cause, reason)])

    def same_point(
        self, causes: Iterable[tuple[TerminalCause, str]], *, new_epoch: int | None = None
    ) -> Step:
        """Several terminal causes at one scheduling point: the highest precedence wins."""
        ordered = sorted(causes, key=lambda c: (c[0].rank, c[1]))
        if not ordered:
            return Step(())
        if (bad := self._active_or_diag(f"terminal({ordered[0][0]})")) is not None:
            return bad
        cause, reason = ordered[0]
        out: list[LifecycleRecord] = []
        losers = tuple(
            Diagnostic("precedence_suppressed", f"{c}:{r}", self.turn_id, self.state)
            for c, r in ordered[1:]
        )
        if cause is TerminalCause.AUTHORITY_LOSS:
            if new_epoch is not None:
                self.authority_epoch = max(self.authority_epoch, new_epoch)
            epoch = self.turn_epoch if self.turn_epoch is not None else self.authority_epoch
            out.append(
                self._sig(SignalName.DEAUTHORIZED_DRAIN, Emitter.RK_24, reason=reason, epoch=epoch)
            )
            out.append(
                self._outcome(
                    OutcomeKind.DEAUTHORIZED_DRAIN,
                    OutcomePhase.ACTIVE_TURN,
                    OutcomeScope.TURN,
                    OutcomeEmitter.RK_24,
                    reason,
                    epoch,
                )
            )
            self._terminate(out, TransitionTrigger.ABORT, "authority_loss")
        elif cause is TerminalCause.CANCEL:
            self._terminate(out, TransitionTrigger.ABORT, "cancelled")
        else:
            self._terminate(out, TransitionTrigger.ABORT, reason)
        return Step(tuple(out), losers)

    # ------------------------------------------------------------------ T11 / T12
    def late_event(self, turn_id: str, epoch: int) -> Step:
        """T11: an event of a closed turn; never reopens it. Stale epochs go to T12."""
        if epoch < self.authority_epoch:
            return self.event(epoch, OutcomeScope.EDGE_ENQUEUE, turn_id=turn_id)
        if turn_id not in self._closed_set:
            return self._diag(
                "unknown_turn", f"late event for turn {turn_id} that is not closed", turn_id
            )
        late = self.policy.late_events
        if late is LatePolicy.DROP:
            self.dropped_late_events += 1
            return Step(())
        if late is LatePolicy.REMAP:
            step = self.propose(reason=f"remapped_late_event:{turn_id}")
            return Step(
                step.records,
                (
                    *step.diagnostics,
                    Diagnostic("late_event_remapped", turn_id, turn_id, self.state),
                ),
            )
        return self._diag("late_event", f"event of closed turn {turn_id} ignored", turn_id)

    def event(
        self,
        epoch: int,
        where: OutcomeScope = OutcomeScope.EDGE_ENQUEUE,
        *,
        turn_id: str | None = None,
    ) -> Step:
        """Ingress/egress epoch check. Returns ``accepted`` False with T12 when stale.

        In Opening a stale epoch is the authority check of T3 instead.
        """
        if epoch >= self.authority_epoch:
            return _ACCEPTED
        self.rejected_stale += 1
        if self.state is TurnState.OPENING and turn_id in (None, self.turn_id):
            return Step(
                self._authority_verdict(AuthorityVerdict.STALE, "stale_epoch_event").records,
                accepted=False
            )
        reason = f"stale_epoch:{epoch}<{self.authority_epoch}"
        sig = self._stamp.signal(
            SignalName.STALE_EPOCH_REJECT,
            Emitter.RK_24,
            authority_epoch=epoch,
            turn_id=turn_id or self.turn_id,
            reason=reason,
            session_scoped=True,
        )
        outcome = self._stamp.outcome(
            OutcomeKind.STALE_EPOCH_REJECT,
            OutcomePhase.SCHEDULING_POINT,
            where,
            OutcomeEmitter.RK_24,
            reason=reason,
            turn_id=turn_id or self.turn_id,
            authority_epoch=epoch,
        )
        return Step((sig, outcome), accepted=False)

    def output(self, turn_id: str, epoch: int) -> Step:
        """Egress gate: only outputs of the Active turn at a current epoch pass."""
        check = self.event(epoch, OutcomeScope.EDGE_DEQUEUE, turn_id=turn_id)
        if not check.accepted:
            return check
        if self.state is TurnState.ACTIVE and turn_id == self.turn_id:
            self.accepted_outputs += 1
            return _ACCEPTED
        if turn_id in self._closed_set:
            self.dropped_late_events += 1
            return Step(
                (),
                (Diagnostic("output_after_terminal", turn_id, turn_id, self.state),),
                accepted=False,
            )
        return Step(
            (), (Diagnostic("output_without_turn", turn_id, turn_id, self.state),), accepted=False
        )
