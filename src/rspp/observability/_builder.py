"""TimelineBuilder: build contract-valid timelines by hand (tests, examples, docs).

A small harness for tests of the recorder consumers (SLO gates, comparator,
viewer): it stamps ``runtime_sequence`` and ``runtime_timestamp_ms`` like the
kernel does, fills every required envelope field, and composes a whole turn
(ingress audio, proposal, admission, ``turn_open``, plan, output, playback,
terminal, OR-02 evidence, ``close``) with chosen latencies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from rspp.contracts import (
    SCHEMA_VERSION,
    AdaptiveAction,
    AudioRef,
    BufferStrategy,
    CancelScopeKind,
    ControlSignal,
    DataShedding,
    DecisionOutcome,
    DefaultingSource,
    DeterminismContext,
    EdgeBufferPolicy,
    EdgeWatermarks,
    Emitter,
    EventRecord,
    EventScope,
    FlowControl,
    FlowMode,
    Lane,
    LaneFlowModes,
    LaneHandling,
    LaneShedding,
    LaneWatermarks,
    MediaTime,
    OutcomeEmitter,
    OutcomeKind,
    OutcomePhase,
    OutcomeScope,
    PayloadClass,
    RecordingLevel,
    RecordingPolicy,
    ReplayMode,
    ResolvedTurnPlan,
    SignalName,
    SnapshotProvenance,
    TelemetryLaneHandling,
    TelemetryShedding,
    TextPayload,
    TurnBudgets,
    WatermarkThreshold,
    canonical_json,
    sha256_hex,
)
from rspp.observability._evidence import (
    CancelMarkers,
    OR02Evidence,
    ProviderInvocationOutcome,
)
from rspp.observability._exporter import to_line
from rspp.observability._recorder import TIMELINE_KINDS, BufferedItem

__all__ = ["TimelineBuilder", "build_plan"]

_SNAPSHOTS = SnapshotProvenance(
    routing_view_snapshot="rv-1", admission_policy_snapshot="ap-1",
    abi_compatibility_snapshot="abi-1", version_resolution_snapshot="vr-1",
    policy_resolution_snapshot="pr-1", provider_health_snapshot="ph-1",
)
_DETERMINISM = DeterminismContext(seed=7, ordering_markers=("runtime_sequence",),
                                  merge_rule_id="first_wins", merge_rule_version="v1.0",
                                  nondeterministic_inputs=())
_WM = WatermarkThreshold(high=8, low=2)


def build_plan(turn_id: str, pipeline_version: str, *, authority_epoch: int = 1,
               provider_bindings: dict[str, str] | None = None,
               turn_budget_ms: int = 5000,
               recording_level: RecordingLevel = RecordingLevel.L2) -> ResolvedTurnPlan:
    """A complete, valid ResolvedTurnPlan whose ``plan_hash`` is its canonical SHA-256."""
    edge = EdgeBufferPolicy(
        strategy=BufferStrategy.DROP, max_queue_items=64, max_queue_ms=500,
        max_queue_bytes=1 << 20, max_latency_contribution_ms=100,
        watermarks=EdgeWatermarks(queue_items=_WM),
        lane_handling=LaneHandling(DataLane=BufferStrategy.DROP,
                                   ControlLane="non_blocking_priority",
                                   TelemetryLane=TelemetryLaneHandling.DROP),
        defaulting_source=DefaultingSource.EXECUTION_PROFILE_DEFAULT,
    )
    fields: dict[str, Any] = {
        "turn_id": turn_id, "pipeline_version": pipeline_version,
        "graph_definition_ref": f"graph:{pipeline_version}", "execution_profile": "simple/v1",
        "authority_epoch": authority_epoch,
        "budgets": TurnBudgets(turn_budget_ms=turn_budget_ms, node_budget_ms_default=1000,
                               path_budget_ms_default=2000, edge_budget_ms_default=200),
        "provider_bindings": provider_bindings or {"stt": "fake-stt", "llm": "fake-llm",
                                                   "tts": "fake-tts"},
        "edge_buffer_policies": {"stt->llm": edge},
        "flow_control": FlowControl(
            mode_by_lane=LaneFlowModes(DataLane=FlowMode.SIGNAL, ControlLane=FlowMode.SIGNAL,
                                       TelemetryLane=FlowMode.SIGNAL),
            watermarks=LaneWatermarks(DataLane=_WM, ControlLane=_WM, TelemetryLane=_WM),
            shedding_strategy_by_lane=LaneShedding(DataLane=DataShedding.DROP,
                                                   ControlLane="none",
                                                   TelemetryLane=TelemetryShedding.DROP)),
        "allowed_adaptive_actions": (AdaptiveAction.RETRY,),
        "snapshot_provenance": _SNAPSHOTS,
        "recording_policy": RecordingPolicy(recording_level=recording_level,
                                            allowed_replay_modes=(ReplayMode.REPLAY_DECISIONS,)),
        "determinism": _DETERMINISM,
    }
    plan_hash = sha256_hex(canonical_json(fields))
    return ResolvedTurnPlan(plan_hash=plan_hash, **fields)


class TimelineBuilder:
    """Appends records of one session with kernel-like sequence and time stamps."""

    def __init__(self, session_id: str = "s1", pipeline_version: str = "assistant@1.0.0",
                 *, start_ms: int = 1_000, wall_offset_ms: int = 1_700_000_000_000) -> None:
        self.session_id = session_id
        self.pipeline_version = pipeline_version
        self.now_ms = start_ms
        self._wall = wall_offset_ms
        self._seq = 0
        self._ids = 0
        #: authority epoch stamped on turn-scoped and ControlLane records
        self.epoch = 1
        self.items: list[tuple[msgspec.Struct, object | None]] = []

    # -- low level ------------------------------------------------------
    def advance(self, ms: int) -> TimelineBuilder:
        self.now_ms += ms
        return self

    def _env(self, turn_id: str | None, lane: Lane, payload_class: PayloadClass,
             transport_sequence: int | None = None) -> dict[str, Any]:
        self._seq += 1
        self._ids += 1
        return {"schema_version": SCHEMA_VERSION,
                "event_scope": EventScope.TURN if turn_id else EventScope.SESSION,
                "session_id": self.session_id, "pipeline_version": self.pipeline_version,
                "event_id": f"{self.session_id}-e{self._ids}", "lane": lane,
                "transport_sequence": transport_sequence, "runtime_sequence": self._seq,
                "runtime_timestamp_ms": self.now_ms,
                "wall_clock_timestamp_ms": self._wall + self.now_ms, "payload_class": payload_class,
                "turn_id": turn_id,
                "authority_epoch": self.epoch if turn_id or lane == Lane.CONTROL else None}

    def add(self, record: msgspec.Struct, payload: object | None = None) -> msgspec.Struct:
        self.items.append((record, payload))
        return record

    def signal(self, name: SignalName, emitted_by: Emitter, turn_id: str | None = None,
               **fields: Any) -> ControlSignal:
        env = self._env(turn_id, Lane.CONTROL, PayloadClass.METADATA)
        env.update(fields)
        record = ControlSignal(signal=name, emitted_by=emitted_by, **env)
        self.add(record)
        return record

    def event(self, turn_id: str | None = None, *, lane: Lane = Lane.DATA,
              payload_class: PayloadClass = PayloadClass.TEXT_RAW, payload: object | None = None,
              transport_sequence: int | None = None, **fields: Any) -> EventRecord:
        env = self._env(turn_id, lane, payload_class, transport_sequence)
        if payload_class == PayloadClass.AUDIO_RAW:
            env["media_time"] = MediaTime(pts_ms=self.now_ms)
        env.update(fields)
        record = EventRecord(**env)
        self.add(record, payload)
        return record

    def outcome(self, kind: OutcomeKind, reason: str, turn_id: str | None = None,
                **fields: Any) -> DecisionOutcome:
        self._ids += 1
        record = DecisionOutcome(
            outcome_kind=kind, phase=fields.pop("phase", OutcomePhase.PRE_TURN),
            scope=fields.pop("scope", OutcomeScope.SESSION), session_id=self.session_id,
            event_id=f"{self.session_id}-e{self._ids}", runtime_timestamp_ms=self.now_ms,
            wall_clock_timestamp_ms=self._wall + self.now_ms,
            emitted_by=fields.pop("emitted_by", OutcomeEmitter.RK_25), reason=reason,
            turn_id=turn_id, **fields)
        self.add(record)
        return record

    # -- a whole turn ---------------------------------------------------
    def turn(self, turn_id: str, *, decision_ms: int = 10, first_output_ms: int = 300,
             playback_ms: int = 100, ingress_frames: int = 3, epoch: int = 1,
             text: str = "hello there", terminal: str = "commit",
             cancel_fence_ms: int | None = None, provider_bindings: dict[str, str] | None = None,
             with_evidence: bool = True, audio_ref: bool = False,
             pool_wait_ms: int | None = None) -> ResolvedTurnPlan:
        """Emit one accepted turn; ``cancel_fence_ms`` makes it a barge-in abort;
        ``pool_wait_ms``: its evidence's wait for shared pool slots (a pooled runtime)."""
        self.epoch = epoch
        for i in range(ingress_frames):
            self.event(None, payload_class=PayloadClass.AUDIO_RAW, transport_sequence=i,
                       node_id="ingress")
            self.advance(20)
        proposed_ms = self.now_ms
        self.signal(SignalName.TURN_OPEN_PROPOSED, Emitter.RK_02)
        self.outcome(OutcomeKind.ADMIT, "admitted", turn_id=None)
        self.advance(decision_ms)
        open_ms = self.now_ms
        self.signal(SignalName.TURN_OPEN, Emitter.RK_03, turn_id, authority_epoch=epoch)
        plan = build_plan(turn_id, self.pipeline_version, authority_epoch=epoch,
                          provider_bindings=provider_bindings)
        self.add(plan)
        self.advance(first_output_ms)
        self.event(turn_id, node_id="llm", payload=TextPayload(text=text, is_final=True,
                                                                revision=0))
        ref = AudioRef(sha256="0" * 64, length=640, sample_rate_hz=16000, channels=1)
        self.event(turn_id, node_id="tts", payload_class=PayloadClass.AUDIO_RAW,
                   payload=ref if audio_ref else None)
        self.signal(SignalName.OUTPUT_ACCEPTED, Emitter.RK_22, turn_id, authority_epoch=epoch)
        self.advance(playback_ms)
        self.signal(SignalName.PLAYBACK_STARTED, Emitter.RK_22, turn_id, authority_epoch=epoch)
        cancel = None
        if cancel_fence_ms is not None:
            self.advance(50)
            cancel_ms = self.now_ms
            self.signal(SignalName.CANCEL, Emitter.RK_16, turn_id, scope=CancelScopeKind.TURN,
                        reason="barge_in")
            self.advance(cancel_fence_ms)
            self.signal(SignalName.PLAYBACK_CANCELLED, Emitter.RK_22, turn_id)
            cancel = CancelMarkers(scope=CancelScopeKind.TURN, reason="barge_in",
                                   cancel_accepted_ms=cancel_ms,
                                   cancel_fence_applied_ms=self.now_ms)
            terminal = "abort"
        self.advance(5)
        terminal_ms = self.now_ms
        reason = "cancelled" if cancel is not None else (None if terminal == "commit"
                                                         else "provider_error")
        if with_evidence:
            self.add(OR02Evidence(
                or02_evidence_schema_version="or02/v1",
                session_id=self.session_id, turn_id=turn_id,
                pipeline_version=self.pipeline_version, plan_hash=plan.plan_hash,
                authority_epoch_at_open=epoch, authority_epoch_at_terminal=epoch,
                admission_outcome=OutcomeKind.ADMIT, admission_reason="admitted",
                snapshot_refs=_SNAPSHOTS, determinism=_DETERMINISM,
                turn_open_proposed_ms=proposed_ms, turn_open_ms=open_ms,
                terminal_ms=terminal_ms, terminal_signal="commit" if terminal == "commit"
                else "abort", abort_reason=reason,
                provider_invocations=tuple(
                    ProviderInvocationOutcome(provider_invocation_id=f"{turn_id}-{m}",
                                              modality=m, provider_id=p, outcome="ok")
                    for m, p in sorted(plan.provider_bindings.items())),
                recording_level=plan.recording_policy.recording_level, cancel=cancel,
                pool_wait_ms=pool_wait_ms,
                runtime_timestamp_ms=self.now_ms, wall_clock_timestamp_ms=self._wall + self.now_ms,
            ))
        if terminal == "commit":
            self.signal(SignalName.COMMIT, Emitter.RK_03, turn_id)
        else:
            self.signal(SignalName.ABORT, Emitter.RK_03, turn_id, reason=reason)
        self.advance(1)
        self.signal(SignalName.CLOSE, Emitter.RK_03, turn_id)
        self.advance(100)
        return plan

    # -- output ---------------------------------------------------------
    def lines(self) -> list[dict[str, object]]:
        """Timeline lines ``{"kind", "record", "payload"?}`` as builtins."""
        return [to_line(BufferedItem(0, TIMELINE_KINDS[type(r)], r, p)) for r, p in self.items]

    def write(self, path: str | Path) -> Path:
        """Write the timeline as JSON Lines and return the path."""
        target = Path(path)
        encoder = msgspec.json.Encoder()
        target.write_bytes(b"".join(encoder.encode(line) + b"\n" for line in self.lines()))
        return target
