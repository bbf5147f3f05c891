"""Typed request bodies of the HTTP API (decoded at the edge, never passed as dicts)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class _Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every request body: unknown fields are refused with their name."""


class PublishRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    spec: str
    filename: str = "<api>"


class ModuleRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    module: str


class RolloutRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    canary: str
    percent: float
    tenants: tuple[str, ...] = ()


class RollbackRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    to: str


class ConfigRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    body: dict[str, Any]
    activate: bool = True


class ActivateRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: int


class RegisterRuntimeRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    runtime_id: str
    endpoint: str
    transport_kind: str = "websocket"
    region: str = "default"
    capacity: int = 100


class HeartbeatRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    health: Literal["healthy", "degraded", "unhealthy"]
    load: int | None = None
    mode: Literal["migrate", "drain"] = "migrate"


class FailoverRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["migrate", "drain"] = "migrate"


class ProviderHealthRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: Literal["healthy", "degraded", "unhealthy", "unknown"]
    error_rate: float = 0.0
    latency_p95_ms: int | None = None


class RouteRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tenant_id: str
    pipeline_name: str
    session_id: str | None = None
    attributes: dict[str, str] = {}
    ttl_s: int | None = None


class StatusRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: str


class MigrateRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    target: str | None = None


class TokenRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tenant_id: str
    ttl_s: int | None = None


class VerifyRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token: str


class LeaseRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    holder: str
    epoch: int | None = None
    ttl_ms: int | None = None


class KeyRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    role: str
    tenant_id: str | None = None
