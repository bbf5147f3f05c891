"""Session state checkpoints in the control plane's database (F-155, F-157).

A runtime holding a session's lease saves the session's checkpoint (session-hot and
session-durable state plus its resume point: turn counter, open turn, idempotency
window) at turn boundaries with ``PUT /v1/sessions/{id}/state``; the runtime a
session fails over or migrates to loads it with ``GET ?runtime_id=&lease_epoch=``,
which also *takes the state over* for its epoch. Writes are fenced twice:

- by lease: the holder of the current epoch may write (also after its lease expired,
  until another runtime takes the session over); the
  holder of an older epoch only until the new holder took the state over (its last
  checkpoint, e.g. of a turn that closed just as the session moved, still counts),
  and never over a newer epoch's write. Anything else is ``409 stale_epoch``: a
  paused or partitioned runtime cannot overwrite what its successor resumed from;
- by version (optimistic): ``expected_version``, when given, must be the stored
  version (``409 stale_state``), so two writers never interleave (runtimes always
  give it; left out, the holder overwrites). A newer version the same writer saved at
  the same epoch (a write whose answer was lost) does not count against it.

The document is opaque JSON to the control plane, limited to
:data:`MAX_STATE_BYTES` (``413``); with ``--state-key vault-transit:NAME`` it is stored
sealed under that KMS key (:mod:`rspp.controlplane._state_sealing`, F-169). Both routes
are in the route table (operator role, tenant of the session).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import BodyTooLarge, Conflict, InvalidRequest, Unavailable
from rspp.controlplane._handlers import Call
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._requests import Id, NoQuery
from rspp.controlplane._schema import lease_epochs, leases, session_state
from rspp.controlplane._service import ControlPlane
from rspp.controlplane._state_sealing import SEALED_PREFIX, StateSealer

__all__ = ["MAX_STATE_BYTES", "HeldStateWrite", "SessionState", "StateOutcome",
           "StateOutcomes", "StateQuery", "StateSaved", "StateWrite", "StateWrites",
           "load_state", "save_state", "save_states", "take_over_in", "write_states"]

#: the largest checkpoint document (encoded JSON bytes)
MAX_STATE_BYTES = 256 * 1024

Version = Annotated[int, Meta(ge=0, le=2**31 - 1, description="a stored state version")]
LeaseEpoch = Annotated[int, Meta(ge=1, le=2**31 - 1, description="the writer's lease epoch")]


class StateWrite(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A checkpoint from the session's lease holder."""

    runtime_id: Id
    lease_epoch: LeaseEpoch
    #: the version this writer last loaded or wrote (0: none stored yet; None: overwrite)
    expected_version: Version | None = None
    document: dict[str, Any]


