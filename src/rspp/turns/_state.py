"""State handles with scope enforcement and the durable-state store interface (F-155).

Three classes of state, each with a declared migration behaviour:

* ``turn_ephemeral`` - lives for one turn, cleared at turn end; lost on migration.
* ``session_hot`` - lives for the session in this process; lost on migration
  (the node must be able to rebuild it).
* ``session_durable`` - persisted through a :class:`DurableStateStore`
  (write-behind: ``flush()`` saves dirty keys) and reattached by the new owner
  after failover, with optimistic versioning so a stale owner cannot overwrite.

Scope enforcement: a session-scoped node cannot touch turn state, and a node
can only see its own keys (state is namespaced by node id).
"""

from __future__ import annotations

import sqlite3
from enum import StrEnum
from typing import Literal, Protocol

import msgspec

from rspp.errors import RuntimeKernelError

__all__ = [
    "DurableStateStore",
    "InMemoryDurableStore",
    "ScopedState",
    "SqliteDurableStore",
    "StaleStateError",
    "StateManager",
    "StateScope",
    "StateScopeError",
]


class StateScopeError(RuntimeKernelError):
    """A node asked for state outside what its scope allows."""


class StaleStateError(RuntimeKernelError):
    """A durable write lost the optimistic version race (another owner wrote first)."""


class StateScope(StrEnum):
    TURN_EPHEMERAL = "turn_ephemeral"
    SESSION_HOT = "session_hot"
    SESSION_DURABLE = "session_durable"


class DurableStateStore(Protocol):
    """Where session-durable state lives outside the runtime process."""

    async def load(self, session_id: str) -> tuple[int, dict[str, object]]:
        """(version, values); version 0 and {} for a new session."""
        ...

    async def save(self, session_id: str, expected_version: int, values: dict[str, object]) -> int:
        """Write if the stored version is ``expected_version``; returns the new version."""
        ...


class InMemoryDurableStore:
    """Process-local store (tests, single-process runner)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[int, bytes]] = {}

    async def load(self, session_id: str) -> tuple[int, dict[str, object]]:
        version, blob = self._data.get(session_id, (0, b"{}"))
        return version, msgspec.json.decode(blob)

    async def save(self, session_id: str, expected_version: int, values: dict[str, object]) -> int:
        current = self._data.get(session_id, (0, b""))[0]
        if current != expected_version:
            raise StaleStateError(
                f"session '{session_id}' durable state is at version {current}, "
                f"write expected {expected_version}; reload before writing"
            )
        self._data[session_id] = (current + 1, msgspec.json.encode(values))
        return current + 1


class SqliteDurableStore:
    """SQLite-backed store (one row per session, JSON values, version column)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS rspp_session_state ("
            "session_id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc BLOB NOT NULL)"
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    async def load(self, session_id: str) -> tuple[int, dict[str, object]]:
        row = self._db.execute(
            "SELECT version, doc FROM rspp_session_state WHERE session_id = ?", (session_id,)
        ).fetchone()
        if row is None:
            return 0, {}
        return int(row[0]), msgspec.json.decode(row[1])

    async def save(self, session_id: str, expected_version: int, values: dict[str, object]) -> int:
        doc = msgspec.json.encode(values)
        if expected_version == 0:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO rspp_session_state VALUES (?, 1, ?)", (session_id, doc)
            )
        else:
            cur = self._db.execute(
                "UPDATE rspp_session_state SET version = version + 1, doc = ? "
                "WHERE session_id = ? AND version = ?",
                (doc, session_id, expected_version),
            )
        self._db.commit()
        if cur.rowcount != 1:
            raise StaleStateError(
                f"session '{session_id}' durable state changed since version "
                f"{expected_version}; reload before writing"
            )
        return expected_version + 1


class ScopedState:
    """One node's view of one state class; implements ``StateHandle``."""

    __slots__ = ("_data", "_dirty", "_prefix", "scope")

    def __init__(
        self,
        scope: StateScope,
        data: dict[str, object],
        node_id: str,
        dirty: set[str] | None = None,
    ) -> None:
        self.scope = scope
        self._data = data
        self._prefix = f"{node_id}/"
        self._dirty = dirty

    def get(self, key: str, default: object = None) -> object:
        return self._data.get(self._prefix + key, default)

    def set(self, key: str, value: object) -> None:
        self._data[self._prefix + key] = value
        if self._dirty is not None:
            self._dirty.add(self._prefix + key)

    def delete(self, key: str) -> None:
        self._data.pop(self._prefix + key, None)
        if self._dirty is not None:
            self._dirty.add(self._prefix + key)


class StateManager:
    """The three state classes of one session."""

    def __init__(self, session_id: str, store: DurableStateStore | None = None) -> None:
        self.session_id = session_id
        self.store = store if store is not None else InMemoryDurableStore()
        self._turn: dict[str, object] = {}
        self._hot: dict[str, object] = {}
        self._durable: dict[str, object] = {}
        self._dirty: set[str] = set()
        self._version = 0

    def handle(
        self, node_id: str, node_scope: Literal["session", "turn"], scope: StateScope
    ) -> ScopedState:
        """The handle a node gets; session-scoped nodes cannot touch turn state."""
        if scope is StateScope.TURN_EPHEMERAL and node_scope == "session":
            raise StateScopeError(
                f"node '{node_id}' is session-scoped and cannot use turn_ephemeral state; "
                "use session_hot, or declare the node with scope: turn"
            )
        if scope is StateScope.TURN_EPHEMERAL:
            return ScopedState(scope, self._turn, node_id)
        if scope is StateScope.SESSION_HOT:
            return ScopedState(scope, self._hot, node_id)
        return ScopedState(scope, self._durable, node_id, self._dirty)

    def end_turn(self) -> None:
        """Turn-ephemeral state never leaks into the next turn (F-038)."""
        self._turn.clear()

    async def attach(self) -> None:
        """Load durable state (at session start or after failover/migration)."""
        self._version, values = await self.store.load(self.session_id)
        self._durable.clear()
        self._durable.update(values)
        self._dirty.clear()

    async def flush(self) -> int:
        """Write-behind save of durable state; returns the stored version."""
        if self._dirty:
            self._version = await self.store.save(
                self.session_id, self._version, dict(self._durable)
            )
            self._dirty.clear()
        return self._version

    def migrate_out(self) -> None:
        """What a migration leaves behind: turn and hot state are dropped (declared loss)."""
        self._turn.clear()
        self._hot.clear()
