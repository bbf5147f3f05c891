"""OpenTelemetry spans per session, turn, node and provider invocation (F-070).

:class:`SpanFactory` wraps an OpenTelemetry tracer. Every span carries the
correlation attributes ``rspp.session_id``, ``rspp.turn_id``,
``rspp.pipeline_version`` (plus ``rspp.node_id`` / ``rspp.provider`` /
``rspp.provider_invocation_id`` where they apply); nesting follows the current
context (session > turn > node > provider invocation). Pass a configured
``TracerProvider`` (OTLP in production, in-memory exporter in tests). Span
export runs in the SDK's span processor, never in the caller's path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, TracerProvider

__all__ = ["SpanFactory"]


class SpanFactory:
    """Creates correlated spans for the four levels of the cancellation tree."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        source = provider or trace.get_tracer_provider()
        self._tracer = source.get_tracer("rspp")

    @contextmanager
    def _span(self, name: str, attrs: dict[str, str | None]) -> Iterator[Span]:
        clean = {f"rspp.{k}": v for k, v in attrs.items() if v is not None}
        with self._tracer.start_as_current_span(name, attributes=clean) as span:
            yield span

    def session(self, session_id: str, pipeline_version: str) -> AbstractContextManager[Span]:
        return self._span("rspp.session", {"session_id": session_id,
                                           "pipeline_version": pipeline_version})

    def turn(
        self, session_id: str, turn_id: str, pipeline_version: str
    ) -> AbstractContextManager[Span]:
        return self._span("rspp.turn", {"session_id": session_id, "turn_id": turn_id,
                                        "pipeline_version": pipeline_version})

    def node(self, session_id: str, turn_id: str | None, pipeline_version: str,
             node_id: str) -> AbstractContextManager[Span]:
        return self._span(f"rspp.node {node_id}", {
            "session_id": session_id, "turn_id": turn_id,
            "pipeline_version": pipeline_version, "node_id": node_id})

    def provider(self, session_id: str, turn_id: str | None, pipeline_version: str,
                 node_id: str, provider: str, invocation_id: str) -> AbstractContextManager[Span]:
        return self._span(f"rspp.provider {provider}", {
            "session_id": session_id, "turn_id": turn_id, "pipeline_version": pipeline_version,
            "node_id": node_id, "provider": provider, "provider_invocation_id": invocation_id})
