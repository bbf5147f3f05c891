"""Resolution of budgets, providers, edge buffers, flow control and the graph hash."""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

from rspp.contracts import (
    BufferStrategy,
    DefaultingSource,
    EdgeBufferPolicy,
    FlowControl,
    LaneFlowModes,
    LaneShedding,
    RecordingPolicy,
)
from rspp.spec._buffering import buffering_audio_edge
from rspp.spec._catalog import PortType
from rspp.spec._graph import Budgets, FrozenMap, ProviderBinding, Sourced, ValueSource, thaw
from rspp.spec._model import BufferOverride, PipelineSpec
from rspp.spec._profile import ExecutionProfile

Modality = Literal["stt", "llm", "tts"]
MODALITIES: tuple[Modality, ...] = ("stt", "llm", "tts")


def _pick(explicit: int | None, default: int) -> Sourced:
    if explicit is not None:
        return Sourced(explicit, ValueSource.SPEC)
    return Sourced(default, ValueSource.PROFILE)


def resolve_budgets(spec: PipelineSpec, profile: ExecutionProfile) -> Budgets:
    b = spec.budgets
    return Budgets(
        turn=_pick(b.turn_ms if b else None, profile.turn_budget_ms),
        node=_pick(b.node_ms if b else None, profile.node_budget_ms),
        path=_pick(b.path_ms if b else None, profile.path_budget_ms),
        edge=_pick(b.edge_ms if b else None, profile.edge_budget_ms),
        provider_timeout=_pick(
            b.provider_timeout_ms if b else None, profile.provider_timeout_ms
        ),
        cancel_grace=_pick(b.cancel_grace_ms if b else None, profile.cancel_grace_ms),
    )


def resolve_providers(
    spec: PipelineSpec, profile: ExecutionProfile, budgets: Budgets, needed: set[str]
) -> tuple[ProviderBinding, ...]:
    out: list[ProviderBinding] = []
    for modality in MODALITIES:
        declared = getattr(spec.providers, modality) if spec.providers else None
        if declared is not None:
            timeout = (
                Sourced(declared.timeout_ms, ValueSource.SPEC)
                if declared.timeout_ms is not None
                else budgets.provider_timeout
            )
            out.append(ProviderBinding(
                modality, declared.primary, tuple(declared.fallbacks), timeout,
                FrozenMap(declared.config), ValueSource.SPEC,
            ))
        elif modality in needed:
            out.append(ProviderBinding(
                modality, profile.default_providers[modality], (), budgets.provider_timeout,
                FrozenMap(), ValueSource.PROFILE,
            ))
    return tuple(out)


def resolve_buffer(
    override: BufferOverride | None, port_type: PortType, profile: ExecutionProfile,
    turn_budget_ms: int, buffering: str | None = None,
) -> EdgeBufferPolicy:
    """An edge's buffer policy: the profile's default for its port type (for audio, as the
    spec's ``transport.buffering`` strategy sets it, F-054), then the spec's ``buffer:``
    override field by field.

    A text edge carries a turn's words (a transcript, the reply's sentences on their way
    to the TTS): they are not stale while their turn may still run, so its default
    time-in-queue bound is the turn budget, not the profile's ``edge_buffer.max_queue_ms``.
    A sentence waiting behind a slow synthesis is spoken; a reply too slow for its turn
    ends in the turn's budget abort, never in a silently shortened reply.
    """
    base = buffering_audio_edge(buffering, profile.audio_edge_buffer) \
        if port_type == PortType.AUDIO else profile.edge_buffer
    if port_type == PortType.TEXT:
        base = msgspec.structs.replace(base, max_queue_ms=turn_budget_ms)
    if override is None:
        return base
    changes: dict[str, object] = {"defaulting_source": DefaultingSource.EXPLICIT_EDGE_CONFIG}
    for name in ("strategy", "max_queue_items", "max_queue_ms", "max_queue_bytes",
                 "max_latency_contribution_ms", "max_block_time_ms", "watermarks",
                 "fairness_key", "sync_drop_policy"):
        value = getattr(override, name)
        if value is not None:
            changes[name] = value
    strategy = changes.get("strategy", base.strategy)
    if strategy == BufferStrategy.BLOCK and "max_block_time_ms" not in changes:
        changes["max_block_time_ms"] = (
            base.max_block_time_ms or profile.edge_buffer.max_block_time_ms
        )
    if strategy != BufferStrategy.BLOCK and "max_block_time_ms" not in changes:
        changes["max_block_time_ms"] = None
    lanes = base.lane_handling
    if isinstance(strategy, BufferStrategy) and strategy != BufferStrategy.BLOCK:
        lanes = msgspec.structs.replace(lanes, DataLane=strategy)
    if override.telemetry_handling is not None:
        lanes = msgspec.structs.replace(lanes, TelemetryLane=override.telemetry_handling)
    changes["lane_handling"] = lanes
    return msgspec.structs.replace(base, **changes)


def resolve_flow_control(
    spec: PipelineSpec, profile: ExecutionProfile
) -> tuple[FlowControl, ValueSource]:
    fc = spec.flow_control
    base = profile.flow_control
    if fc is None:
        return base, ValueSource.PROFILE
    modes = base.mode_by_lane
    if fc.mode_by_lane is not None:
        modes = LaneFlowModes(
            DataLane=fc.mode_by_lane.DataLane or modes.DataLane,
            ControlLane=fc.mode_by_lane.ControlLane or modes.ControlLane,
            TelemetryLane=fc.mode_by_lane.TelemetryLane or modes.TelemetryLane,
        )
    shed = base.shedding_strategy_by_lane
    shed = LaneShedding(
        DataLane=fc.data_shedding or shed.DataLane,
        ControlLane="none",
        TelemetryLane=fc.telemetry_shedding or shed.TelemetryLane,
    )
    return FlowControl(mode_by_lane=modes, watermarks=base.watermarks,
                       shedding_strategy_by_lane=shed), ValueSource.SPEC


def resolve_recording(spec: PipelineSpec, profile: ExecutionProfile) -> RecordingPolicy:
    rec = spec.recording
    if rec is None:
        return profile.recording
    return RecordingPolicy(
        recording_level=rec.level or profile.recording.recording_level,
        allowed_replay_modes=rec.allowed_replay_modes or profile.recording.allowed_replay_modes,
    )


def execution_hash(content: dict[str, object]) -> str:
    """SHA-256 of canonical JSON (sorted keys) of execution-relevant content."""
    def hook(obj: object) -> object:
        if isinstance(obj, FrozenMap):
            return thaw(obj)
        source = getattr(obj, "source", None)
        if isinstance(source, str):  # Condition
            return source
        raise NotImplementedError(type(obj).__name__)

    data = msgspec.json.encode(msgspec.to_builtins(content, enc_hook=hook), order="sorted")
    return hashlib.sha256(data).hexdigest()
