"""Versioned configuration documents: policies, provider configs, admission quotas (F-102).

Each ``(kind, scope)`` has an append-only list of versions and a head pointing at
the active one, so each kind rolls forward (publish + activate) or back
(activate an earlier version) independently of pipelines and of each other.
``scope`` is a tenant id or ``*`` for the default that applies to every tenant.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import msgspec
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import NotFound
from rspp.controlplane._schema import config_heads, configs
from rspp.controlplane._util import canonical_json, sha256_hex

DEFAULT_SCOPE = "*"


def scope_tenant(scope: str) -> str | None:
    """The tenant a config scope belongs to (None: the default scope every tenant shares)."""
    return None if scope == DEFAULT_SCOPE else scope


class ConfigKind(StrEnum):
    POLICY = "policy"
    PROVIDER_CONFIG = "provider_config"
    ADMISSION = "admission"


class ConfigVersion(msgspec.Struct, frozen=True, kw_only=True):
    kind: ConfigKind
    scope: str
    version: int
    body: dict[str, Any]
    body_hash: str
    author: str
    created_at_ms: int
    active: bool = False


async def publish_config_in(
    conn: AsyncConnection,
    kind: ConfigKind,
    scope: str,
    body: dict[str, Any],
    *,
    author: str,
    now_ms: int,
    activate: bool,
) -> ConfigVersion:
    """Append a new version (numbered 1, 2, ...) and optionally make it active."""
    latest = (
        await conn.execute(
            select(func.max(configs.c.version)).where(
                configs.c.kind == kind.value, configs.c.scope == scope
            )
        )
    ).scalar()
    version = int(latest or 0) + 1
    body_json = canonical_json(body)
    digest = sha256_hex(body_json)
    await conn.execute(
        insert(configs).values(
            kind=kind.value,
            scope=scope,
            version=version,
            body_json=body_json,
            body_hash=digest,
            author=author,
            created_at_ms=now_ms,
        )
    )
    if activate:
        await activate_config_in(conn, kind, scope, version, now_ms=now_ms)
    return ConfigVersion(
        kind=kind,
        scope=scope,
        version=version,
        body=body,
        body_hash=digest,
        author=author,
        created_at_ms=now_ms,
        active=activate,
    )


async def activate_config_in(
    conn: AsyncConnection, kind: ConfigKind, scope: str, version: int, *, now_ms: int
) -> None:
    exists = (
        await conn.execute(
            select(configs.c.version).where(
                configs.c.kind == kind.value, configs.c.scope == scope, configs.c.version == version
            )
        )
    ).first()
    if exists is None:
        raise NotFound(
            f"{kind.value} version {version} for scope {scope!r} does not exist", field="version"
        )
    result = await conn.execute(
        update(config_heads)
        .where(config_heads.c.kind == kind.value, config_heads.c.scope == scope)
        .values(active_version=version, revision=config_heads.c.revision + 1, updated_at_ms=now_ms)
    )
    if result.rowcount == 0:
        await conn.execute(
            insert(config_heads).values(
                kind=kind.value,
                scope=scope,
                active_version=version,
                revision=1,
                updated_at_ms=now_ms,
            )
        )


#: config versions joined to their kind's and scope's head: the active ones
_ACTIVE = select(configs).join(
    config_heads,
    (config_heads.c.kind == configs.c.kind)
    & (config_heads.c.scope == configs.c.scope)
    & (config_heads.c.active_version == configs.c.version),
)


async def active_config(
    conn: AsyncConnection, kind: ConfigKind, scope: str, *, fall_back_to_default: bool = True
) -> ConfigVersion | None:
    """The active version for ``scope``, else the default scope's, else None."""
    scopes = [scope, DEFAULT_SCOPE] if fall_back_to_default and scope != DEFAULT_SCOPE else [scope]
    for candidate in scopes:
        row = (
            await conn.execute(
                _ACTIVE.where(configs.c.kind == kind.value, configs.c.scope == candidate)
            )
        ).first()
        if row is not None:
            return _version(row, True)
    return None


async def active_configs(
    conn: AsyncConnection, kinds: tuple[ConfigKind, ...], scope: str
) -> dict[ConfigKind, ConfigVersion | None]:
    """:func:`active_config` of each of ``kinds`` for ``scope`` (falling back to the
    default scope), in one statement."""
    scopes = [scope, DEFAULT_SCOPE] if scope != DEFAULT_SCOPE else [scope]
    rows = await conn.execute(
        _ACTIVE.where(configs.c.kind.in_([k.value for k in kinds]), configs.c.scope.in_(scopes))
    )
    found: dict[ConfigKind, ConfigVersion | None] = dict.fromkeys(kinds)
    for row in sorted(rows, key=lambda r: r.scope != scope):  # the scope's own first
        kind = ConfigKind(row.kind)
        if found[kind] is None:
            found[kind] = _version(row, True)
    return found


async def list_configs(conn: AsyncConnection, kind: ConfigKind, scope: str) -> list[ConfigVersion]:
    head = (
        await conn.execute(
            select(config_heads.c.active_version).where(
                config_heads.c.kind == kind.value, config_heads.c.scope == scope
            )
        )
    ).scalar()
    rows = (
        await conn.execute(
            select(configs)
            .where(configs.c.kind == kind.value, configs.c.scope == scope)
            .order_by(configs.c.version)
        )
    ).all()
    return [_version(r, r.version == head) for r in rows]


def _version(row: Any, active: bool) -> ConfigVersion:
    return ConfigVersion(
        kind=ConfigKind(row.kind),
        scope=row.scope,
        version=row.version,
        body=json.loads(row.body_json),
        body_hash=row.body_hash,
        author=row.author,
        created_at_ms=row.created_at_ms,
        active=active,
    )
