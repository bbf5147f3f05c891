"""The route table: every HTTP operation with its role, tenant scope and typed messages.

Deny by default: an operation is reachable only through this table, and each entry
must say who may call it:

- ``role``: the least role (``viewer < operator < admin``), ``None`` only for public
  routes (liveness);
- ``scope``: ``FLEET`` (a key scoped to a tenant is refused: runtimes, global
  publish/rollout/rollback, configs, provider health reports, keys, the whole audit
  log), ``TENANT`` (a tenant key may act only when the tenant named by ``tenant``
  is its own; a fleet key may act for any tenant) or ``ANY`` (any key with the role:
  read-only, tenant-neutral data such as published pipelines);
- ``tenant``: where a ``TENANT`` route's tenant comes from: a path/query/body field,
  the owner of the session named in the path, or the claims of a presented token;
  ``optional`` when the field may be left out: a tenant key then acts for its own
  tenant and a fleet key for every tenant (the audit log).

The dispatcher (``_app.py``) enforces all of it in one place before the handler runs;
the OpenAPI document and the security test matrix are generated from this table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from rspp.contracts import (
    ProviderHealth,
    SchemaDocument,
    SchemaIndex,
    TurnStartBundle,
    VersionResolution,
)
from rspp.controlplane import _handlers as h
from rspp.controlplane import _replies as r
from rspp.controlplane import _requests as q
from rspp.controlplane._audit import AuditVerdict
from rspp.controlplane._change_signing import ProvenanceReport, SignerKey
from rspp.controlplane._changes import ChangeRecord
from rspp.controlplane._configs import ConfigKind, ConfigVersion
from rspp.controlplane._debug_grant import DebugGrant, authorize_debug
from rspp.controlplane._kms_ops import (
    KmsKeys,
    KmsRewrapReply,
    KmsRotateReply,
    KmsRotateRequest,
    kms_keys,
    rewrap_kms_key,
    rotate_kms_key,
)
from rspp.controlplane._leases import Authorization, Lease, LeaseChange
from rspp.controlplane._notices import NoticesRequest, RuntimeNotices, runtime_notices
from rspp.controlplane._ops_fleet import Deregistered
from rspp.controlplane._ops_gates import GateIngest, RolloutStatus
from rspp.controlplane._ops_handoffs import LeaseRelease
from rspp.controlplane._rbac import Role
from rspp.controlplane._registry import ModuleRecord, PipelineRecord
from rspp.controlplane._residency import TenantPlacement
from rspp.controlplane._routing import RuntimeInstance
from rspp.controlplane._service import SessionRoute
from rspp.controlplane._session_start import SessionStart, SessionStartRequest, start_session
from rspp.controlplane._session_state import (
    SessionState,
    StateOutcomes,
    StateQuery,
    StateSaved,
    StateWrite,
    StateWrites,
    load_state,
    save_state,
    save_states,
)
from rspp.controlplane._sessions import MigrationResult, SessionInfo
from rspp.controlplane._signing_keys import KeyStatus
from rspp.controlplane._slo import SloReport
from rspp.controlplane._tenant_placement import (
    PlacementCleared,
    clear_placement,
    get_placement,
    put_placement,
)
from rspp.providers import UsageSummary

Handler = Callable[[h.Call], Awaitable[Any]]


class Scope(StrEnum):
    PUBLIC = "public"
    FLEET = "fleet"
    TENANT = "tenant"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class TenantFrom:
    """Where a ``TENANT`` route finds the tenant it acts for."""

    where: Literal["path", "query", "body", "session", "token"]
    name: str
    #: the field may be absent: a tenant key then acts for its own tenant, a fleet key for all
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Op:
    method: str
    path: str
    handler: Handler
    role: Role | None
    scope: Scope
    summary: str
    tenant: TenantFrom | None = None
    body: type[Any] | None = None
    query: type[Any] = q.NoQuery
    response: Any = None
    status: int = 200
    #: other success statuses (publish answers 200 when the version already exists)
    also: tuple[int, ...] = ()
    #: error statuses the operation may answer besides the common ones
    errors: tuple[int, ...] = ()
    #: body limit in bytes when it differs from the server default (spec uploads)
    body_limit: Literal["default", "spec"] = "default"
    tag: str = "control-plane"
    #: the success body's media type (``/metrics`` answers Prometheus text)
    media: str = "application/json"

    @property
    def operation_id(self) -> str:
        return f"{self.handler.__name__}_{self.method.lower()}"

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(seg[1:-1] for seg in self.path.split("/") if seg.startswith("{"))


_S, _T = Scope, TenantFrom
V, OP, A = Role.VIEWER, Role.OPERATOR, Role.ADMIN
SESSION = _T("session", "session_id")

CONFIG_BODIES: dict[ConfigKind, type[Any]] = {
    ConfigKind.POLICY: q.PolicyConfigRequest,
    ConfigKind.ADMISSION: q.AdmissionConfigRequest,
    ConfigKind.PROVIDER_CONFIG: q.ConfigRequest,
}

ROUTES: tuple[Op, ...] = (
    Op("GET", "/healthz", h.healthz, None, _S.PUBLIC, "Liveness", response=r.HealthReply),
    # registry and rollouts: pipelines are fleet-wide; publishing and rolling out is fleet work
    Op("POST", "/v1/pipelines", h.publish, OP, _S.FLEET, "Publish a PipelineSpec version",
       body=q.PublishRequest, response=r.PublishReply, status=201, also=(200,),
       errors=(409,), body_limit="spec", tag="registry"),
    Op("GET", "/v1/pipelines", h.list_pipelines, V, _S.ANY, "List published versions",
       query=q.PipelinesQuery, response=r.PipelineList, tag="registry"),
    Op("GET", "/v1/pipelines/{name}", h.get_pipeline, V, _S.ANY, "Latest version",
       response=PipelineRecord, errors=(404,), tag="registry"),
    Op("GET", "/v1/pipelines/{name}/versions/{version}", h.get_pipeline, V, _S.ANY,
       "One version", response=PipelineRecord, errors=(404,), tag="registry"),
    Op("GET", "/v1/pipelines/{name}/rollout", h.get_rollout, V, _S.ANY, "Rollout state",
       response=r.RolloutReply, tag="registry"),
    Op("POST", "/v1/pipelines/{name}/rollout", h.rollout, OP, _S.FLEET, "Canary rollout",
       body=q.RolloutRequest, response=r.RolloutReply, errors=(404, 409), tag="registry"),
    Op("POST", "/v1/pipelines/{name}/rollback", h.rollback, OP, _S.FLEET,
       "Rollback to a version", body=q.RollbackRequest, response=r.RolloutReply,
       errors=(404, 409), tag="registry"),
    Op("GET", "/v1/pipelines/{name}/rollout/status", h.rollout_status, V, _S.ANY,
       "Gated rollout status: canary vs baseline gates, step, last decision",
       response=RolloutStatus, errors=(404,), tag="registry"),
    Op("GET", "/v1/pipelines/{name}/resolve", h.resolve, V, _S.TENANT,
       "Version resolution snapshot", tenant=_T("query", "tenant_id"), query=q.ResolveQuery,
       response=VersionResolution, errors=(404,), tag="registry"),
    Op("POST", "/v1/modules", h.publish_module, OP, _S.FLEET, "Publish a subgraph module",
       body=q.ModuleRequest, response=r.ModuleReply, status=201, also=(200,), errors=(409,),
       body_limit="spec", tag="registry"),
    Op("GET", "/v1/modules/{name}/versions/{version}", h.get_module, V, _S.ANY,
       "One subgraph module version (with its text)", response=ModuleRecord, errors=(404,),
       tag="registry"),
    # schema registry: the contract schemas by schema_version, for tools (read-only, fleet-wide)
    Op("GET", "/v1/schemas", h.list_schemas, V, _S.ANY, "Contract schema versions",
       response=SchemaIndex, tag="schemas"),
    Op("GET", "/v1/schemas/{schema_version}", h.get_schema, V, _S.ANY,
       "Every contract schema of one schema_version (documented types and validation)",
       response=SchemaDocument, errors=(404,), tag="schemas"),
    Op("GET", "/v1/schemas/{schema_version}/{contract_kind}", h.get_schema, V, _S.ANY,
       "One contract kind's schemas of one schema_version", response=SchemaDocument,
       errors=(404,), tag="schemas"),
    # versioned configs: changing them is fleet work; a tenant may read its own scope
    *(
        Op("POST", f"/v1/configs/{kind.value}/{{scope}}", h.config_publisher(kind), OP,
           _S.FLEET, f"Publish a {kind.value} version", body=body, response=ConfigVersion,
           status=201, tag="configs")
        for kind, body in CONFIG_BODIES.items()
    ),
    *(
        Op("GET", f"/v1/configs/{kind.value}/{{scope}}", h.config_lister(kind), V, _S.TENANT,
           f"{kind.value} versions of a scope", tenant=_T("path", "scope"),
           response=r.ConfigList, tag="configs")
        for kind in CONFIG_BODIES
    ),
    Op("POST", "/v1/configs/{kind}/{scope}/activate", h.activate_config, OP, _S.FLEET,
       "Roll a config forward or back", body=q.ActivateRequest, response=ConfigVersion,
       errors=(404,), tag="configs"),
    # runtime fleet and providers
    Op("POST", "/v1/runtimes", h.register_runtime, OP, _S.FLEET,
       "Register a runtime instance (409 version_skew: its release or schema is outside the "
       "supported window)", body=q.RegisterRuntimeRequest, response=RuntimeInstance,
       status=201, errors=(409,), tag="fleet"),
    # region-level incidents (F-110, F-112): placement avoids a region in an incident
    Op("PUT", "/v1/regions/{region}/incident", h.open_region_incident, OP, _S.FLEET,
       "Declare a region incident", body=q.IncidentRequest, response=r.RegionIncidentReply,
       tag="runtimes"),
    Op("DELETE", "/v1/regions/{region}/incident", h.close_region_incident, OP, _S.FLEET,
       "Close a region incident", response=r.RegionIncidentReply, tag="runtimes"),
    Op("GET", "/v1/regions", h.list_regions, V, _S.FLEET, "Regions: runtimes, room, incidents",
       response=r.RegionList, tag="runtimes"),
    Op("GET", "/v1/runtimes", h.list_runtimes, V, _S.FLEET, "Runtime instances",
       response=r.RuntimeList, tag="fleet"),
    Op("POST", "/v1/runtimes/{runtime_id}/heartbeat", h.heartbeat, OP, _S.FLEET, "Heartbeat",
       body=q.HeartbeatRequest, response=r.HeartbeatReply, errors=(404, 409), tag="fleet"),
    Op("DELETE", "/v1/runtimes/{runtime_id}", h.deregister_runtime, OP, _S.FLEET,
       "Deregister a runtime (it exits; idempotent)", response=Deregistered, tag="fleet"),
    Op("POST", "/v1/runtimes/{runtime_id}/failover", h.failover, OP, _S.FLEET,
       "Drain or migrate a runtime's sessions", body=q.FailoverRequest,
       response=r.MigrationList, errors=(404, 409, 503), tag="fleet"),
    Op("POST", "/v1/providers/{provider_id}/health", h.provider_health, OP, _S.FLEET,
       "Report provider health", body=q.ProviderHealthRequest, response=r.ProviderHealthReply,
       tag="fleet"),
    Op("POST", "/v1/gates/samples", h.gate_samples, OP, _S.FLEET,
       "Report gate samples of live sessions (runtimes)", body=q.GateSamplesRequest,
       response=GateIngest, tag="fleet"),
    # the deployment's availability SLO and error budget (NF-005, NF-030)
    Op("GET", "/v1/slo", h.slo_report, V, _S.FLEET,
       "Availability SLO: objective, availability, error budget left and burn-rate alerts "
       "of the deployment (`*`) and each pipeline; a freeze_reason while rollouts and "
       "publishes are refused", query=q.SloQuery, response=SloReport, errors=(404,),
       tag="fleet"),
    Op("GET", "/v1/providers/health", h.get_provider_health, V, _S.ANY,
       "Provider health snapshot", response=ProviderHealth, tag="fleet"),
    # sessions: a tenant key acts only on its own tenant's sessions
    Op("POST", "/v1/sessions/route", h.route, OP, _S.TENANT, "Route a new session",
       tenant=_T("body", "tenant_id"), body=q.RouteRequest, response=SessionRoute, status=201,
       errors=(404, 409, 429, 503), tag="sessions"),
    Op("GET", "/v1/sessions/{session_id}", h.session_status, V, _S.TENANT, "Session status",
       tenant=SESSION, response=SessionInfo, errors=(404,), tag="sessions"),
    Op("POST", "/v1/sessions/{session_id}/status", h.report_status, OP, _S.TENANT,
       "Report session status", tenant=SESSION, body=q.StatusRequest, response=SessionInfo,
       errors=(404, 409), tag="sessions"),
    Op("GET", "/v1/sessions/{session_id}/summary", h.session_summary, V, _S.TENANT,
       "Usage summary of an ended session (turns, tokens, audio seconds, estimated cost; "
       "also exported with the tenant's audit log as `session.summary`)", tenant=SESSION,
       response=UsageSummary, errors=(404,), tag="sessions"),
    Op("GET", "/v1/sessions/{session_id}/signals", h.session_signals, V, _S.TENANT,
       "Control signals of a session", tenant=SESSION, response=r.SignalList, errors=(404,),
       tag="sessions"),
    # a session's checkpoint: written by its lease holder, read by the runtime resuming it
    Op("GET", "/v1/sessions/{session_id}/state", load_state, OP, _S.TENANT,
       "Session state checkpoint (what a resuming runtime restores; naming the holder and "
       "its epoch takes the state over)", tenant=SESSION, query=StateQuery,
       response=SessionState, errors=(404, 409), tag="sessions"),
    Op("PUT", "/v1/sessions/{session_id}/state", save_state, OP, _S.TENANT,
       "Save a session state checkpoint (lease holder only, versioned)", tenant=SESSION,
       body=StateWrite, response=StateSaved, errors=(404, 409, 413), tag="sessions"),
    Op("PUT", "/v1/runtimes/{runtime_id}/states", save_states, OP, _S.FLEET,
       "Save the checkpoints of many sessions from their holder in one request (each fenced "
       "and versioned like PUT /v1/sessions/{session_id}/state)", body=StateWrites,
       response=StateOutcomes, tag="sessions"),
    Op("POST", "/v1/sessions/{session_id}/start", start_session, OP, _S.TENANT,
       "Start or resume a session on the runtime its client connected to, in one "
       "transaction: record check, lease, checkpoint take-over, signals, turn-start bundle",
       tenant=SESSION, body=SessionStartRequest, response=SessionStart, errors=(404, 409),
       tag="sessions"),
    # an operator's debug capture of a live session (F-076): the runtime serving it asks
    # here, with the operator's key, before it turns the capture on
    Op("POST", "/v1/sessions/{session_id}/debug/authorize", authorize_debug, OP, _S.TENANT,
       "May this key capture the session's debug events (audited; answers the runtime "
       "holding it: the capture itself is POST /v1/sessions/{session_id}/debug on that "
       "runtime)", tenant=SESSION, response=DebugGrant, errors=(404,), tag="sessions"),
    Op("POST", "/v1/sessions/{session_id}/migrate", h.migrate, OP, _S.FLEET,
       "Migrate a session to another runtime", body=q.MigrateRequest,
       response=MigrationResult, errors=(404, 409, 503), tag="sessions"),
    Op("POST", "/v1/sessions/{session_id}/token", h.issue_token, OP, _S.TENANT,
       "Issue a session token", tenant=SESSION, body=q.TokenRequest, response=r.TokenReply,
       status=201, errors=(404, 409), tag="tokens"),
    Op("POST", "/v1/tokens/verify", h.verify_token, V, _S.TENANT, "Verify a session token",
       tenant=_T("token", "token"), body=q.VerifyRequest, response=r.VerifyReply,
       tag="tokens"),
    Op("GET", "/v1/tokens/keys", h.token_keys, V, _S.ANY, "Token verification keys",
       response=r.TokenKeysReply, tag="tokens"),
    # signing keys by reference, rotated online with an overlap window (F-169, NF-035)
    Op("POST", "/v1/tokens/keys/rotate", h.rotate_token_key, A, _S.FLEET,
       "Rotate the token signing key", body=q.KeyRotateRequest, response=r.KeyRotationReply,
       errors=(409, 422), tag="tokens"),
    Op("GET", "/v1/tokens/keys/status", h.token_key_status, V, _S.FLEET,
       "Signing-key ages against the maximum key age", response=KeyStatus, tag="tokens"),
    # KMS-backed encryption keys (session state sealed under a Vault transit key; F-169)
    Op("GET", "/v1/kms/keys", kms_keys, V, _S.FLEET,
       "KMS keys: references, sealing and latest versions, Vault reachability",
       response=KmsKeys, tag="tokens"),
    Op("POST", "/v1/kms/keys/rotate", rotate_kms_key, A, _S.FLEET,
       "Rotate a KMS key; new data is sealed under its new version", body=KmsRotateRequest,
       response=KmsRotateReply, errors=(409, 503), tag="tokens"),
    Op("POST", "/v1/kms/keys/rewrap", rewrap_kms_key, A, _S.FLEET,
       "Rewrap stored data keys to the KMS key's latest version", body=KmsRotateRequest,
       response=KmsRewrapReply, errors=(409, 503), tag="tokens"),
    # tenant placement policy: data residency and failover mode (F-168, NF-034, F-113)
    Op("PUT", "/v1/tenants/{tenant_id}/placement", put_placement, A, _S.FLEET,
       "Set a tenant's placement policy (regions, jurisdiction, failover mode)",
       body=q.PlacementRequest, response=TenantPlacement, errors=(422,), tag="sessions"),
    Op("GET", "/v1/tenants/{tenant_id}/placement", get_placement, V, _S.TENANT,
       "A tenant's placement policy", tenant=_T("path", "tenant_id"),
       response=TenantPlacement, tag="sessions"),
    Op("DELETE", "/v1/tenants/{tenant_id}/placement", clear_placement, A, _S.FLEET,
       "Remove a tenant's placement policy", response=PlacementCleared, tag="sessions"),
    Op("GET", "/v1/tenants/{tenant_id}/outcomes", h.outcomes, V, _S.TENANT,
       "Admission outcomes of a tenant", tenant=_T("path", "tenant_id"),
       response=r.OutcomeList, tag="sessions"),
    Op("POST", "/v1/leases/{session_id}/acquire", h.lease_acquire, OP, _S.TENANT,
       "Acquire a session lease", tenant=SESSION, body=q.LeaseRequest, response=LeaseChange,
       errors=(404, 409), tag="leases"),
    Op("POST", "/v1/leases/{session_id}/renew", h.lease_renew, OP, _S.TENANT,
       "Renew a session lease", tenant=SESSION, body=q.LeaseEpochRequest, response=Lease,
       errors=(404, 409), tag="leases"),
    Op("POST", "/v1/runtimes/{runtime_id}/leases", h.lease_renewals, OP, _S.FLEET,
       "Renew every session lease a runtime holds (one request per renewal period)",
       body=q.LeaseRenewalsRequest, response=r.LeaseRenewals, tag="leases"),
    Op("POST", "/v1/runtimes/{runtime_id}/notices", runtime_notices, OP, _S.FLEET,
       "The runtime's control channel: a long poll answered when a hand-off of a lease it "
       "holds begins (it drains at once instead of at its next renewal)",
       body=NoticesRequest, response=RuntimeNotices, errors=(404,), tag="leases"),
    # rotating or revoking authority is fleet work: the running session follows it (T8)
    # (a live holder's lease is handed off in two phases: the answer comes once it released)
    Op("POST", "/v1/leases/{session_id}/rotate", h.lease_rotate, OP, _S.FLEET,
       "Rotate a session lease to the next epoch (same holder)", query=q.HandoffQuery,
       response=LeaseChange, errors=(404, 409), tag="leases"),
    Op("POST", "/v1/leases/{session_id}/revoke", h.lease_revoke, OP, _S.FLEET,
       "Revoke a session lease (no holder may act)", query=q.HandoffQuery,
       response=LeaseChange, errors=(404, 409), tag="leases"),
    Op("POST", "/v1/leases/{session_id}/release", h.lease_release, OP, _S.TENANT,
       "Release a lease being handed off (its holder, once it fenced its output and ended "
       "the active turn): the hand-off completes", tenant=SESSION, body=q.LeaseEpochRequest,
       response=LeaseRelease, errors=(404, 409), tag="leases"),
    Op("POST", "/v1/leases/{session_id}/authorize", h.lease_authorize, V, _S.TENANT,
       "Check a holder's authority", tenant=SESSION, body=q.LeaseEpochRequest,
       response=Authorization, errors=(404,), tag="leases"),
    Op("GET", "/v1/bundle", h.bundle, V, _S.TENANT, "Turn-start snapshot bundle",
       tenant=_T("query", "tenant_id"), query=q.BundleQuery, response=TurnStartBundle,
       errors=(404,), tag="sessions"),
    Op("POST", "/v1/runtimes/{runtime_id}/bundles", h.bundles, V, _S.FLEET,
       "Turn-start bundles of a runtime's live sessions (one request per refresh period)",
       body=q.BundlesRequest, response=r.BundleList, tag="sessions"),
    # audit and keys
    # a tenant key reads its own tenant's entries; the chain spans all tenants (fleet)
    Op("GET", "/v1/audit", h.audit_entries, V, _S.TENANT, "Audit log (a tenant's entries)",
       tenant=_T("query", "tenant_id", optional=True), query=q.AuditQuery,
       response=r.AuditList, tag="audit"),
    Op("GET", "/v1/audit/verify", h.audit_verify, V, _S.FLEET, "Verify the audit hash chain",
       response=AuditVerdict, tag="audit"),
    Op("GET", "/metrics", h.metrics, V, _S.FLEET,
       "Prometheus metrics: gate verdicts per pipeline version", response=str,
       media=h.PROMETHEUS, tag="audit"),
    Op("POST", "/v1/keys", h.create_key, A, _S.FLEET, "Create an API key", body=q.KeyRequest,
       response=r.KeyReply, status=201, tag="keys"),
    # reviewed changes (F-165): rollouts, rollbacks and config activations approved by a
    # second key before they apply; with `--require-approval` the only way they apply
    Op("POST", "/v1/changes", h.submit_change, OP, _S.FLEET,
       "Submit a rollout, rollback or config activation for review", body=q.ChangeSubmitRequest,
       response=ChangeRecord, status=201, tag="changes"),
    Op("GET", "/v1/changes", h.list_changes, V, _S.FLEET, "Changes (by status)",
       query=q.ChangesQuery, response=r.ChangeList, tag="changes"),
    Op("GET", "/v1/changes/{change_id}", h.get_change, V, _S.FLEET,
       "One change with its review metadata", response=ChangeRecord, errors=(404,),
       tag="changes"),
    Op("POST", "/v1/changes/{change_id}/approve", h.approve_change, OP, _S.FLEET,
       "Approve a pending change (not by its submitter)", body=q.ReviewRequest,
       response=ChangeRecord, errors=(404, 409), tag="changes"),
    Op("POST", "/v1/changes/{change_id}/reject", h.reject_change, OP, _S.FLEET,
       "Reject a pending change (not by its submitter)", body=q.ReviewRequest,
       response=ChangeRecord, errors=(404, 409), tag="changes"),
    Op("POST", "/v1/changes/{change_id}/apply", h.apply_change, OP, _S.FLEET,
       "Apply an approved change (once): its rollout, rollback or config activation",
       response=ChangeRecord, errors=(404, 409, 422), tag="changes"),
    # signed change provenance (NF-037): each key's Ed25519 signer identity; every change's
    # signatures re-verified
    Op("POST", "/v1/signer-keys", h.register_signer_key, OP, _S.FLEET,
       "Register the calling key's Ed25519 public key for signing changes",
       body=q.SignerKeyRequest, response=SignerKey, status=201, also=(200,), tag="changes"),
    Op("GET", "/v1/signer-keys", h.signer_keys, V, _S.FLEET, "Registered signer keys",
       response=r.SignerKeyList, tag="changes"),
    Op("GET", "/v1/change-provenance", h.change_provenance, V, _S.FLEET,
       "Every change (of a target) with its signed identity and approval trail, verified",
       query=q.ProvenanceQuery, response=ProvenanceReport, tag="changes"),
)


def check_table(routes: tuple[Op, ...] = ROUTES) -> None:
    """Refuse a table with an undeclared scope: every route names role, scope and tenant."""
    seen: set[tuple[str, str]] = set()
    for op in routes:
        key = (op.method, op.path)
        if key in seen:
            raise ValueError(f"route {op.method} {op.path} is declared twice")
        seen.add(key)
        if (op.role is None) != (op.scope == Scope.PUBLIC):
            raise ValueError(f"route {op.method} {op.path}: only public routes have no role")
        if (op.scope == Scope.TENANT) != (op.tenant is not None):
            raise ValueError(
                f"route {op.method} {op.path}: a tenant-scoped route names where its tenant "
                "comes from (and only such a route does)"
            )
        for name in op.path_params:
            if name not in q.PATH_PARAMS:
                raise ValueError(f"route {op.method} {op.path}: path parameter {name} has no type")


check_table()
