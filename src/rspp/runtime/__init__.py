"""The RSPP kernel: session actor, graph executor, edges and lanes, node host.

Public surface (Kernel I): :class:`Node` / :class:`NodeContext` (node API),
:class:`NodeRegistry` (type name -> class, entry points ``rspp.nodes``),
:class:`RuntimeGraph` / :class:`GraphBuilder` (executor view of a compiled
``GraphDefinition``; ``RuntimeGraph.from_definition(gd)``), :class:`SessionActor`
(one running session), :class:`Runtime` (many sessions and versions),
:class:`EdgeBuffer` / :class:`BufferConfig` (bounded lane-aware edge queues),
:class:`ExecutionPool` (shared concurrency limits with fairness keys).

Public surface (Kernel II): :class:`TurnArbiter` (truth table T1..T12 and
same-point precedence; every call returns a :class:`Step` whose ``records`` are
the emitted contract records in order), :class:`SessionLifecycle`,
:class:`PlanResolver` (frozen ``ResolvedTurnPlan`` from a GraphDefinition and a
``TurnStartBundle`` read through a :class:`SnapshotSource`), :class:`AuthorityGuard`
and :class:`IdempotencyDedupe`, :class:`LocalAdmission` / :class:`SchedulingShed`,
:class:`CancelScopeTree` with its :class:`EgressFence`, :class:`BudgetTracker`,
:class:`StateManager` (turn/session/durable scopes), :class:`Timebase`,
:class:`SystemClock` / :class:`VirtualClock`, and identity helpers
(:class:`IdFactory`, :class:`Sequencer`, :class:`RecordStamp`).

Hook points for the turn arbiter, cancellation and egress fencing:

* ``SessionActor.on_control(handler)``: ``handler(ControlCommand)`` (plain or
  async) runs for every ControlLane command *before* the kernel acts on it and
  before any queued data is dispatched; returning ``False`` consumes it. Commands
  are enqueued with ``SessionActor.control(name, turn_id=..., reason=...)`` or the
  helpers ``begin_turn``/``end_turn``/``cancel_turn``/``barge_in``. Kernel
  actions: ``turn_start``/``turn_end`` (hooks, state reset of turn-scoped nodes,
  boundary events on outputs), ``cancel``/``barge_in`` (fence the turn at egress,
  flush its queued data with ``drop_notice``, hard-cancel in-flight work of
  ``cancel_mode='hard'`` nodes, run ``on_barge_in``/``on_cancel`` hooks),
  ``budget_exhausted`` (``on_budget_exhausted`` hooks), ``select``.
* Ingress: ``SessionActor.push(event, port)`` (non-blocking; dispatches directly
  when the scheduler is idle and nothing is queued, else queues on the bounded
  entry buffer) and ``await SessionActor.send(event, port)`` (honours blocking
  and flow control up to ``max_block_ms``). ``SessionActor.stamp`` /
  ``signals.authority_epoch`` are the sequencer and epoch every record carries.
* ``SessionActor.set_egress_gate(gate)``: an :class:`EgressGate` whose
  ``allow(port, event)`` is consulted for every event before it reaches the
  output sink (default :class:`TurnFenceGate` blocks cancelled turns).
* ``SessionActor.signals``: :class:`SignalLog` of materialised contract records
  (``drop_notice`` RK-12, ``watermark`` RK-13, ``flow_xoff``/``flow_xon``/
  ``credit_grant`` RK-14, ``discontinuity`` RK-15, ``fallback``); pass
  ``signal_sink=`` to forward them to a recorder.
* ``SessionActor.text_guard``: :class:`TextStreamGuard` (F-024) checks every
  ``text`` event routed out of a node or ingress port (one stream per source
  output, keyed by its first edge id): monotonic revisions per segment, one
  immutable final; refusals are dropped and logged as ``text_guard`` telemetry
  records. ``SessionOptions(text_guard="segmented"|"strict"|"off")``.
* ``SessionActor.subscriptions``: :class:`SubscriptionHub` (F-022);
  ``subscribe(types, ports=..., handler=..., records=...)`` delivers outputs and
  in-band signal-log records filtered by event type (audio, text, control,
  metrics, debug, error) as :class:`Delivery` objects.
* NodeContext handles are the Protocols in ``_handles``; sessions run with the
  named defaults of ``_defaults`` (``UnboundedBudget``, ``DictState``,
  ``LocalCancelToken``) until Kernel II implementations are wired in.
"""

