"""The RSPP control plane: registry, rollouts, policy, admission, leases, routing,
session routes with signed tokens, session status, audit and RBAC.

Open one with :meth:`ControlPlane.open` (SQLite or PostgreSQL URL), serve it with
:func:`create_app`, and read turn-start snapshots through
:class:`ControlPlaneClient` (HTTP) or :class:`InProcessControlPlane`.
"""

from rspp.controlplane._admission import Quotas
from rspp.controlplane._app import create_app
from rspp.controlplane._audit import AuditEntry, AuditVerdict
from rspp.controlplane._bundle import build_bundle
from rspp.controlplane._client import (
    ControlPlaneClient,
    InProcessControlPlane,
    TurnStartSource,
    bundle_expiry_ms,
)
from rspp.controlplane._config import ControlPlaneSettings
from rspp.controlplane._config_lint import ConfigFile, is_config_document, lint_config_text
from rspp.controlplane._configs import ConfigKind, ConfigVersion
from rspp.controlplane._errors import (
    Conflict,
    CPError,
    Forbidden,
    InvalidRequest,
    NotFound,
    TokenInvalid,
    Unauthorized,
    Unavailable,
    VersionSkew,
)
from rspp.controlplane._failover import FailoverMonitor
from rspp.controlplane._leases import Authorization, Lease, LeaseChange, LeaseRenewal
from rspp.controlplane._openapi import openapi_document
from rspp.controlplane._policy import PolicyDocument, SessionAttributes, evaluate_policy
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._registry import ModuleRecord, PipelineRecord
from rspp.controlplane._residency import TenantPlacement
from rspp.controlplane._rollout import RolloutState, cohort_bucket, in_canary
from rspp.controlplane._routing import RuntimeInstance
from rspp.controlplane._server import ControlPlaneServer
from rspp.controlplane._service import AdmissionDenied, ControlPlane, SessionRoute
from rspp.controlplane._sessions import MigrationResult, SessionInfo, SessionStatus
from rspp.controlplane._store import Store, default_sqlite_url
from rspp.controlplane._tokens import SessionClaims, TokenIssuer, TokenKeys, TokenVerifier

__all__ = [
    "AdmissionDenied",
    "AuditEntry",
    "AuditVerdict",
    "Authorization",
    "CPError",
    "ConfigFile",
    "ConfigKind",
    "ConfigVersion",
    "Conflict",
    "ControlPlane",
    "ControlPlaneClient",
    "ControlPlaneServer",
    "ControlPlaneSettings",
    "FailoverMonitor",
    "Forbidden",
    "InProcessControlPlane",
    "InvalidRequest",
    "Lease",
    "LeaseChange",
    "LeaseRenewal",
    "MigrationResult",
    "ModuleRecord",
    "NotFound",
    "PipelineRecord",
    "PolicyDocument",
    "Principal",
    "Quotas",
    "Role",
    "RolloutState",
    "RuntimeInstance",
    "SessionAttributes",
    "SessionClaims",
    "SessionInfo",
    "SessionRoute",
    "SessionStatus",
    "Store",
    "TenantPlacement",
    "TokenInvalid",
    "TokenIssuer",
    "TokenKeys",
    "TokenVerifier",
    "TurnStartSource",
    "Unauthorized",
    "Unavailable",
    "VersionSkew",
    "build_bundle",
    "bundle_expiry_ms",
    "cohort_bucket",
    "create_app",
    "default_sqlite_url",
    "evaluate_policy",
    "in_canary",
    "is_config_document",
    "lint_config_text",
    "openapi_document",
]
