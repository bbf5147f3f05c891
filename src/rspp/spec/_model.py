"""PipelineSpec authoring types (what a YAML/JSON spec decodes into)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from rspp.contracts import (
    BufferStrategy,
    DataShedding,
    EdgeWatermarks,
    FlowMode,
    Lane,
    RecordingLevel,
    ReplayMode,
    SyncDropPolicy,
    TelemetryLaneHandling,
    TelemetryShedding,
)
from rspp.spec._catalog import PortType

_S = {"frozen": True, "kw_only": True, "forbid_unknown_fields": True, "omit_defaults": True}

NodeId = Annotated[
    str,
    Meta(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Node id: lowercase letters, digits and '_', starting with a letter.",
        examples=["stt", "llm_main"],
    ),
]
PortRef = Annotated[
    str,
    Meta(
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$",
        description="`node.port`; `input.<port>` and `output.<port>` are the transport.",
        examples=["stt.final", "input.audio", "output.audio"],
    ),
]
Ms = Annotated[int, Meta(ge=1, description="Milliseconds (>= 1).")]
UnknownEventAction = Literal["drop", "pass_through", "fail"]
Free = Annotated[
    dict[str, object], Meta(description="Free-form metadata; never changes execution.")
]


class PortDecl(msgspec.Struct, **_S):
    """A port declared by a custom node type."""

    name: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]*$", description="Port name.")]
    type: Annotated[PortType, Meta(description="What flows through the port.")]
    required: bool = True
    multi: Annotated[bool, Meta(description="Input accepts several edges (fan-in).")] = False
    streaming: Annotated[bool, Meta(description="Output emits partial results.")] = False


class PortsDecl(msgspec.Struct, **_S):
    """Typed inputs/outputs of a custom node (F-003)."""

    inputs: tuple[PortDecl, ...] = ()
    outputs: tuple[PortDecl, ...] = ()
    is_async: Annotated[bool, Meta(description="Handler awaits I/O (gets a worker).")] = False


class FallbackSpec(msgspec.Struct, **_S):
    """Activate another node when this one times out or errors (F-007)."""

    node: Annotated[NodeId, Meta(description="Id of the fallback node.")]
    on: Annotated[
        tuple[Literal["timeout", "error"], ...],
        Meta(min_length=1, description="Triggers that activate the fallback."),
    ] = ("timeout", "error")


class NodeSpec(msgspec.Struct, **_S):
    """One node of the graph."""

    id: NodeId
    type: Annotated[
        str,
        Meta(min_length=1, description="Built-in type or a custom type with `ports`.",
             examples=["stt", "tts", "my_company.router"]),
    ]
    params: Annotated[dict[str, object], Meta(description="Type-specific parameters.")] = {}
    scope: Annotated[
        Literal["session", "turn"] | None,
        Meta(description="Lifetime of node state; defaults per node type."),
    ] = None
    cancel_mode: Annotated[
        Literal["soft", "hard"] | None,
        Meta(description="soft: finish the in-flight chunk within the grace window; hard: stop."),
    ] = None
    cancel_grace_ms: Annotated[
        Ms | None,
        Meta(description="Soft cancel: how long the in-flight chunk may take before the node "
                         "is force-stopped; default budgets.cancel_grace_ms."),
    ] = None
    unknown_event_action: Annotated[
        UnknownEventAction | None,
        Meta(description="An input event of a kind the node does not declare: drop (with a "
                         "notice), pass_through (forwarded unprocessed) or fail (node error); "
                         "default the pipeline's unknown_event_action."),
    ] = None
    timeout_ms: Annotated[Ms | None, Meta(description="Node budget; profile default.")] = None
    fallback: FallbackSpec | None = None
    ports: PortsDecl | None = None
    description: str | None = None
    metadata: Free = {}


class BufferOverride(msgspec.Struct, **_S):
    """Edge buffer settings; unset fields come from the execution profile."""

    strategy: BufferStrategy | None = None
    max_queue_items: Ms | None = None
    max_queue_ms: Annotated[Ms | None, Meta(
        description="Time-in-queue bound: older data is shed (max_queue_ms_exceeded); "
                    "default the profile's, and the turn budget on a text edge.")] = None
    max_queue_bytes: Ms | None = None
    max_latency_contribution_ms: Ms | None = None
    max_block_time_ms: Ms | None = None
    watermarks: EdgeWatermarks | None = None
    telemetry_handling: TelemetryLaneHandling | None = None
    telemetry_max_items: Annotated[int, Meta(
        ge=1, description="TelemetryLane bound of this edge (items): telemetry past it is "
                          "shed as telemetry_handling says; default 64.")] | None = None
    control_max_items: Annotated[int, Meta(
        ge=1, description="ControlLane bound of this edge (items): control is never "
                          "dropped, past it each control event displaces the oldest "
                          "queued telemetry, else the oldest data; default 1024.")] | None = None
    fairness_key: str | None = None
    sync_drop_policy: SyncDropPolicy | None = None
    #: flow control of this edge (signal / credit / hybrid, F-145); default the pipeline's
    #: ``flow_control.mode_by_lane.DataLane``
    flow_mode: FlowMode | None = None


class EdgeSpec(msgspec.Struct, **_S):
    """A directed edge between two ports, optionally conditional (F-018)."""

    source: Annotated[PortRef, Meta(description="Source port `node.port`.")] = msgspec.field(
        name="from"
    )
    target: Annotated[PortRef, Meta(description="Target port `node.port`.")] = msgspec.field(
        name="to"
    )
    when: Annotated[
        str | None,
        Meta(description="Condition on event attributes (safe expression language).",
             examples=["confidence < 0.5", "lang in ('en', 'de') and not is_final"]),
    ] = None
    buffer: BufferOverride | None = None
    lane: Annotated[Lane | None, Meta(
        description="The lane this edge queues its events on at the consuming node "
                    "(default: DataLane, ControlLane for a control or vad port). ControlLane: "
                    "served first and never dropped; TelemetryLane: served last and shed "
                    "first (buffer.telemetry_max_items, telemetry_handling); an event a "
                    "node marks ControlLane or TelemetryLane keeps its own lane.")] = None
    description: str | None = None
    metadata: Free = {}


class SubgraphUse(msgspec.Struct, **_S):
    """An instance of a reusable, versioned subgraph (F-019)."""

    id: NodeId
    use: Annotated[
        str,
        Meta(pattern=r"^[a-z][a-z0-9_\-]*@[0-9A-Za-z.\-]+$",
             description="`name@version` of the subgraph.", examples=["transcribe@1.0.0"]),
    ]
    params: Annotated[
        dict[str, dict[str, object]],
        Meta(description="Per inner node id: param overrides."),
    ] = {}
    description: str | None = None


class ProviderSpec(msgspec.Struct, **_S):
    """Provider choice for one modality with ordered fallbacks."""

    primary: Annotated[str, Meta(min_length=1, examples=["pocketsphinx", "openai"])]
    fallbacks: tuple[str, ...] = ()
    timeout_ms: Ms | None = None
    config: Annotated[
        dict[str, object], Meta(description="Adapter config; secrets as env:// or file:// refs.")
    ] = {}


class ProvidersSpec(msgspec.Struct, **_S):
    """Providers by modality."""

    stt: ProviderSpec | None = None
    llm: ProviderSpec | None = None
    tts: ProviderSpec | None = None


class BudgetsSpec(msgspec.Struct, **_S):
    """Latency budgets; unset values come from the execution profile."""

    turn_ms: Ms | None = None
    node_ms: Ms | None = None
    path_ms: Ms | None = None
    edge_ms: Ms | None = None
    provider_timeout_ms: Ms | None = None
    cancel_grace_ms: Ms | None = None


class LaneModes(msgspec.Struct, **_S):
    DataLane: FlowMode | None = None
    ControlLane: FlowMode | None = None
    TelemetryLane: FlowMode | None = None


class FlowControlSpec(msgspec.Struct, **_S):
    """Flow-control overrides per lane."""

    mode_by_lane: LaneModes | None = None
    data_shedding: DataShedding | None = None
    telemetry_shedding: TelemetryShedding | None = None


class RecordingSpec(msgspec.Struct, **_S):
    level: RecordingLevel | None = None
    allowed_replay_modes: tuple[ReplayMode, ...] | None = None


class SessionSloSpec(msgspec.Struct, **_S):
    """Bounds every session must meet on its own (F-105: isolation under pooling), ms.

    ``rspp slo report --per-session --spec`` checks each recorded session against them
    and names the sessions that break one: an aggregate percentile over many sessions
    can hide one starved session. Unset: not checked.
    """

    pool_wait_max_ms: Annotated[int, Meta(ge=1, description="The longest any one turn of a "
                                          "session may wait in total for shared execution-"
                                          "pool slots (its OR-02 `pool_wait_ms`).")] | None = None
    first_output_p95_ms: Ms | None = None
    end_to_end_p95_ms: Ms | None = None


class SloSpec(msgspec.Struct, **_S):
    """The pipeline's own quality-gate thresholds (NF-001, NF-003), milliseconds.

    ``rspp slo report --spec`` gates recorded timelines on them; unset ones keep the
    simple/v1 profile's (the MVP bounds: turn open p95 120, first output p95 1500, cancel
    fence p95 150, end to end p50 1500 and p95 2000). ``session``: bounds each session
    must meet on its own (``rspp slo report --per-session``).
    """

    turn_open_p95_ms: Ms | None = None
    first_output_p95_ms: Ms | None = None
    cancel_fence_p95_ms: Ms | None = None
    cancel_fence_p99_ms: Ms | None = None
    end_to_end_p50_ms: Ms | None = None
    end_to_end_p95_ms: Ms | None = None
    session: SessionSloSpec | None = None


class OverloadSpec(msgspec.Struct, **_S):
    """Automatic degrade posture under sustained shedding (F-048, NF-006).

    When ``shed_threshold`` shed decisions fall within ``window_ms`` the session enters
    its degraded posture (a ``degrade`` signal) and the next turns use the providers of
    ``degrade_providers``; after ``recover_after_ms`` without a shed it recovers.
    """

    shed_threshold: Annotated[int, Meta(ge=1, description="Sheds within window_ms that "
                                                          "enter the degraded posture.")] = 3
    window_ms: Ms = 1000
    recover_after_ms: Ms = 2000
    degrade_providers: Annotated[
        dict[Literal["stt", "llm", "tts"], str],
        Meta(description="Modality -> provider used while degraded; one of that "
                         "modality's primary/fallbacks (e.g. a cheaper fallback).",
             examples=[{"llm": "local-responder"}]),
    ] = {}


class TurnsSpec(msgspec.Struct, **_S):
    """Turn arbitration policy (F-140); not declared: preempt, late events ignored."""

    overlap: Annotated[
        Literal["preempt", "queue", "reject"],
        Meta(description="A new utterance while a turn is Active: preempt (cancel it, "
                         "open the new turn), queue (open it when the turn closes; the "
                         "newest one waits) or reject (drop the proposal)."),
    ] = "preempt"
    late_events: Annotated[
        Literal["diagnostics", "drop"],
        Meta(description="An output of an already closed turn: diagnostics (a recorded "
                         "reject naming the turn) or drop (recorded once, then silent)."),
    ] = "diagnostics"


JitterProfileName = Literal["low_latency", "balanced", "robust", "accuracy"]
BufferingStrategy = Literal["latency_first", "accuracy_first"]
TransportKind = Literal["websocket", "telephony", "webrtc", "livekit"]
JitterMs = Annotated[int, Meta(ge=0, le=2000, description="Milliseconds (0-2000).")]


class JitterSpec(msgspec.Struct, **_S):
    """Ingress jitter buffer and packet-loss handling of the live transports (F-087).

    Unset fields come from ``profile`` (else the transport's default profile:
    ``balanced`` for WebSocket, ``robust`` for telephony, ``low_latency`` for WebRTC
    and LiveKit, whose SDKs buffer RTP themselves). See docs/transports/jitter.md.
    """

    profile: Annotated[
        JitterProfileName | None,
        Meta(description="Named defaults: low_latency, balanced, robust or accuracy."),
    ] = None
    mode: Annotated[
        Literal["adaptive", "fixed"] | None,
        Meta(description="adaptive: the depth grows on late frames and shrinks when the "
                         "network is steady, within min_ms..max_ms; fixed: target_ms."),
    ] = None
    target_ms: Annotated[JitterMs | None, Meta(description="Starting buffer depth: how "
                                               "much audio is held behind a missing "
                                               "frame before it is declared lost.")] = None
    min_ms: JitterMs | None = None
    max_ms: JitterMs | None = None
    reorder_window_frames: Annotated[
        int,
        Meta(ge=0, le=256, description="Frames a frame may arrive ahead of a missing one "
                                       "and still be put back in order."),
    ] | None = None
    loss: Annotated[
        Literal["conceal", "drop"] | None,
        Meta(description="A lost frame: conceal it (audio of the same length) or drop it "
                         "with a discontinuity marker on the next frame."),
    ] = None
    conceal: Annotated[
        Literal["silence", "repeat_fade"] | None,
        Meta(description="Concealment audio: silence, or the last frame repeated with a "
                         "fade to silence."),
    ] = None
    conceal_max_frames: Annotated[
        int,
        Meta(ge=0, le=50, description="Most frames of one gap concealed; the rest of a "
                                      "longer gap is dropped with a discontinuity marker."),
    ] | None = None


class TransportSpec(msgspec.Struct, **_S):
    """Live-transport behaviour of the pipeline (``rspp serve``)."""

    jitter: Annotated[JitterSpec | None, Meta(description="Every live transport.")] = None
    jitter_by_transport: Annotated[
        dict[TransportKind, JitterSpec],
        Meta(description="Per transport, over ``jitter``.",
             examples=[{"telephony": {"profile": "robust"}}]),
    ] = {}
    buffering: Annotated[
        BufferingStrategy | None,
        Meta(description="Audio buffering strategy (F-054). latency_first: shallow "
                         "ingress jitter buffers (low_latency) and audio edges (but those "
                         "into output) that shed their oldest frames past 100 ms queued; "
                         "accuracy_first: deep jitter buffers (accuracy) and audio edges "
                         "that never shed (block, "
                         "10 s bounds). ``jitter`` fields and an edge's ``buffer:`` still "
                         "apply over it. Default: neither (the profile's defaults)."),
    ] = None
    commit_ms: Annotated[
        int,
        Meta(ge=0, le=10_000,
             description="Commit point of a cancel (F-039): on a barge-in or cancel, this "
                         "many ms of the reply after the play position are committed and "
                         "still play (never retracted); only the audio after them is "
                         "suppressed. 0 (default): everything not yet played is dropped."),
    ] = 0


class PipelineSpec(msgspec.Struct, weakref=True, **_S):
    """A versioned pipeline: nodes, edges, providers and overrides of the profile."""

    name: Annotated[
        str, Meta(pattern=r"^[a-z][a-z0-9_\-]*$", examples=["voice-assistant"],
                  description="Pipeline name (registry key).")
    ]
    version: Annotated[
        str, Meta(pattern=r"^[0-9A-Za-z][0-9A-Za-z.\-]*$", examples=["1.0.0"],
                  description="Version; a published version is immutable.")
    ]
    profile: Annotated[str, Meta(description="Execution profile (MVP: simple/v1).")] = "simple/v1"
    template: Annotated[
        Literal["voice_assistant"] | None,
        Meta(description="Simple mode: expand a built-in template (nodes/edges may be omitted)."),
    ] = None
    description: str | None = None
    metadata: Free = {}
    providers: ProvidersSpec | None = None
    nodes: tuple[NodeSpec, ...] = ()
    edges: tuple[EdgeSpec, ...] = ()
    subgraphs: tuple[SubgraphUse, ...] = ()
    budgets: BudgetsSpec | None = None
    flow_control: FlowControlSpec | None = None
    recording: RecordingSpec | None = None
    slo: SloSpec | None = None
    overload: OverloadSpec | None = None
    turns: TurnsSpec | None = None
    transport: TransportSpec | None = None
    unknown_event_action: Annotated[
        UnknownEventAction,
        Meta(description="Default policy for input events of a kind a node does not declare "
                         "(F-020): drop with a notice, pass_through, or fail; per node "
                         "`unknown_event_action` overrides it."),
    ] = "drop"
