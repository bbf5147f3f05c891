"""Process-level runtime: published graphs by version, shared pool, sessions (F-016)."""

from __future__ import annotations

from typing import Any

from rspp.errors import RuntimeKernelError
from rspp.kernel._clock import SystemClock
from rspp.kernel._graph import RuntimeGraph
from rspp.kernel._handles import Clock
from rspp.kernel._pool import ExecutionPool
from rspp.kernel._registry import NodeRegistry, default_registry
from rspp.kernel._session import SessionActor

__all__ = ["Runtime"]


class Runtime:
    """Runs sessions of several pipeline versions side by side in one process."""

    def __init__(
        self,
        *,
        registry: NodeRegistry | None = None,
        clock: Clock | None = None,
        pool: ExecutionPool | None = None,
    ) -> None:
        self.registry = registry or default_registry
        self.clock = clock or SystemClock()
        self.pool = pool or ExecutionPool()
        self.graphs: dict[str, RuntimeGraph] = {}
        self.sessions: dict[str, SessionActor] = {}

    def publish(self, graph: RuntimeGraph) -> str:
        """Make ``graph`` available as ``name@version``; versions are immutable."""
        key = graph.pipeline_version
        existing = self.graphs.get(key)
        if existing is not None and existing != graph:
            raise RuntimeKernelError(
                f"pipeline {key} is already published with different content; bump the version"
            )
        self.graphs[key] = graph
        return key

    async def open_session(self, pipeline_version: str, session_id: str, **kw: Any) -> SessionActor:
        """Instantiate and start a session pinned to ``pipeline_version``."""
        graph = self.graphs.get(pipeline_version)
        if graph is None:
            raise RuntimeKernelError(
                f"pipeline {pipeline_version!r} is not published (have {sorted(self.graphs)})"
            )
        if session_id in self.sessions:
            raise RuntimeKernelError(f"session {session_id!r} already exists")
        s = SessionActor(graph, session_id=session_id, registry=self.registry,
                         clock=self.clock, pool=self.pool, **kw)
        await s.start()
        self.sessions[session_id] = s
        return s

    async def close_session(self, session_id: str) -> None:
        s = self.sessions.pop(session_id, None)
        if s is not None:
            await s.stop()

    async def aclose(self) -> None:
        for sid in list(self.sessions):
            await self.close_session(sid)
