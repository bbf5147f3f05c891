"""Closed vocabularies of the wire contract (enums mirror the reference schema)."""

from __future__ import annotations

from enum import StrEnum


class Lane(StrEnum):
    DATA = "DataLane"
    CONTROL = "ControlLane"
    TELEMETRY = "TelemetryLane"


class EventScope(StrEnum):
    SESSION = "session"
    TURN = "turn"


class PayloadClass(StrEnum):
    PII = "PII"
    PHI = "PHI"
    AUDIO_RAW = "audio_raw"
    TEXT_RAW = "text_raw"
    DERIVED_SUMMARY = "derived_summary"
    METADATA = "metadata"


class Emitter(StrEnum):
    """Module ids that own control signals (``emitted_by``)."""

    RK_02 = "RK-02"  # turn proposal / segmentation
    RK_03 = "RK-03"  # turn lifecycle arbiter
    RK_06 = "RK-06"  # barge-in / interruption detector
    RK_11 = "RK-11"  # provider invocation controller
    RK_12 = "RK-12"  # edge buffers
    RK_13 = "RK-13"  # lane scheduler / watermarks
    RK_14 = "RK-14"  # flow control
    RK_15 = "RK-15"  # sync / discontinuity
    RK_16 = "RK-16"  # cancellation
    RK_17 = "RK-17"  # budgets
    RK_22 = "RK-22"  # egress / output
    RK_23 = "RK-23"  # transport connection lifecycle
    RK_24 = "RK-24"  # authority guard
    RK_25 = "RK-25"  # local admission
    OR_02 = "OR-02"  # timeline recorder
    CP_05 = "CP-05"  # control-plane admission
    CP_07 = "CP-07"  # leases
    CP_08 = "CP-08"  # routing / migration


class SignalName(StrEnum):
    TURN_OPEN_PROPOSED = "turn_open_proposed"
    TURN_OPEN = "turn_open"
    COMMIT = "commit"
    ABORT = "abort"
    CLOSE = "close"
    BARGE_IN = "barge_in"
    STOP = "stop"
    CANCEL = "cancel"
    WATERMARK = "watermark"
    BUDGET_WARNING = "budget_warning"
    BUDGET_EXHAUSTED = "budget_exhausted"
    DEGRADE = "degrade"
    FALLBACK = "fallback"
    DISCONTINUITY = "discontinuity"
    DROP_NOTICE = "drop_notice"
    FLOW_XOFF = "flow_xoff"
    FLOW_XON = "flow_xon"
    CREDIT_GRANT = "credit_grant"
    PROVIDER_ERROR = "provider_error"
    CIRCUIT_EVENT = "circuit_event"
    PROVIDER_SWITCH = "provider_switch"
    LEASE_ISSUED = "lease_issued"
    LEASE_ROTATED = "lease_rotated"
    MIGRATION_START = "migration_start"
    MIGRATION_FINISH = "migration_finish"
    SESSION_HANDOFF = "session_handoff"
    ADMIT = "admit"
    REJECT = "reject"
    DEFER = "defer"
    SHED = "shed"
    STALE_EPOCH_REJECT = "stale_epoch_reject"
    DEAUTHORIZED_DRAIN = "deauthorized_drain"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"
    ENDED = "ended"
    SILENCE = "silence"
    STALL = "stall"
    OUTPUT_ACCEPTED = "output_accepted"
    PLAYBACK_STARTED = "playback_started"
    PLAYBACK_COMPLETED = "playback_completed"
    PLAYBACK_CANCELLED = "playback_cancelled"
    RECORDING_LEVEL_DOWNGRADED = "recording_level_downgraded"


class CancelScopeKind(StrEnum):
    """Values of a control signal's ``scope`` (the cancellation tree levels)."""

    SESSION = "session"
    TURN = "turn"
    NODE = "node"
    PROVIDER_INVOCATION = "provider_invocation"


