"""State handles with scope enforcement and the durable-state store interface (F-155).

Three classes of state, each with a declared migration behaviour:

* ``turn_ephemeral`` - lives for one turn, cleared at turn start and end; never
  stored, so lost on migration. Turn-scoped nodes get it as ``ctx.state``.
* ``session_hot`` - lives for the session in process memory (session-scoped nodes
  get it as ``ctx.state``: conversation history, caches). It is checkpointed to the
  :class:`DurableStateStore` at turn boundaries (a turn's open and its close) with
  the runtime's own session state (turn counter, open turn, idempotency window);
  after a failover or migration the new owner resumes from the last checkpoint, so
  what changed during the interrupted turn is lost (that turn is aborted).
* ``session_durable`` - persisted through the same store (write-behind: ``flush()``
  saves when a durable key changed, and every checkpoint carries it) and reattached
  by the new owner exactly as last saved.

Every write is versioned (optimistic): a stale owner cannot overwrite what a newer
owner wrote (:class:`StaleStateError`); a control-plane store also fences writes by
lease epoch. Values must be plain data (JSON: str, numbers, bools, None, lists,
dicts); a value that is not is kept in memory but left out of checkpoints
(:attr:`StateManager.unportable` names it).

Scope enforcement: a session-scoped node cannot touch turn state, and a node
can only see its own keys (state is namespaced by node id).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal, Protocol

import msgspec

from rspp.errors import RuntimeKernelError

__all__ = [
    "STATE_SCHEMA",
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


#: the layout of a stored session-state document (``StateManager.document``)
STATE_SCHEMA = "rspp.session_state/v1"


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

    def clear(self) -> None:
        """Drop every key of this node (the kernel clears turn-scoped state per turn)."""
        for full in [k for k in self._data if k.startswith(self._prefix)]:
            del self._data[full]
            if self._dirty is not None:
                self._dirty.add(full)


class StateManager:
    """The three state classes of one session, and its checkpoints (see the module docstring)."""

    def __init__(self, session_id: str, store: DurableStateStore | None = None) -> None:
        self.session_id = session_id
        self.store = store if store is not None else InMemoryDurableStore()
        self._turn: dict[str, object] = {}
        self._hot: dict[str, object] = {}
        self._durable: dict[str, object] = {}
        self._dirty: set[str] = set()
        self._version = 0
        #: the runtime's own part of the last checkpoint saved or loaded
        self.session: dict[str, object] = {}
        #: keys whose values are not plain data (kept in memory, never checkpointed)
        self.unportable: set[str] = set()

    @property
    def version(self) -> int:
        """The stored version this owner last loaded or wrote (0: nothing stored yet)."""
        return self._version

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

    def node_state(self, node_id: str, node_scope: str) -> ScopedState:
        """A node's ``ctx.state`` (the kernel's state factory): a turn-scoped node gets
        turn-ephemeral state, a session-scoped one session-hot state."""
        if node_scope == "turn":
            return self.handle(node_id, "turn", StateScope.TURN_EPHEMERAL)
        return self.handle(node_id, "session", StateScope.SESSION_HOT)

    def session_hot(self, node_id: str) -> ScopedState:
        """A node's session-hot state whatever the node's own scope (a turn-scoped LLM
        node's conversation history)."""
        return self.handle(node_id, "turn", StateScope.SESSION_HOT)

    def end_turn(self) -> None:
        """Turn-ephemeral state never leaks into the next turn (F-038)."""
        self._turn.clear()

    async def attach(self) -> dict[str, object]:
        """Load the stored state (session start, failover, migration).

        Session-durable and session-hot state are restored as last checkpointed; returns
        the runtime's own part of that checkpoint (``{}`` when nothing was stored).
        """
        self._version, values = await self.store.load(self.session_id)
        self._durable.clear()
        self._dirty.clear()
        self.session = {}
        if values.get("schema") == STATE_SCHEMA:
            self._durable.update(_mapping(values.get("durable")))
            self._hot.clear()
            self._hot.update(_mapping(values.get("hot")))
            self.session = dict(_mapping(values.get("session")))
        else:  # a document of durable keys only
            self._durable.update(values)
        return self.session

    def document(self, session: Mapping[str, object] | None = None) -> dict[str, object]:
        """A checkpoint: session-hot and session-durable state (plain-data copies) and the
        runtime's own ``session`` part (the last one when None)."""
        if session is not None:
            self.session = dict(session)
        return {"schema": STATE_SCHEMA, "hot": self._portable(self._hot),
                "durable": self._portable(self._durable),
                "session": msgspec.to_builtins(self.session)}

    def _portable(self, values: dict[str, object]) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in values.items():
            try:
                out[key] = msgspec.to_builtins(value)
            except (TypeError, ValueError, OverflowError):
                self.unportable.add(key)
        return out

    async def save(self, document: dict[str, object]) -> int:
        """Write ``document`` at the next version; raises :class:`StaleStateError` when
        another owner wrote since (or, for a fenced store, the lease moved on)."""
        self._version = await self.store.save(self.session_id, self._version, document)
        self._dirty.clear()
        return self._version

    async def flush(self) -> int:
        """Write-behind save when durable state changed; returns the stored version."""
        if self._dirty:
            await self.save(self.document())
        return self._version


def _mapping(value: object) -> dict[str, object]:
    return dict(value) if isinstance(value, dict) else {}
