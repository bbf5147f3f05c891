"""Reviewed changes (F-165): what was submitted, who approved or rejected it, when it applied.

A change names one activating mutation as its request (a rollout, a rollback, a config
activation), exactly as the mutation's own route would take it. It goes
``pending -> approved | rejected``, and an approved change goes ``-> applied`` once:
the status moves with a compare-and-swap inside the mutation's own transaction, so two
applies of one change activate it once. A reviewer is never the submitter.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._change_signing import request_hash_of
from rspp.controlplane._errors import Conflict, Forbidden, InvalidRequest, NotFound
from rspp.controlplane._requests import ChangeStatus, ChangeSubmitRequest
from rspp.controlplane._schema import changes

_REQUIRED: dict[str, tuple[str, ...]] = {
    "rollout": ("pipeline_name", "rollout"),
    "rollback": ("pipeline_name", "rollback_to"),
    "config.activate": ("config_kind", "config_scope", "config_version"),
}


class ChangeRecord(msgspec.Struct, frozen=True, kw_only=True):
    change_id: str
    action: str
    target: str
    request: ChangeSubmitRequest
    request_hash: str
    reason: str
    status: ChangeStatus
    submitted_by: str
    submitted_at_ms: int
    reviewed_by: str | None = None
    reviewed_at_ms: int | None = None
    review_note: str | None = None
    applied_by: str | None = None
    applied_at_ms: int | None = None
    #: signed provenance (NF-037): base64 Ed25519 signatures and signer key fingerprints
    submit_signature: str | None = None
    submit_signer: str | None = None
    review_signature: str | None = None
    review_signer: str | None = None

    def decision(self) -> dict[str, Any]:
        """The review metadata an audit entry of this change carries."""
        return {"change_id": self.change_id, "action": self.action, "target": self.target,
                "request_hash": self.request_hash, "reason": self.reason,
                "submitted_by": self.submitted_by, "reviewed_by": self.reviewed_by,
                "review_note": self.review_note, "status": self.status,
                "submit_signer": self.submit_signer, "review_signer": self.review_signer}

    @property
    def signed(self) -> bool:
        """Submission and review both carry a verified signature."""
        return self.submit_signer is not None and self.review_signer is not None


def target_of(request: ChangeSubmitRequest) -> str:
    """``pipeline:NAME`` or ``config:KIND/SCOPE``; 422 naming the first field missing."""
    for name in _REQUIRED[request.action]:
        if getattr(request, name) is None:
            raise InvalidRequest(f"a {request.action} change needs {name}", field=name)
    if request.action == "config.activate":
        return f"config:{request.config_kind}/{request.config_scope}"
    return f"pipeline:{request.pipeline_name}"


def _record(row: Any) -> ChangeRecord:
    return ChangeRecord(
        change_id=row.change_id, action=row.action, target=row.target,
        request=msgspec.json.decode(row.request_json, type=ChangeSubmitRequest),
        request_hash=row.request_hash, reason=row.reason, status=row.status,
        submitted_by=row.submitted_by, submitted_at_ms=row.submitted_at_ms,
        reviewed_by=row.reviewed_by, reviewed_at_ms=row.reviewed_at_ms,
        review_note=row.review_note, applied_by=row.applied_by,
        applied_at_ms=row.applied_at_ms, submit_signature=row.submit_signature,
        submit_signer=row.submit_signer, review_signature=row.review_signature,
        review_signer=row.review_signer)


async def submit_in(conn: AsyncConnection, request: ChangeSubmitRequest, *, actor: str,
                    now_ms: int, signer: str | None = None) -> ChangeRecord:
    """Record a pending change; ``signer``: the fingerprint that verified its signature."""
    target = target_of(request)
    encoded, request_hash = request_hash_of(request)
    change_id = f"chg_{uuid.uuid4().hex[:20]}"
    await conn.execute(insert(changes).values(
        change_id=change_id, action=request.action, target=target, request_json=encoded,
        request_hash=request_hash, reason=request.reason, status="pending",
        submitted_by=actor, submitted_at_ms=now_ms,
        submit_signature=request.signature if signer else None, submit_signer=signer))
    return await get_in(conn, change_id)


async def get_in(conn: AsyncConnection, change_id: str) -> ChangeRecord:
    row = (await conn.execute(select(changes).where(changes.c.change_id == change_id))).first()
    if row is None:
        raise NotFound(f"no change {change_id!r}; see GET /v1/changes", field="change_id")
    return _record(row)


async def list_in(conn: AsyncConnection, status: str | None) -> list[ChangeRecord]:
    query = select(changes).order_by(changes.c.submitted_at_ms, changes.c.change_id)
    if status is not None:
        query = query.where(changes.c.status == status)
    return [_record(r) for r in (await conn.execute(query.limit(1000))).all()]


async def review_in(conn: AsyncConnection, change_id: str, *, approve: bool, reviewer: str,
                    note: str, now_ms: int, signature: str | None = None,
                    signer: str | None = None) -> ChangeRecord:
    """Approve or reject a pending change; its submitter may do neither (four eyes)."""
    current = await get_in(conn, change_id)
    if current.submitted_by == reviewer:
        raise Forbidden(
            f"key {reviewer} submitted change {change_id}; another key must review it",
            field="authorization", code="self_review")
    result = await conn.execute(
        update(changes)
        .where(changes.c.change_id == change_id, changes.c.status == "pending")
        .values(status="approved" if approve else "rejected", reviewed_by=reviewer,
                reviewed_at_ms=now_ms, review_note=note,
                review_signature=signature if signer else None, review_signer=signer))
    if result.rowcount != 1:
        raise Conflict(f"change {change_id} is {current.status}, not pending; submit a new one",
                       field="change_id")
    return await get_in(conn, change_id)


async def consume_in(conn: AsyncConnection, change: ChangeRecord, *, actor: str,
                     now_ms: int) -> ChangeRecord:
    """Mark an approved change applied (once) in the transaction that applies it."""
    result = await conn.execute(
        update(changes)
        .where(changes.c.change_id == change.change_id, changes.c.status == "approved")
        .values(status="applied", applied_by=actor, applied_at_ms=now_ms))
    if result.rowcount != 1:
        current = await get_in(conn, change.change_id)
        raise Conflict(f"change {change.change_id} is {current.status}; only an approved "
                       "change applies, and only once", field="change_id")
    return await get_in(conn, change.change_id)
