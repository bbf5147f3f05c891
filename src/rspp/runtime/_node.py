"""The public Node API (``rspp.Node``): ports, streaming, cancel mode, scope, hooks.

A node subclasses :class:`Node` and implements ``process(event, port)``:

* a plain ``def process`` runs **inline** in the session scheduler (zero queue hops);
* an ``async def process`` gets a worker task fed by its bounded input edge(s).

``process`` returns ``None`` (nothing), or one :class:`~rspp.runtime.Event` for the
node's first output port; extra outputs go through ``self.ctx.emit(event, port)``.
Lifecycle hooks (``on_start``, ``on_stop``, ``on_cancel``, ``on_barge_in``,
``on_budget_exhausted``, ``on_turn_start``, ``on_turn_end``) may be plain or async
and run under ``hook_timeout_ms``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from rspp.runtime._context import NodeContext
    from rspp.runtime._events import Event
    from rspp.spec import ParamSpec

__all__ = ["CancelMode", "Node", "NodeScope", "Streaming"]

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
    #: Declared parameters (``rspp.spec.param``): ``rspp lint`` checks names and types,
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
