"""The RSPP dataflow kernel: session actor, graph executor, edges and lanes, node host.

It knows nothing of turns: :mod:`rspp.turns` builds the turn lifecycle on top of it.

Public surface: :class:`Node` / :class:`NodeContext` (node API),
:class:`NodeRegistry` (type name -> class, entry points ``rspp.nodes``),
:class:`RuntimeGraph` / :class:`GraphBuilder` (executor view of a compiled
``GraphDefinition``; ``RuntimeGraph.from_definition(gd)``), :class:`SessionActor`
(one running session; many sessions of any versions share a process and an
:class:`ExecutionPool`: the server's session hub holds them),
:class:`EdgeBuffer` / :class:`BufferConfig` (bounded lane-aware edge queues),
:class:`ExecutionPool` (shared concurrency limits with fairness keys).

Also :class:`Timebase`, :class:`SystemClock` / :class:`VirtualClock` and identity helpers
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

from rspp.kernel._buffer import EdgeBuffer
from rspp.kernel._bufferspec import BufferConfig, BufferConfigError
from rspp.kernel._clock import ClockError, SystemClock, VirtualClock
from rspp.kernel._deadletter import (
    ERROR_ACTIONS,
    DeadLetter,
    NodeErrorInfo,
    NodeHookError,
    ResourceLimitError,
)
from rspp.kernel._defaults import DictState, LocalCancelToken, SessionTelemetry, UnboundedBudget
from rspp.kernel._egress import ControlCommand, ControlHandler, EgressGate, TurnFenceGate
from rspp.kernel._events import AudioFormat, Event, EventKind, audio_frame, to_record
from rspp.kernel._graph import EdgeDecl, GraphBuilder, GraphError, NodeDecl, RuntimeGraph
from rspp.kernel._handles import BudgetHandle, CancelToken, Clock, StateHandle, TelemetryHandle
from rspp.kernel._identity import Correlation, IdFactory, RecordStamp, Sequencer
from rspp.kernel._node import Node, NodeContext
from rspp.kernel._pool import ExecutionPool, TurnPoolWaits
from rspp.kernel._registry import (
    ENTRY_POINT_GROUP,
    NodeRegistry,
    UnknownNodeTypeError,
    default_registry,
)
from rspp.kernel._session import SessionActor, SessionOptions
from rspp.kernel._signals import SignalLog
from rspp.kernel._subscriptions import (
    Delivery,
    Subscription,
    SubscriptionHub,
    classify_event,
    classify_record,
)
from rspp.kernel._text_stream import TextGuardMode, TextRefusal, TextStreamGuard
from rspp.kernel._timebase import DEFAULT_MAX_SKEW_MS, SkewEvent, Timebase
from rspp.kernel._turn_drain import LAST_OF_TURN

__all__ = [
    "DEFAULT_MAX_SKEW_MS",
    "ENTRY_POINT_GROUP",
    "ERROR_ACTIONS",
    "LAST_OF_TURN",
    "AudioFormat",
    "BudgetHandle",
    "BufferConfig",
    "BufferConfigError",
    "CancelToken",
    "Clock",
    "ClockError",
    "ControlCommand",
    "ControlHandler",
    "Correlation",
    "DeadLetter",
    "Delivery",
    "DictState",
    "EdgeBuffer",
    "EdgeDecl",
    "EgressGate",
    "Event",
    "EventKind",
    "ExecutionPool",
    "GraphBuilder",
    "GraphError",
    "IdFactory",
    "LocalCancelToken",
    "Node",
    "NodeContext",
    "NodeDecl",
    "NodeErrorInfo",
    "NodeHookError",
    "NodeRegistry",
    "RecordStamp",
    "ResourceLimitError",
    "RuntimeGraph",
    "Sequencer",
    "SessionActor",
    "SessionOptions",
    "SessionTelemetry",
    "SignalLog",
    "SkewEvent",
    "StateHandle",
    "Subscription",
    "SubscriptionHub",
    "SystemClock",
    "TelemetryHandle",
    "TextGuardMode",
    "TextRefusal",
    "TextStreamGuard",
    "Timebase",
    "TurnFenceGate",
    "TurnPoolWaits",
    "UnboundedBudget",
    "UnknownNodeTypeError",
    "VirtualClock",
    "audio_frame",
    "classify_event",
    "classify_record",
    "default_registry",
    "to_record",
]
