"""Roles and bearer API keys (F-115, NF-012).

Roles are ordered ``viewer < operator < admin``; every endpoint names the least
role it needs. Keys are stored only as SHA-256 digests; a key may be scoped to
one tenant, in which case it only sees that tenant's sessions.
"""

from __future__ import annotations

import secrets
from enum import StrEnum

import msgspec
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import Forbidden, Unauthorized
from rspp.controlplane._schema import api_keys
from rspp.controlplane._store import Store
from rspp.controlplane._util import sha256_hex


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: key id (or ``bootstrap-admin``), role and optional tenant scope."""

    key_id: str
    role: Role
    tenant_id: str | None = None

    def allows(self, needed: Role) -> bool:
        return _RANK[self.role] >= _RANK[needed]

    def require(self, needed: Role, action: str) -> None:
        if not self.allows(needed):
            raise Forbidden(
                f"{action} needs role {needed.value} or higher; key {self.key_id} has role "
                f"{self.role.value}. Ask an admin for a key with `rspp cp keys create --role "
                f"{needed.value}`",
                field="authorization",
            )

    def require_tenant(self, tenant_id: str) -> None:
        if self.tenant_id is not None and self.tenant_id != tenant_id:
            raise Forbidden(
                f"key {self.key_id} is scoped to tenant {self.tenant_id!r}, not {tenant_id!r}",
                field="tenant_id",
            )


class KeyRing:
    def __init__(self, store: Store, bootstrap_admin_key: str | None) -> None:
        self._store = store
        self._bootstrap = sha256_hex(bootstrap_admin_key) if bootstrap_admin_key else None

    async def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise Unauthorized(
                "missing API key; send `Authorization: Bearer KEY` "
                "(CLI: --api-key or RSPP_API_KEY)",
                field="authorization",
            )
        digest = sha256_hex(presented)
        if self._bootstrap is not None and secrets.compare_digest(digest, self._bootstrap):
            return Principal(key_id="bootstrap-admin", role=Role.ADMIN)
        async with self._store.engine.connect() as conn:
            row = (
                await conn.execute(select(api_keys).where(api_keys.c.key_hash == digest))
            ).first()
        if row is None:
            raise Unauthorized(
                "unknown API key; create one with `rspp cp keys create`", field="authorization"
            )
        return Principal(key_id=row.key_id, role=Role(row.role), tenant_id=row.tenant_id)

    async def create_in(
        self,
        conn: AsyncConnection,
        *,
        role: Role,
        tenant_id: str | None,
        created_by: str,
        now_ms: int,
    ) -> tuple[str, str]:
        """Create a key; returns ``(key_id, secret)``. The secret is shown once."""
        key_id = "k_" + secrets.token_hex(6)
        secret = f"rspp_{role.value}_{secrets.token_urlsafe(24)}"
        await conn.execute(
            insert(api_keys).values(
                key_id=key_id,
                key_hash=sha256_hex(secret),
                role=role.value,
                tenant_id=tenant_id,
                created_by=created_by,
                created_at_ms=now_ms,
            )
        )
        return key_id, secret