class HeldStateWrite(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One session's checkpoint in a runtime's batch (the runtime is the writer)."""

    session_id: Id
    lease_epoch: LeaseEpoch
    expected_version: Version | None = None
    document: dict[str, Any]


class StateWrites(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Checkpoints of a runtime's sessions, saved together (``PUT /v1/runtimes/{id}/states``)."""

    writes: Annotated[tuple[HeldStateWrite, ...], Meta(min_length=1, max_length=500)]


class StateOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One write of a batch: its new ``version``, or why it was refused (``code``:
    ``stale_epoch``, ``stale_state``, ``too_large``)."""

    session_id: str
    version: int | None = None
    code: str | None = None
    message: str | None = None


class StateOutcomes(msgspec.Struct, frozen=True, kw_only=True):
    results: list[StateOutcome]


class StateQuery(NoQuery, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The runtime loading the state as the session's new holder (both, or neither)."""

    runtime_id: Id | None = None
    lease_epoch: LeaseEpoch | None = None


class StateSaved(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    version: int


class SessionState(msgspec.Struct, frozen=True, kw_only=True):
    """The stored checkpoint (``version`` 0 and an empty document when none)."""

    session_id: str
    version: int
    lease_epoch: int | None = None
    holder: str | None = None
    updated_at_ms: int | None = None
    #: the epoch whose holder took the state over (older holders may no longer write)
    taken_epoch: int | None = None
    document: dict[str, Any] = {}


async def _session_tenant(cp: ControlPlane, principal: Principal, session_id: str) -> None:
    async with cp.store.engine.connect() as conn:
        info = await cp.sessions.get_in(conn, session_id)
    principal.require_tenant(info.tenant_id)


def _holds(lease: Any, runtime_id: str, epoch: int) -> bool:
    """``runtime_id`` holds the session's current epoch. An expired lease nobody took over
    still counts: no other runtime can have written since (its holder re-acquires it)."""
    return lease is not None and lease.epoch == epoch and lease.holder == runtime_id


def _stale(session_id: str, runtime_id: str, epoch: int, lease: Any, now: int,
           why: str = "") -> Conflict:
    held = "no lease" if lease is None else (
        f"epoch {lease.epoch} held by {lease.holder}"
        + (" (expired)" if lease.expires_at_ms <= now else ""))
    return Conflict(f"{runtime_id} at lease epoch {epoch} does not hold session {session_id} "
                    f"({held}){why}; state is written by the lease holder only",
                    field="lease_epoch", code="stale_epoch")


async def read_state(cp: ControlPlane, principal: Principal, session_id: str,
                     query: StateQuery | None = None) -> SessionState:
    """The stored checkpoint; named holder and epoch: taken over for that epoch."""
    await cp.authorize(principal, Role.OPERATOR, "read session state")
    await _session_tenant(cp, principal, session_id)
    q = query or StateQuery()
    if (q.runtime_id is None) != (q.lease_epoch is None):
        raise InvalidRequest("runtime_id and lease_epoch go together: the holder taking the "
                             "state over names both", field="lease_epoch")
    if q.runtime_id is None or q.lease_epoch is None:
        async with cp.store.engine.connect() as conn:
            row = (await conn.execute(select(session_state).where(
                session_state.c.session_id == session_id))).first()
        return await _reply(session_id, row, cp.state_sealer)
    runtime_id, epoch = q.runtime_id, q.lease_epoch

    async def work(conn: AsyncConnection, now: int) -> SessionState:
        return await take_over_in(conn, now, session_id, runtime_id, epoch,
                                  sealer=cp.state_sealer)

    return await cp._write(work, "take over session state")


async def take_over_in(conn: AsyncConnection, now: int, session_id: str, runtime_id: str,
                       epoch: int, *, held: bool = False,
                       sealer: StateSealer | None = None) -> SessionState:
    """The stored checkpoint, taken over in the caller's transaction by ``runtime_id``,
    which must hold the session's lease at ``epoch`` (else ``409 stale_epoch``): from
    then on the holders of older epochs can no longer write. ``held``: the caller
    acquired that lease in this transaction (its row is locked and checked already).
    ``sealer``: stored documents are sealed under a KMS key (opened for the reply)."""
    if not held:
        lease = (await conn.execute(
            select(leases).where(leases.c.session_id == session_id).with_for_update())).first()
        if not _holds(lease, runtime_id, epoch):
            raise _stale(session_id, runtime_id, epoch, lease, now)
    row = (await conn.execute(select(session_state).where(
        session_state.c.session_id == session_id))).first()
    if row is None:  # nothing saved yet: the takeover alone is recorded (version 0)
        await conn.execute(insert(session_state).values(
            session_id=session_id, version=0, lease_epoch=epoch, holder=runtime_id,
            doc_json="{}", updated_at_ms=now, taken_epoch=epoch))
        return SessionState(session_id=session_id, version=0, taken_epoch=epoch)
    if (row.taken_epoch or 0) < epoch:
        await conn.execute(update(session_state).where(
            session_state.c.session_id == session_id).values(taken_epoch=epoch))
        return msgspec.structs.replace(await _reply(session_id, row, sealer),
                                       taken_epoch=epoch)
    return await _reply(session_id, row, sealer)


async def _reply(session_id: str, row: Any, sealer: StateSealer | None) -> SessionState:
    if row is None or row.version == 0:
        return SessionState(session_id=session_id, version=0,
                            taken_epoch=None if row is None else row.taken_epoch)
    return SessionState(session_id=session_id, version=row.version, lease_epoch=row.lease_epoch,
                        holder=row.holder, updated_at_ms=row.updated_at_ms,
                        taken_epoch=row.taken_epoch,
                        document=msgspec.json.decode(await _opened(session_id, row.doc_json,
                                                                   sealer)))


async def _opened(session_id: str, stored: str, sealer: StateSealer | None) -> str:
    if sealer is not None:
        return await sealer.open(session_id, stored)
    if stored.startswith(SEALED_PREFIX):
        raise Unavailable(f"session {session_id}: its state is sealed under a KMS key and "
                          "this control plane has none: start it with --state-key",
                          field="state_key")
    return stored


async def write_state(cp: ControlPlane, principal: Principal, session_id: str,
                      body: StateWrite) -> StateSaved:
    await cp.authorize(principal, Role.OPERATOR, "write session state")
    doc = _encoded(body.document)
    await _session_tenant(cp, principal, session_id)
    if cp.state_sealer is not None:
        doc = await cp.state_sealer.seal(session_id, doc)
    runtime_id, epoch = body.runtime_id, body.lease_epoch

    async def work(conn: AsyncConnection, now: int) -> StateSaved:
        lease = (await conn.execute(
            select(leases).where(leases.c.session_id == session_id).with_for_update())).first()
        row = (await conn.execute(select(session_state).where(
            session_state.c.session_id == session_id))).first()
        return await _store_one(conn, now, session_id, runtime_id, epoch,
                                body.expected_version, doc, lease, row)

    return await cp._write(work, "write session state")


def _encoded(document: dict[str, Any]) -> str:
    doc = msgspec.json.encode(document).decode()
    if len(doc) > MAX_STATE_BYTES:
        raise BodyTooLarge(f"the state document is {len(doc)} bytes; the limit is "
                           f"{MAX_STATE_BYTES} bytes", field="document")
    return doc


async def _store_one(conn: AsyncConnection, now: int, session_id: str, runtime_id: str,
                     epoch: int, expected: int | None, doc: str, lease: Any,
                     row: Any) -> StateSaved:
    """Check one write against the locked lease row and the stored row, then store it;
    raise :class:`Conflict` (``stale_epoch`` or ``stale_state``) when it is refused."""
    if not _holds(lease, runtime_id, epoch):
        # an older epoch's holder: its last checkpoint until the new holder took over
        if lease is None or epoch >= lease.epoch:
            raise _stale(session_id, runtime_id, epoch, lease, now)
        held = (await conn.execute(select(lease_epochs.c.holder).where(
            lease_epochs.c.session_id == session_id,
            lease_epochs.c.epoch == epoch))).scalar()
        if held != runtime_id:
            raise _stale(session_id, runtime_id, epoch, lease, now)
        if row is not None and ((row.taken_epoch or 0) > epoch or row.lease_epoch > epoch):
            raise _stale(session_id, runtime_id, epoch, lease, now,
                         f"; the holder of epoch {row.taken_epoch or row.lease_epoch} "
                         "took the state over")
    stored = 0 if row is None else int(row.version)
    # a newer version this very writer saved at this epoch (an answer it never read)
    own = row is not None and row.holder == runtime_id and row.lease_epoch == epoch \
        and expected is not None and stored > expected
    if expected is not None and stored != expected and not own:
        raise Conflict(f"session {session_id} state is at version {stored}, the write "
                       f"expected {expected}; load it before writing",
                       field="expected_version", code="stale_state")
    values = {"lease_epoch": epoch, "holder": runtime_id, "doc_json": doc,
              "updated_at_ms": now}
    if row is None:
        await conn.execute(insert(session_state).values(session_id=session_id, version=1,
                                                        **values))
    else:
        await conn.execute(update(session_state).where(
            session_state.c.session_id == session_id,
            session_state.c.version == stored).values(version=stored + 1, **values))
    return StateSaved(session_id=session_id, version=stored + 1)


async def write_states(cp: ControlPlane, principal: Principal, runtime_id: str,
                       writes: tuple[HeldStateWrite, ...]) -> list[StateOutcome]:
    """The checkpoints of many sessions from their holder ``runtime_id``, in one
    transaction: each write is fenced and versioned exactly as ``PUT .../state`` (a
    refused one is answered with its code and leaves the others unchanged). A session
    named twice keeps its last write (last writer wins)."""
    await cp.authorize(principal, Role.OPERATOR, "write session states")
    last = {w.session_id: w for w in writes}
    ids = sorted(last)  # lease rows are locked in one order: no deadlock between batches
    docs: dict[str, str | StateOutcome] = {}
    for sid in ids:
        try:
            docs[sid] = _encoded(last[sid].document)
        except BodyTooLarge as exc:
            docs[sid] = StateOutcome(session_id=sid, code=exc.code, message=exc.message)
        else:
            if cp.state_sealer is not None:
                docs[sid] = await cp.state_sealer.seal(sid, str(docs[sid]))

    async def work(conn: AsyncConnection, now: int) -> list[StateOutcome]:
        locked = {r.session_id: r for r in (await conn.execute(
            select(leases).where(leases.c.session_id.in_(ids))
            .order_by(leases.c.session_id).with_for_update())).all()}
        rows = {r.session_id: r for r in (await conn.execute(select(session_state).where(
            session_state.c.session_id.in_(ids)))).all()}
        out: list[StateOutcome] = []
        for sid in ids:
            doc, w = docs[sid], last[sid]
            if isinstance(doc, StateOutcome):
                out.append(doc)
                continue
            try:
                saved = await _store_one(conn, now, sid, runtime_id, w.lease_epoch,
                                         w.expected_version, doc, locked.get(sid),
                                         rows.get(sid))
            except Conflict as exc:
                out.append(StateOutcome(session_id=sid, code=exc.code, message=exc.message))
            else:
                out.append(StateOutcome(session_id=sid, version=saved.version))
        return out

    return await cp._write(work, "write session states")


# ---- HTTP handlers (route table: GET/PUT /v1/sessions/{session_id}/state) ----------------
async def load_state(c: Call) -> SessionState:
    return await read_state(c.cp, c.principal, c.path["session_id"], c.query)


async def save_state(c: Call) -> StateSaved:
    return await write_state(c.cp, c.principal, c.path["session_id"], c.body)


async def save_states(c: Call) -> StateOutcomes:
    return StateOutcomes(results=await write_states(c.cp, c.principal, c.path["runtime_id"],
                                                    c.body.writes))
