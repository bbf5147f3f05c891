"""The control plane as a served session's durable state store (F-155).

:class:`ControlPlaneStateStore` implements :class:`~rspp.turns.DurableStateStore`
over the control plane's HTTP API: the checkpoints of a session live in the control
plane's database (PostgreSQL in production), outside every runtime process, so the
runtime a session fails over to resumes from them. Each write names this runtime and
the lease epoch it holds; the control plane refuses a write from anyone but the
current holder (a previous holder only until the new one loaded the state), and a
write against a version another owner moved on from: both surface as
:class:`~rspp.turns.StaleStateError` (this runtime no longer owns the session).

The writes of all a runtime's sessions go through its :class:`StateWriter`: a
checkpoint waits at most ``linger_s`` (and while the previous batch is in flight)
and goes out with the others in one ``PUT /v1/runtimes/{id}/states``, each write
fenced and versioned on its own, so the control plane's load per turn stays flat as
sessions grow. A control plane without the batch route (or a tenant-scoped key) gets
one ``PUT /v1/sessions/{id}/state`` per checkpoint. Loading (the takeover) is one
request per session, or none: the session's start took it over already
(:meth:`ControlPlaneStateStore.taken_over`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from rspp.controlplane import ControlPlaneClient, CPError
from rspp.controlplane._session_state import HeldStateWrite, StateOutcomes, StateWrite
from rspp.server._batching import Coalescer, batch_refused
from rspp.turns import StaleStateError

__all__ = ["ControlPlaneStateStore", "StateWriter"]

_STALE = ("stale_epoch", "stale_state")
#: (lease epoch, expected version, document) of one queued checkpoint
_Write = tuple[int, int, dict[str, object]]


class StateWriter:
    """The checkpoint writes of one runtime's sessions, sent together (module docstring)."""

    def __init__(self, client: ControlPlaneClient, runtime_id: str, *,
                 linger_s: float = 0.1, max_bytes: int = 900_000) -> None:
        self.client = client
        self.runtime_id = runtime_id
        #: a batch body stays under the control plane's body limit (1 MiB by default)
        self.max_bytes = max_bytes
        self._batch = True
        self.batcher: Coalescer[_Write, int] = Coalescer(
            self._send, linger_s=linger_s, name=f"{runtime_id}:checkpoints")

    async def save(self, session_id: str, epoch: int, expected_version: int,
                   document: dict[str, object]) -> int:
        """Save one checkpoint; the new version, or :class:`StaleStateError` when refused."""
        if not self._batch:
            return await self._save_one(session_id, (epoch, expected_version, document))
        return await self.batcher.call(session_id, (epoch, expected_version, document))

    async def _save_one(self, session_id: str, write: _Write) -> int:
        epoch, expected, document = write
        body = StateWrite(runtime_id=self.runtime_id, lease_epoch=epoch,
                          expected_version=expected, document=document)
        try:
            data = await self.client.request("PUT", f"/v1/sessions/{session_id}/state",
                                             json=body)
        except CPError as exc:
            if exc.code in _STALE:
                raise StaleStateError(exc.message) from None
            raise
        return int(data["version"])

    async def _send(self, queued: dict[str, _Write]) -> dict[str, int | BaseException]:
        results: dict[str, int | BaseException] = {}
        chunks: list[list[tuple[str, bytes]]] = [[]]
        size = 0
        for sid, (epoch, expected, document) in queued.items():
            try:
                part = msgspec.json.encode(HeldStateWrite(
                    session_id=sid, lease_epoch=epoch, expected_version=expected,
                    document=document))
            except (TypeError, msgspec.EncodeError) as exc:
                results[sid] = exc
                continue
            if chunks[-1] and size + len(part) > self.max_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append((sid, part))
            size += len(part) + 1
        for chunk in chunks:
            if chunk:
                results.update(await self._send_chunk(chunk, queued))
        return results

    async def _send_chunk(self, chunk: list[tuple[str, bytes]],
                          queued: dict[str, _Write]) -> dict[str, int | BaseException]:
        body = b'{"writes":[' + b",".join(part for _, part in chunk) + b"]}"
        try:
            data = await self.client.request("PUT", f"/v1/runtimes/{self.runtime_id}/states",
                                             content=body)
        except CPError as exc:
            if batch_refused(exc):
                self._batch = False
                return {sid: await _outcome(self._save_one(sid, queued[sid]))
                        for sid, _ in chunk}
            return {sid: exc for sid, _ in chunk}
        out: dict[str, int | BaseException] = {}
        for r in msgspec.convert(data, StateOutcomes).results:
            if r.version is not None:
                out[r.session_id] = r.version
            elif r.code in _STALE:
                out[r.session_id] = StaleStateError(r.message or r.code or "stale")
            else:
                out[r.session_id] = CPError(r.message or "checkpoint refused",
                                            field="document", code=r.code)
        return out


async def _outcome(work: Awaitable[int]) -> int | BaseException:
    try:
        return await work
    except (CPError, StaleStateError) as exc:
        return exc


class ControlPlaneStateStore:
    """Session checkpoints in the control plane, written by the lease holder only."""

    def __init__(self, client: ControlPlaneClient, runtime_id: str,
                 epoch: Callable[[], int], writer: StateWriter | None = None) -> None:
        self.client = client
        self.runtime_id = runtime_id
        self.epoch = epoch
        #: the runtime's shared writer (None: one request per checkpoint)
        self.writer = writer if writer is not None else StateWriter(client, runtime_id)
        self._taken: tuple[int, dict[str, object]] | None = None

    def taken_over(self, version: int, document: dict[str, object]) -> None:
        """The control plane already took the checkpoint over for this runtime (the
        session's start did, ``POST /v1/sessions/{id}/start``): the next :meth:`load`
        answers with it instead of asking again."""
        self._taken = (version, dict(document))

    async def load(self, session_id: str) -> tuple[int, dict[str, object]]:
        """The last checkpoint, taken over for this runtime's epoch: from now on the
        previous holder can no longer write (its last checkpoint counted until now)."""
        if self._taken is not None:
            taken, self._taken = self._taken, None
            return taken
        data = await self.client.request(
            "GET", f"/v1/sessions/{session_id}/state",
            params={"runtime_id": self.runtime_id, "lease_epoch": str(self.epoch())})
        doc = data.get("document")
        return int(data.get("version", 0)), dict(doc) if isinstance(doc, dict) else {}

    async def save(self, session_id: str, expected_version: int,
                   values: dict[str, object]) -> int:
        return await self.writer.save(session_id, self.epoch(), expected_version, values)
