"""Admission control at session start (CP-05, F-049, F-050, F-098).

Per-tenant quotas come from the active ``admission`` config (tenant scope, else
``*``, else built-in defaults). Over the concurrent-session limit a session is
rejected; over the sessions-per-minute rate it is deferred with a retry hint.
Every decision is a contract :class:`DecisionOutcome` (phase ``pre_turn``,
emitted by CP-05), stored per tenant and counted in Prometheus.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

import msgspec
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import (
    AdmissionPolicy,
    DecisionOutcome,
    OutcomeEmitter,
    OutcomeKind,
    OutcomePhase,
    OutcomeScope,
    SnapshotMeta,
)
from rspp.controlplane._configs import ConfigVersion
from rspp.controlplane._errors import InvalidRequest
from rspp.controlplane._schema import outcomes, sessions

WINDOW_MS = 60_000
logger = logging.getLogger("rspp.controlplane.admission")

PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]


class Quotas(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_concurrent_sessions: PositiveInt = 100
    sessions_per_minute: PositiveInt = 600
    turns_per_minute: PositiveInt = 6000
    #: LLM tokens per minute (None: not limited); new turns over it are deferred
    llm_tokens_per_minute: PositiveInt | None = None


def parse_quotas(body: dict[str, Any]) -> Quotas:
    try:
        return msgspec.convert(body, Quotas)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"admission quotas invalid: {exc}", field="admission") from None


def admission_snapshot(
    tenant_id: str, config: ConfigVersion | None, *, now_ms: int, ttl_ms: int
) -> AdmissionPolicy:
    quotas = parse_quotas(config.body) if config is not None else Quotas()
    version = config.version if config is not None else 0
    scope = config.scope if config is not None else "builtin"
    meta = SnapshotMeta(
        snapshot_id=f"ap:{tenant_id}:{scope}:v{version}",
        version=version,
        issued_at_ms=now_ms,
        expires_at_ms=now_ms + ttl_ms,
    )
    return AdmissionPolicy(
        meta=meta,
        tenant_id=tenant_id,
        max_concurrent_sessions=quotas.max_concurrent_sessions,
        sessions_per_minute=quotas.sessions_per_minute,
        turns_per_minute=quotas.turns_per_minute,
        llm_tokens_per_minute=quotas.llm_tokens_per_minute,
    )


async def decide_in(
    conn: AsyncConnection, policy: AdmissionPolicy, *, session_id: str, now_ms: int
) -> DecisionOutcome:
    tenant = policy.tenant_id
    active = (
        await conn.execute(
            select(func.count())
            .select_from(sessions)
            .where(sessions.c.tenant_id == tenant, sessions.c.status != "ended")
        )
    ).scalar_one()
    recent, oldest = (
        await conn.execute(
            select(func.count(), func.min(sessions.c.created_at_ms)).where(
                sessions.c.tenant_id == tenant, sessions.c.created_at_ms > now_ms - WINDOW_MS
            )
        )
    ).one()
    if active >= policy.max_concurrent_sessions:
        kind, scope = OutcomeKind.REJECT, OutcomeScope.TENANT
        reason = (
            f"tenant {tenant} is at max_concurrent_sessions={policy.max_concurrent_sessions} "
            f"({active} active); end a session or raise the quota"
        )
    elif recent >= policy.sessions_per_minute:
        retry_ms = max(1, int(oldest) + WINDOW_MS - now_ms)
        kind, scope = OutcomeKind.DEFER, OutcomeScope.TENANT
        reason = (
            f"tenant {tenant} reached sessions_per_minute={policy.sessions_per_minute}; "
            f"retry after {retry_ms} ms"
        )
    else:
        kind, scope = OutcomeKind.ADMIT, OutcomeScope.SESSION
        reason = f"within quotas ({active + 1}/{policy.max_concurrent_sessions} concurrent)"
    outcome = DecisionOutcome(
        outcome_kind=kind,
        phase=OutcomePhase.PRE_TURN,
        scope=scope,
        session_id=session_id,
        event_id=f"cp-adm-{uuid.uuid4().hex}",
        runtime_timestamp_ms=now_ms,
        wall_clock_timestamp_ms=now_ms,
        emitted_by=OutcomeEmitter.CP_05,
        reason=reason,
    )
    await conn.execute(
        insert(outcomes).values(
            tenant_id=tenant,
            session_id=session_id,
            kind=kind.value,
            body_json=msgspec.json.encode(outcome).decode(),
            created_at_ms=now_ms,
        )
    )
    logger.info(
        "admission %s tenant=%s session_id=%s: %s",
        kind.value,
        tenant,
        session_id,
        reason,
        extra={"tenant_id": tenant, "session_id": session_id, "outcome": kind.value},
    )
    return outcome


async def tenant_outcomes(
    conn: AsyncConnection, tenant_id: str, limit: int = 100
) -> list[DecisionOutcome]:
    rows = (
        await conn.execute(
            select(outcomes.c.body_json)
            .where(outcomes.c.tenant_id == tenant_id)
            .order_by(outcomes.c.seq.desc())
            .limit(limit)
        )
    ).all()
    return [msgspec.json.decode(r[0], type=DecisionOutcome) for r in rows]
