"""Execution profiles; MVP ships ``simple/v1`` only (F-078)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from rspp.contracts import (
    BufferStrategy,
    DataShedding,
    DefaultingSource,
    EdgeBufferPolicy,
    EdgeWatermarks,
    FlowControl,
    FlowMode,
    LaneFlowModes,
    LaneHandling,
    LaneShedding,
    LaneWatermarks,
    RecordingLevel,
    RecordingPolicy,
    ReplayMode,
    TelemetryLaneHandling,
    TelemetryShedding,
    WatermarkThreshold,
)

_S = {"frozen": True, "kw_only": True, "forbid_unknown_fields": True}

#: Profiles that exist in the design but are post-MVP: selecting one is a lint error.
POST_MVP_PROFILES = ("balanced/v1", "aggressive/v1")


class ExecutionProfile(msgspec.Struct, **_S):
    """Defaults for everything a spec leaves out; values carry ``execution_profile_default``."""

    name: Annotated[str, Meta(description="Profile id, e.g. simple/v1.")]
    turn_budget_ms: Annotated[int, Meta(ge=1, description="Whole-turn latency budget.")]
    node_budget_ms: Annotated[int, Meta(ge=1, description="Default per-node budget.")]
    path_budget_ms: Annotated[int, Meta(ge=1, description="Default per-path budget.")]
    edge_budget_ms: Annotated[int, Meta(ge=1, description="Default per-edge budget.")]
    provider_timeout_ms: Annotated[int, Meta(ge=1, description="Provider call timeout.")]
    cancel_grace_ms: Annotated[int, Meta(ge=1, description="Soft-cancel grace window.")]
    audio_edge_buffer: Annotated[EdgeBufferPolicy, Meta(description="Default for audio edges.")]
    edge_buffer: Annotated[EdgeBufferPolicy, Meta(description=(
        "Default for other edges. A text edge's max_queue_ms is the turn budget instead: a "
        "turn's words (a transcript, the reply's sentences waiting for a slow TTS) are not "
        "stale while the turn may run, so a reply is spoken whole or its turn aborts on "
        "the budget (recorded, sent to the client), never shortened in silence."))]
    flow_control: FlowControl
    recording: RecordingPolicy
    merge_rule_id: Annotated[str, Meta(description="Default deterministic merge rule.")]
    merge_rule_version: str
    select_policy: Annotated[str, Meta(description="Default select policy.")]
    default_providers: Annotated[
        dict[str, str], Meta(description="Provider per modality when a spec names none.")
    ]


_LANES = LaneHandling(
    DataLane=BufferStrategy.DROP,
    ControlLane="non_blocking_priority",
    TelemetryLane=TelemetryLaneHandling.BEST_EFFORT_DROP,
)

SIMPLE_V1 = ExecutionProfile(
    name="simple/v1",
    turn_budget_ms=2000,
    node_budget_ms=800,
    path_budget_ms=1500,
    edge_budget_ms=200,
    provider_timeout_ms=1000,
    cancel_grace_ms=75,
    audio_edge_buffer=EdgeBufferPolicy(
        strategy=BufferStrategy.DROP,
        max_queue_items=100,
        max_queue_ms=500,
        max_queue_bytes=256_000,
        max_latency_contribution_ms=100,
        watermarks=EdgeWatermarks(queue_items=WatermarkThreshold(high=75, low=25)),
        lane_handling=_LANES,
        defaulting_source=DefaultingSource.EXECUTION_PROFILE_DEFAULT,
    ),
    edge_buffer=EdgeBufferPolicy(
        strategy=BufferStrategy.BLOCK,
        max_queue_items=256,
        max_queue_ms=1000,
        max_queue_bytes=65_536,
        max_latency_contribution_ms=100,
        max_block_time_ms=50,
        watermarks=EdgeWatermarks(queue_items=WatermarkThreshold(high=192, low=64)),
        lane_handling=_LANES,
        defaulting_source=DefaultingSource.EXECUTION_PROFILE_DEFAULT,
    ),
    flow_control=FlowControl(
        mode_by_lane=LaneFlowModes(
            DataLane=FlowMode.SIGNAL, ControlLane=FlowMode.SIGNAL, TelemetryLane=FlowMode.SIGNAL
        ),
        watermarks=LaneWatermarks(
            DataLane=WatermarkThreshold(high=192, low=64),
            ControlLane=WatermarkThreshold(high=512, low=128),
            TelemetryLane=WatermarkThreshold(high=1024, low=256),
        ),
        shedding_strategy_by_lane=LaneShedding(
            DataLane=DataShedding.DROP, ControlLane="none", TelemetryLane=TelemetryShedding.SAMPLE
        ),
    ),
    recording=RecordingPolicy(
        recording_level=RecordingLevel.L1,
        allowed_replay_modes=(
            ReplayMode.REPLAY_DECISIONS,
            ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS,
        ),
    ),
    merge_rule_id="timestamp",
    merge_rule_version="1.0",
    select_policy="first_healthy",
    default_providers={"stt": "pocketsphinx", "llm": "local", "tts": "espeak"},
)

PROFILES: dict[str, ExecutionProfile] = {SIMPLE_V1.name: SIMPLE_V1}


def profile_problem(name: str) -> tuple[str, str] | None:
    """``(message, hint)`` when ``name`` is not a usable profile, else ``None``."""
    if name in PROFILES:
        return None
    families = {p.split("/")[0] for p in POST_MVP_PROFILES}
    if name in POST_MVP_PROFILES or name.split("/")[0] in families:
        return (
            f"execution profile {name!r} is post-MVP and not available in this release",
            "use `profile: simple/v1` (the only MVP profile)",
        )
    return (f"unknown execution profile {name!r}", f"use one of: {', '.join(sorted(PROFILES))}")
