"""The frozen per-turn plan (kind ``resolved_turn_plan``) and its parts."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from rspp.contracts._enums import (
    AdaptiveAction,
    BufferStrategy,
    DataShedding,
    DefaultingSource,
    FlowMode,
    NondeterministicSource,
    RecordingLevel,
    ReplayMode,
    SyncGroupBy,
    SyncPolicy,
    SyncScope,
    TelemetryLaneHandling,
    TelemetryShedding,
)
from rspp.contracts._types import NonEmptyStr, NonNegInt, PosInt, RuleVersion, Sha256Hex


class WatermarkThreshold(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    high: PosInt
    low: NonNegInt


class EdgeWatermarks(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """At least one of the two thresholds is set."""

    queue_items: WatermarkThreshold | None = None
    queue_ms: WatermarkThreshold | None = None


class LaneHandling(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    DataLane: BufferStrategy
    ControlLane: Literal["non_blocking_priority"]
    TelemetryLane: TelemetryLaneHandling


class SyncDropPolicy(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """``group_by`` is required unless ``no_sync``; ``sync_domain`` for discontinuity."""

    policy: SyncPolicy
    scope: SyncScope
    group_by: SyncGroupBy | None = None
    sync_domain: NonEmptyStr | None = None


class EdgeBufferPolicy(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Bounds, strategy and lane handling of one edge; ``block`` needs ``max_block_time_ms``."""

    strategy: BufferStrategy
    max_queue_items: PosInt
    max_queue_ms: PosInt
    max_queue_bytes: PosInt
    max_latency_contribution_ms: PosInt
    watermarks: EdgeWatermarks
    lane_handling: LaneHandling
    defaulting_source: DefaultingSource
    max_block_time_ms: PosInt | None = None
    fairness_key: NonEmptyStr | None = None
    sync_drop_policy: SyncDropPolicy | None = None


class NodeExecutionPolicy(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    concurrency_limit: NonNegInt | None = None
    fairness_key: NonEmptyStr | None = None


class TurnBudgets(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    turn_budget_ms: PosInt
    node_budget_ms_default: PosInt
    path_budget_ms_default: PosInt
    edge_budget_ms_default: PosInt


class LaneFlowModes(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    DataLane: FlowMode
    ControlLane: FlowMode
    TelemetryLane: FlowMode


class LaneWatermarks(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    DataLane: WatermarkThreshold
    ControlLane: WatermarkThreshold
    TelemetryLane: WatermarkThreshold


class LaneShedding(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    DataLane: DataShedding
    ControlLane: Literal["none"]
    TelemetryLane: TelemetryShedding


class FlowControl(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    mode_by_lane: LaneFlowModes
    watermarks: LaneWatermarks
    shedding_strategy_by_lane: LaneShedding


class SnapshotProvenance(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Ids of the six versioned snapshots a plan was resolved from."""

    routing_view_snapshot: NonEmptyStr
    admission_policy_snapshot: NonEmptyStr
    abi_compatibility_snapshot: NonEmptyStr
    version_resolution_snapshot: NonEmptyStr
    policy_resolution_snapshot: NonEmptyStr
    provider_health_snapshot: NonEmptyStr


class RecordingPolicy(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    recording_level: RecordingLevel
    allowed_replay_modes: Annotated[tuple[ReplayMode, ...], Meta(min_length=1)]


class NondeterministicInput(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    input_key: NonEmptyStr
    source: NondeterministicSource
    evidence_ref: NonEmptyStr


class DeterminismContext(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Seed, ordering markers, merge rule and captured nondeterministic inputs."""

    seed: NonNegInt
    ordering_markers: Annotated[tuple[NonEmptyStr, ...], Meta(min_length=1)]
    merge_rule_id: NonEmptyStr
    merge_rule_version: RuleVersion
    # Required on the wire (even when empty), so no default: ``omit_defaults`` would drop it.
    nondeterministic_inputs: tuple[NondeterministicInput, ...]
    ordering_marker: str | None = None


class HandoffEdge(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Streaming handoff thresholds for one stage (STT->LLM or LLM->TTS)."""

    enabled: bool | None = None
    min_partial_chars: PosInt | None = None
    trigger_on_punctuation: bool | None = None
    max_partial_age_ms: PosInt | None = None
    max_pending_revisions: PosInt | None = None
    max_pending_segments: PosInt | None = None
    coalesce_latest_only: bool | None = None
    emit_flow_control_signals: bool | None = None
    degrade_on_threshold_breach: bool | None = None


class StreamingHandoff(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    enabled: bool | None = None
    stt_to_llm: HandoffEdge | None = None
    llm_to_tts: HandoffEdge | None = None


class ResolvedTurnPlan(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Immutable plan materialised at ``turn_open``.

    ``plan_hash`` is the SHA-256 of its canonical form.
    """

    turn_id: NonEmptyStr
    pipeline_version: NonEmptyStr
    plan_hash: Sha256Hex
    graph_definition_ref: NonEmptyStr
    execution_profile: NonEmptyStr
    authority_epoch: NonNegInt
    budgets: TurnBudgets
    provider_bindings: dict[str, NonEmptyStr]
    edge_buffer_policies: Annotated[dict[str, EdgeBufferPolicy], Meta(min_length=1)]
    flow_control: FlowControl
    allowed_adaptive_actions: tuple[AdaptiveAction, ...]
    snapshot_provenance: SnapshotProvenance
    recording_policy: RecordingPolicy
    determinism: DeterminismContext
    node_execution_policies: dict[str, NodeExecutionPolicy] | None = None
    streaming_handoff: StreamingHandoff | None = None
