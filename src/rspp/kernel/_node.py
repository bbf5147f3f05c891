"""The public Node API: :class:`Node` (``rspp.Node``) and its :class:`NodeContext`.

This module owns the node protocol; the node host and the session depend on it,
never the other way round. A context sees its session only through
:class:`NodeSession` and emits through the host's :class:`NodeOutputs`.

A node subclasses :class:`Node` and implements ``process(event, port)``:

* a plain ``def process`` runs **inline** in the session scheduler (zero queue hops);
* an ``async def process`` gets a worker task fed by its bounded input edge(s).

``process`` returns ``None`` (nothing), or one :class:`~rspp.kernel.Event` for the
node's first output port; extra outputs go through ``self.ctx.emit(event, port)``.
Lifecycle hooks (``on_start``, ``on_stop``, ``on_cancel``, ``on_barge_in``,
``on_budget_exhausted``, ``on_turn_start``, ``on_turn_end``) may be plain or async
and run under ``hook_timeout_ms``.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from rspp.kernel._events import Event
from rspp.kernel._handles import BudgetHandle, CancelToken, Clock, StateHandle, TelemetryHandle
from rspp.kernel._signals import SignalLog

if TYPE_CHECKING:
    from rspp.spec import ParamSpec

__all__ = ["CancelMode", "Node", "NodeContext", "NodeOutputs", "NodeScope", "NodeSession",
           "Streaming"]

CancelMode = Literal["soft", "hard"]
NodeScope = Literal["session", "turn"]
Streaming = Literal["final_only", "partial_and_final"]


class Node:
    """Base class of every node type (built-in and custom, F-011)."""

    #: Registry type name (``type:`` in a PipelineSpec); defaults to the class name.
    type_name: ClassVar[str] = ""
    #: Independent node version (F-121): specs may pin ``type@version``.
    version: ClassVar[str] = "1.0.0"
    inputs: ClassVar[tuple[str, ...]] = ("in",)
    outputs: ClassVar[tuple[str, ...]] = ("out",)
    #: Port name -> ``audio``/``text``/``vad``/``control`` for ``rspp lint`` (others: ``any``).
    port_types: ClassVar[Mapping[str, str]] = {}
    #: Input ports that accept fan-in from several edges.
    multi_inputs: ClassVar[tuple[str, ...]] = ()
    #: Declared parameters (``rspp.param``): ``rspp lint`` checks names and types,
    #: ``rspp docs`` lists them. ``None`` accepts any params.
    parameters: ClassVar[tuple[ParamSpec, ...] | None] = None
    #: Accepted event kinds per input port (empty: anything).
    input_kinds: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    output_kinds: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    streaming: ClassVar[Streaming] = "final_only"
    cancel_mode: ClassVar[CancelMode] = "soft"
    scope: ClassVar[NodeScope] = "session"
    hook_timeout_ms: ClassVar[int] = 1000
    #: Per-event processing time limit for async nodes (None: unlimited).
    timeout_ms: ClassVar[int | None] = None

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        self.ctx = ctx
        self.params: Mapping[str, Any] = params or {}

    def process(self, event: Event, port: str) -> Any:
        """Handle one input event (plain or ``async def`` in subclasses)."""
        return event

    # Lifecycle hooks: plain or async; defaults do nothing.
    def on_start(self) -> Any:
        return None

    def on_stop(self) -> Any:
        return None

    def on_cancel(self, turn_id: str | None, reason: str) -> Any:
        return None

    def on_barge_in(self, turn_id: str | None) -> Any:
        return None

    def on_budget_exhausted(self, turn_id: str | None) -> Any:
        return None

    def on_turn_start(self, turn_id: str) -> Any:
        return None

    def on_turn_end(self, turn_id: str) -> Any:
        return None

    @classmethod
    def is_async(cls) -> bool:
        """True when ``process`` is a coroutine function (worker-task node)."""
        return inspect.iscoroutinefunction(cls.process)

    @classmethod
    def resolved_type_name(cls) -> str:
        return cls.type_name or cls.__name__


class NodeSession(Protocol):
    """What a :class:`NodeContext` reads of its session (the kernel ``SessionActor``)."""

    @property
    def session_id(self) -> str: ...

    @property
    def pipeline_version(self) -> str: ...

    @property
    def turn_id(self) -> str | None: ...

    @property
    def turn_index(self) -> int: ...

    @property
    def signals(self) -> SignalLog: ...

    @property
    def services(self) -> object: ...


class NodeOutputs(Protocol):
    """Where ``NodeContext.emit`` sends events: the node's host and its routing table."""

    def emit(self, event: Event, port: str | None) -> None: ...


class NodeContext:
    """Correlation ids, handles and ``emit()`` for one node instance of one session."""

    __slots__ = (
        "_host",
        "_session",
        "budget",
        "cancel",
        "clock",
        "node_id",
        "pipeline_version",
        "rng",
        "session_id",
        "state",
        "telemetry",
    )

    def __init__(
        self,
        session: NodeSession,
        node_id: str,
        *,
        clock: Clock,
        cancel: CancelToken,
        budget: BudgetHandle,
        state: StateHandle,
        telemetry: TelemetryHandle,
        seed: int,
    ) -> None:
        self._session = session
        self._host: NodeOutputs | None = None
        self.session_id = session.session_id
        self.pipeline_version = session.pipeline_version
        self.node_id = node_id
        self.clock = clock
        self.cancel = cancel
        self.budget = budget
        self.state = state
        self.telemetry = telemetry
        #: Seeded PRNG (determinism context): same seed and node id, same sequence.
        self.rng = random.Random(f"{seed}:{node_id}")

    @property
    def turn_id(self) -> str | None:
        """The session's current turn (None between turns)."""
        return self._session.turn_id

    @property
    def turn_index(self) -> int:
        return self._session.turn_index

    @property
    def services(self) -> object:
        """What the session was built with for its nodes (``SessionActor(services=...)``).

        Opaque to the kernel: the node layer defines and checks its type (providers,
        turn hooks); None when the session was built without services.
        """
        return self._session.services

    def emit(self, event: Event, port: str | None = None) -> None:
        """Send ``event`` out of ``port`` (default: the first output port)."""
        host = self._host
        if host is None:
            raise RuntimeError("emit() called before the node was attached to a session")
        host.emit(event, port)

    def audit(self, reason: str) -> None:
        """Record a TelemetryLane audit event for this node (selection, routing)."""
        self._session.signals.telemetry(
            kind="audit", node_id=self.node_id, turn_id=self._session.turn_id, reason=reason
        )