from rspp.runtime._admission import LocalAdmission, SchedulingShed
from rspp.runtime._arbiter import (
    ArbiterPolicy,
    AuthorityVerdict,
    Continuation,
    LatePolicy,
    OverlapPolicy,
    Step,
    TerminalCause,
    TurnArbiter,
    VadBypass,
)
from rspp.runtime._authority import AuthorityGuard, IdempotencyDedupe
from rspp.runtime._budgets import BudgetKind, BudgetTracker
from rspp.runtime._buffer import EdgeBuffer
from rspp.runtime._bufferspec import BufferConfig, BufferConfigError
from rspp.runtime._cancel import (
    CancelMode,
    CancelReason,
    CancelScope,
    CancelScopeTree,
    EgressFence,
    propagate_cancel,
)
from rspp.runtime._clock import ClockError, SystemClock, VirtualClock
from rspp.runtime._context import NodeContext
from rspp.runtime._deadletter import (
    ERROR_ACTIONS,
    DeadLetter,
    NodeErrorInfo,
    NodeHookError,
    ResourceLimitError,
)
from rspp.runtime._defaults import DictState, LocalCancelToken, SessionTelemetry, UnboundedBudget
from rspp.runtime._egress import ControlCommand, ControlHandler, EgressGate, TurnFenceGate
from rspp.runtime._events import AudioFormat, Event, EventKind, to_record
from rspp.runtime._graph import EdgeDecl, GraphBuilder, GraphError, NodeDecl, RuntimeGraph
from rspp.runtime._handles import BudgetHandle, CancelToken, Clock, StateHandle, TelemetryHandle
from rspp.runtime._identity import Correlation, IdFactory, RecordStamp, Sequencer
from rspp.runtime._node import Node
from rspp.runtime._plan_resolver import PlanResolver, compute_plan_hash
from rspp.runtime._pool import ExecutionPool
from rspp.runtime._registry import (
    ENTRY_POINT_GROUP,
    NodeRegistry,
    UnknownNodeTypeError,
    default_registry,
)
from rspp.runtime._runtime import Runtime
from rspp.runtime._session import SessionActor, SessionOptions
from rspp.runtime._session_lifecycle import SessionLifecycle
from rspp.runtime._signals import SignalLog
from rspp.runtime._snapshot_source import SnapshotSource, StaticSnapshotSource
from rspp.runtime._state import (
    DurableStateStore,
    SqliteDurableStore,
    StateManager,
    StateScope,
)
from rspp.runtime._subscriptions import (
    Delivery,
    Subscription,
    SubscriptionHub,
    classify_event,
    classify_record,
)
from rspp.runtime._text_stream import TextGuardMode, TextRefusal, TextStreamGuard
from rspp.runtime._timebase import MediaClock, Timebase

__all__ = [
    "ENTRY_POINT_GROUP",
    "ERROR_ACTIONS",
    "ArbiterPolicy",
    "AudioFormat",
    "AuthorityGuard",
    "AuthorityVerdict",
    "BudgetHandle",
    "BudgetKind",
    "BudgetTracker",
    "BufferConfig",
    "BufferConfigError",
    "CancelMode",
    "CancelReason",
    "CancelScope",
    "CancelScopeTree",
    "CancelToken",
    "Clock",
    "ClockError",
    "Continuation",
    "ControlCommand",
    "ControlHandler",
    "Correlation",
    "DeadLetter",
    "Delivery",
    "DictState",
    "DurableStateStore",
    "EdgeBuffer",
    "EdgeDecl",
    "EgressFence",
    "EgressGate",
    "Event",
    "EventKind",
    "ExecutionPool",
    "GraphBuilder",
    "GraphError",
    "IdFactory",
    "IdempotencyDedupe",
    "LatePolicy",
    "LocalAdmission",
    "LocalCancelToken",
    "MediaClock",
    "Node",
    "NodeContext",
    "NodeDecl",
    "NodeErrorInfo",
    "NodeHookError",
    "NodeRegistry",
    "OverlapPolicy",
    "PlanResolver",
    "RecordStamp",
    "ResourceLimitError",
    "Runtime",
    "RuntimeGraph",
    "SchedulingShed",
    "Sequencer",
    "SessionActor",
    "SessionLifecycle",
    "SessionOptions",
    "SessionTelemetry",
    "SignalLog",
    "SnapshotSource",
    "SqliteDurableStore",
    "StateHandle",
    "StateManager",
    "StateScope",
    "StaticSnapshotSource",
    "Step",
    "Subscription",
    "SubscriptionHub",
    "SystemClock",
    "TelemetryHandle",
    "TerminalCause",
    "TextGuardMode",
    "TextRefusal",
    "TextStreamGuard",
    "Timebase",
    "TurnArbiter",
    "TurnFenceGate",
    "UnboundedBudget",
    "UnknownNodeTypeError",
    "VadBypass",
    "VirtualClock",
    "classify_event",
    "classify_record",
    "compute_plan_hash",
    "default_registry",
    "propagate_cancel",
    "to_record",
]