class TurnState(StrEnum):
    IDLE = "Idle"
    OPENING = "Opening"
    ACTIVE = "Active"
    TERMINAL = "Terminal"
    CLOSED = "Closed"


class TransitionTrigger(StrEnum):
    TURN_OPEN_PROPOSED = "turn_open_proposed"
    TURN_OPEN = "turn_open"
    COMMIT = "commit"
    ABORT = "abort"
    CLOSE = "close"
    REJECT = "reject"
    DEFER = "defer"
    STALE_EPOCH_REJECT = "stale_epoch_reject"
    DEAUTHORIZED_DRAIN = "deauthorized_drain"


class OutcomeKind(StrEnum):
    ADMIT = "admit"
    REJECT = "reject"
    DEFER = "defer"
    SHED = "shed"
    STALE_EPOCH_REJECT = "stale_epoch_reject"
    DEAUTHORIZED_DRAIN = "deauthorized_drain"


class OutcomePhase(StrEnum):
    PRE_TURN = "pre_turn"
    SCHEDULING_POINT = "scheduling_point"
    ACTIVE_TURN = "active_turn"


class OutcomeScope(StrEnum):
    TENANT = "tenant"
    SESSION = "session"
    TURN = "turn"
    EDGE_ENQUEUE = "edge_enqueue"
    EDGE_DEQUEUE = "edge_dequeue"
    NODE_DISPATCH = "node_dispatch"


class OutcomeEmitter(StrEnum):
    RK_24 = "RK-24"
    RK_25 = "RK-25"
    CP_05 = "CP-05"


class BufferStrategy(StrEnum):
    BLOCK = "block"
    DROP = "drop"
    MERGE = "merge"
    SAMPLE = "sample"
    LATEST_ONLY = "latest_only"


class TelemetryLaneHandling(StrEnum):
    DROP = "drop"
    SAMPLE = "sample"
    BEST_EFFORT_DROP = "best_effort_drop"


class DefaultingSource(StrEnum):
    EXPLICIT_EDGE_CONFIG = "explicit_edge_config"
    EXECUTION_PROFILE_DEFAULT = "execution_profile_default"


class SyncGroupBy(StrEnum):
    SYNC_ID = "sync_id"
    EVENT_ID = "event_id"
    CUSTOM = "custom"


class SyncPolicy(StrEnum):
    ATOMIC_DROP = "atomic_drop"
    DROP_WITH_DISCONTINUITY = "drop_with_discontinuity"
    NO_SYNC = "no_sync"


class SyncScope(StrEnum):
    EDGE_LOCAL = "edge_local"
    PLAN_WIDE = "plan_wide"


class FlowMode(StrEnum):
    SIGNAL = "signal"
    CREDIT = "credit"
    HYBRID = "hybrid"


class DataShedding(StrEnum):
    DROP = "drop"
    MERGE = "merge"
    LATEST_ONLY = "latest_only"
    DEGRADE = "degrade"
    FALLBACK = "fallback"


class TelemetryShedding(StrEnum):
    DROP = "drop"
    SAMPLE = "sample"


class AdaptiveAction(StrEnum):
    RETRY = "retry"
    PROVIDER_SWITCH = "provider_switch"
    DEGRADE = "degrade"
    FALLBACK = "fallback"


class RecordingLevel(StrEnum):
    L0 = "L0"
    L1 = "L1"
    L2 = "L2"


class ReplayMode(StrEnum):
    RE_SIMULATE_NODES = "re_simulate_nodes"
    PLAYBACK_RECORDED_PROVIDER_OUTPUTS = "playback_recorded_provider_outputs"
    REPLAY_DECISIONS = "replay_decisions"
    RECOMPUTE_DECISIONS = "recompute_decisions"


class NondeterministicSource(StrEnum):
    EXTERNAL_CALL = "external_call"
    SYSTEM_TIME = "system_time"
    RANDOM = "random"
    OPERATOR_OVERRIDE = "operator_override"
    OTHER = "other"
