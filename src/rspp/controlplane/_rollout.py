"""Rollouts and version resolution (CP-09, F-093, F-100).

A pipeline's rollout has a stable version and optionally a canary with a
percentage and a tenant allowlist. Cohorts are deterministic: a session lands
in bucket ``sha256(name:canary:session_id) mod 10000`` and joins the canary when
the bucket is below ``percent * 100``. Raising the percentage keeps everyone
already in the canary there. An allowlist restricts the canary to those tenants.
Rollback pins the stable version and clears the canary. With no rollout, the
latest published version resolves.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import SnapshotMeta, VersionResolution
from rspp.controlplane._errors import Conflict, InvalidRequest, NotFound
from rspp.controlplane._registry import Registry
from rspp.controlplane._schema import rollouts

BUCKETS = 10_000


class RolloutState(msgspec.Struct, frozen=True, kw_only=True):
    pipeline_name: str
    revision: int
    stable_version: str
    canary_version: str | None = None
    percent: float = 0.0
    tenants: tuple[str, ...] = ()
    actor: str = ""
    updated_at_ms: int = 0


def cohort_bucket(pipeline_name: str, canary_version: str, key: str) -> int:
    digest = hashlib.sha256(f"{pipeline_name}:{canary_version}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_canary(state: RolloutState, *, tenant_id: str, session_id: str | None) -> bool:
    if state.canary_version is None:
        return False
    if state.tenants and tenant_id not in state.tenants:
        return False
    key = session_id or tenant_id
    return cohort_bucket(state.pipeline_name, state.canary_version, key) < round(
        state.percent * 100
    )


class Rollouts:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def state_in(self, conn: AsyncConnection, name: str) -> RolloutState | None:
        row = (await conn.execute(select(rollouts).where(rollouts.c.pipeline_name == name))).first()
        if row is None:
            return None
        return RolloutState(
            pipeline_name=name,
            revision=row.revision,
            stable_version=row.stable_version,
            canary_version=row.canary_version,
            percent=row.percent,
            tenants=tuple(json.loads(row.tenants_json)),
            actor=row.actor,
            updated_at_ms=row.updated_at_ms,
        )

    async def set_canary_in(
        self,
        conn: AsyncConnection,
        name: str,
        canary: str,
        percent: float,
        tenants: tuple[str, ...],
        *,
        actor: str,
        now_ms: int,
    ) -> RolloutState:
        if not 0 <= percent <= 100:
            raise InvalidRequest(f"percent must be 0..100, got {percent}", field="percent")
        await self._registry.get(name, None, conn=conn)  # the pipeline: 404 naming `name`
        try:  # a version never published is a bad body (422 naming `canary`), like rollback
            await self._registry.get(name, canary, conn=conn)
        except NotFound as exc:
            raise InvalidRequest(
                f"version {canary!r} of pipeline {name!r} is not published; "
                "see `rspp cp list` for its versions", field="canary") from exc
        current = await self.state_in(conn, name)
        if current is not None:
            stable = current.stable_version
        else:
            published = [r for r in await self._list_in(conn, name) if r != canary]
            if not published:
                raise Conflict(
                    f"pipeline {name} has no stable version besides {canary}; publish one first "
                    f"or pin {canary} with rollback --to",
                    field="canary",
                )
            stable = published[-1]
        if stable == canary:
            raise Conflict(
                f"{canary} is already the stable version of {name}", field="canary"
            )
        return await self._write(
            conn, name, stable, canary, percent, tenants, actor, now_ms, current
        )

    async def pin_in(
        self, conn: AsyncConnection, name: str, version: str, *, actor: str, now_ms: int
    ) -> RolloutState:
        """Rollback/promote: every new session resolves to ``version``; canary cleared.

        The pipeline must exist (404 naming ``name``); a version of it that was never
        published is a bad request body (422 naming ``to``), not a missing resource.
        """
        await self._registry.get(name, None, conn=conn)
        try:
            await self._registry.get(name, version, conn=conn)
        except NotFound as exc:
            raise InvalidRequest(
                f"version {version!r} of pipeline {name!r} is not published; "
                "see `rspp cp list` for its versions", field="to") from exc
        current = await self.state_in(conn, name)
        return await self._write(conn, name, version, None, 0.0, (), actor, now_ms, current)

    async def resolve_in(
        self,
        conn: AsyncConnection,
        name: str,
        *,
        tenant_id: str,
        session_id: str | None,
        now_ms: int,
        ttl_ms: int,
    ) -> VersionResolution:
        state = await self.state_in(conn, name)
        if state is None:
            record = await self._registry.get(name, conn=conn)
            version, revision, cohort, rollout_id = record.version, 0, "default", None
        else:
            canary = in_canary(state, tenant_id=tenant_id, session_id=session_id)
            version = (
                state.canary_version if canary and state.canary_version else state.stable_version
            )
            revision, cohort = state.revision, ("canary" if canary else "stable")
            rollout_id = f"{name}:r{state.revision}"
            record = await self._registry.get(name, version, conn=conn)
        meta = SnapshotMeta(
            snapshot_id=f"vr:{name}:r{revision}:{cohort}:{version}",
            version=revision,
            issued_at_ms=now_ms,
            expires_at_ms=now_ms + ttl_ms,
        )
        return VersionResolution(
            meta=meta,
            pipeline_name=name,
            pipeline_version=version,
            spec_hash=record.spec_hash,
            rollout_id=rollout_id,
            cohort=cohort,
        )

    async def _list_in(self, conn: AsyncConnection, name: str) -> list[str]:
        from rspp.controlplane._schema import pipelines

        rows = (
            await conn.execute(
                select(pipelines.c.version)
                .where(pipelines.c.name == name)
                .order_by(pipelines.c.publish_seq)
            )
        ).all()
        return [str(r[0]) for r in rows]

    async def _write(
        self,
        conn: AsyncConnection,
        name: str,
        stable: str,
        canary: str | None,
        percent: float,
        tenants: tuple[str, ...],
        actor: str,
        now_ms: int,
        current: RolloutState | None,
    ) -> RolloutState:
        values: dict[str, Any] = {
            "stable_version": stable,
            "canary_version": canary,
            "percent": percent,
            "tenants_json": json.dumps(list(tenants)),
            "actor": actor,
            "updated_at_ms": now_ms,
        }
        if current is None:
            revision = 1
            await conn.execute(
                insert(rollouts).values(pipeline_name=name, revision=revision, **values)
            )
        else:
            revision = current.revision + 1
            result = await conn.execute(
                update(rollouts)
                .where(rollouts.c.pipeline_name == name, rollouts.c.revision == current.revision)
                .values(revision=revision, **values)
            )
            if result.rowcount != 1:
                raise Conflict(f"rollout of {name} changed concurrently; retry", field="name")
        return RolloutState(
            pipeline_name=name,
            revision=revision,
            stable_version=stable,
            canary_version=canary,
            percent=percent,
            tenants=tenants,
            actor=actor,
            updated_at_ms=now_ms,
        )
