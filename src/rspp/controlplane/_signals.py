"""Control signals the control plane emits (CP-07 leases, CP-08 migration) and their log."""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import (
    SCHEMA_VERSION,
    ControlSignal,
    Emitter,
    EventScope,
    Lane,
    PayloadClass,
    SignalName,
)
from rspp.controlplane._schema import signals


async def emit_signal(
    conn: AsyncConnection,
    *,
    session_id: str,
    pipeline_version: str,
    signal: SignalName,
    emitted_by: Emitter,
    epoch: int,
    now_ms: int,
    reason: str,
) -> ControlSignal:
    """Build a contract-valid ControlSignal and append it to the session's signal log."""
    count = (
        await conn.execute(
            select(func.count()).select_from(signals).where(signals.c.session_id == session_id)
        )
    ).scalar_one()
    record = ControlSignal(
        schema_version=SCHEMA_VERSION,
        event_scope=EventScope.SESSION,
        session_id=session_id,
        pipeline_version=pipeline_version,
        event_id=f"cp-{uuid.uuid4().hex}",
        lane=Lane.CONTROL,
        transport_sequence=None,
        runtime_sequence=int(count),
        runtime_timestamp_ms=now_ms,
        wall_clock_timestamp_ms=now_ms,
        payload_class=PayloadClass.METADATA,
        signal=signal,
        emitted_by=emitted_by,
        authority_epoch=epoch,
        reason=reason,
    )
    await conn.execute(
        insert(signals).values(
            session_id=session_id, body_json=msgspec.json.encode(record).decode()
        )
    )
    return record


async def session_signals(conn: AsyncConnection, session_id: str) -> list[ControlSignal]:
    rows = (
        await conn.execute(
            select(signals.c.body_json)
            .where(signals.c.session_id == session_id)
            .order_by(signals.c.seq)
        )
    ).all()
    return [msgspec.json.decode(r[0], type=ControlSignal) for r in rows]
