"""Typed response bodies of the HTTP API (the handlers return them; OpenAPI describes them).

Records that the services already return (``PipelineRecord``, ``SessionRoute``,
``Lease`` ...) are used as they are; this module adds the envelopes around them
and the error body every 4xx/5xx carries.
"""

from __future__ import annotations

import msgspec

from rspp.contracts import ControlSignal, DecisionOutcome, TurnStartBundle
from rspp.controlplane._audit import AuditEntry
from rspp.controlplane._change_signing import SignerKey
from rspp.controlplane._changes import ChangeRecord
from rspp.controlplane._configs import ConfigVersion
from rspp.controlplane._leases import LeaseRenewal
from rspp.controlplane._region_failover import SessionFailover
from rspp.controlplane._registry import ModuleRecord, PipelineRecord
from rspp.controlplane._rollout import RolloutState
from rspp.controlplane._routing import RuntimeInstance
from rspp.controlplane._sessions import MigrationResult
from rspp.controlplane._tokens import SessionClaims


class _Reply(msgspec.Struct, frozen=True, kw_only=True):
    pass


class ErrorDetail(_Reply, frozen=True, kw_only=True):
    code: str
    message: str
    field: str | None


class ErrorReply(_Reply, frozen=True, kw_only=True):
    """``{"error": {"code", "message", "field"}}``: every error names the offending field."""

    error: ErrorDetail


class HealthReply(_Reply, frozen=True, kw_only=True):
    status: str


class PublishReply(_Reply, frozen=True, kw_only=True):
    pipeline: PipelineRecord
    created: bool


class ModuleReply(_Reply, frozen=True, kw_only=True):
    module: ModuleRecord
    created: bool


class PipelineList(_Reply, frozen=True, kw_only=True):
    pipelines: list[PipelineRecord]


class RolloutReply(_Reply, frozen=True, kw_only=True):
    rollout: RolloutState | None


class ChangeList(_Reply, frozen=True, kw_only=True):
    changes: list[ChangeRecord]


class SignerKeyList(_Reply, frozen=True, kw_only=True):
    keys: list[SignerKey]


class ConfigList(_Reply, frozen=True, kw_only=True):
    versions: list[ConfigVersion]


class RuntimeList(_Reply, frozen=True, kw_only=True):
    runtimes: list[RuntimeInstance]


class HeartbeatReply(_Reply, frozen=True, kw_only=True):
    runtime: RuntimeInstance
    migrations: list[MigrationResult]


class MigrationList(_Reply, frozen=True, kw_only=True):
    migrations: list[MigrationResult]


class ProviderHealthReply(_Reply, frozen=True, kw_only=True):
    version: int


class SignalList(_Reply, frozen=True, kw_only=True):
    signals: list[ControlSignal]


class TokenReply(_Reply, frozen=True, kw_only=True):
    token: str
    claims: SessionClaims
    #: where to connect with it: the transport endpoint of the runtime the session is on
    #: now (after a failover, the new one)
    endpoint: str | None = None


class VerifyReply(_Reply, frozen=True, kw_only=True):
    valid: bool
    claims: SessionClaims


class RegionIncidentReply(_Reply, frozen=True, kw_only=True):
    region: str
    incident: bool
    changed: bool
    #: opening: what each in-flight session of the region does (F-113)
    sessions: list[SessionFailover] = []


class Incident(_Reply, frozen=True, kw_only=True):
    reason: str
    opened_by: str
    opened_at_ms: int


class RegionRow(_Reply, frozen=True, kw_only=True):
    region: str
    runtimes: int
    healthy: int
    free: int
    incident: Incident | None = None
    #: providers reported unhealthy in the region (F-112)
    providers_unhealthy: list[str] = []


class RegionList(_Reply, frozen=True, kw_only=True):
    regions: list[RegionRow]


class PublicKey(_Reply, frozen=True, kw_only=True):
    kid: str
    algorithm: str
    public_pem: str | None
    state: str
    created_at_ms: int
    verify_until_ms: int | None = None


class TokenKeysReply(_Reply, frozen=True, kw_only=True):
    """The active key (``algorithm``, ``public_pem``, ``kid``) and every key that still
    verifies (``keys``: a rotated-out key until its tokens expired; F-169)."""

    algorithm: str
    public_pem: str | None
    kid: str | None = None
    keys: list[PublicKey] = msgspec.field(default_factory=list)


class KeyRotationReply(_Reply, frozen=True, kw_only=True):
    kid: str | None
    previous_kid: str | None = None
    previous_verifies_until_ms: int | None = None
    reason: str | None = None
    unchanged: bool = False


class OutcomeList(_Reply, frozen=True, kw_only=True):
    outcomes: list[DecisionOutcome]


class AuditList(_Reply, frozen=True, kw_only=True):
    entries: list[AuditEntry]


class KeyReply(_Reply, frozen=True, kw_only=True):
    key_id: str
    key: str
    role: str
    tenant_id: str | None


class LeaseRenewals(_Reply, frozen=True, kw_only=True):
    leases: list[LeaseRenewal]


class SessionBundle(_Reply, frozen=True, kw_only=True):
    session_id: str
    bundle: TurnStartBundle


class BundleList(_Reply, frozen=True, kw_only=True):
    bundles: list[SessionBundle]
