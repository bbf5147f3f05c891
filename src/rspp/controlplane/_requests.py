"""Typed request bodies and query parameters of the HTTP API (decoded at the edge).

Every field carries its bounds (length, pattern, range) as msgspec ``Meta``, so the
decoder refuses a bad value naming the field, the store never sees it (no NUL byte,
no 10k-character name, no integer a database column cannot hold), and the OpenAPI
document publishes exactly the same constraints.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from rspp.controlplane._admission import Quotas
from rspp.controlplane._policy import PolicyDocument
from rspp.observability import TurnGateSample
from rspp.providers import UsageSummary

INT32_MAX = 2**31 - 1

#: identifiers: tenants, sessions, runtimes, holders, regions, providers
Id = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._:@+-]*$",
        description="identifier: letters, digits and `._:@+-`, 1-200 characters",
        examples=["acme"],
    ),
]
#: short labels stored in narrow columns (transport kind, region)
Short = Annotated[
    str, Meta(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._:@+-]*$")
]
#: pipeline and module names
Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*$",
        description="pipeline name",
        examples=["voice-assistant"],
    ),
]
#: a published version (``1.2.0``)
Version = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$",
        description="a published version",
        examples=["1.0.0"],
    ),
]
#: config scope: a tenant id or ``*`` for the default of every tenant
ConfigScope = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=r"^(\*|[A-Za-z0-9_][A-Za-z0-9._:@+-]*)$",
        description="a tenant id, or `*` for the default that applies to every tenant",
        examples=["*"],
    ),
]
ConfigKindName = Literal["policy", "provider_config", "admission"]
ReleaseVersion = Annotated[
    str,
    Meta(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+(?:[.+-][0-9A-Za-z.+-]*)?$", max_length=50,
         description="an rspp release (MAJOR.MINOR.PATCH)", examples=["0.1.0"]),
]
SchemaVersionName = Annotated[
    str,
    Meta(pattern=r"^v[0-9]+\.[0-9]+(?:\.[0-9]+)?$", max_length=40,
         description="a contract schema_version", examples=["v1.0"]),
]
ContractKindName = Literal[
    "event_record", "control_signal", "turn_transition", "resolved_turn_plan",
    "decision_outcome", "artifact_bundle",
]
#: a spec or module document (YAML or JSON); no NUL byte
Document = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=1_048_576,
        pattern=r"^[^\x00]+$",
        description="a PipelineSpec/module document (YAML or JSON)",
    ),
]
Label = Annotated[str, Meta(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]
Url = Annotated[
    str,
    Meta(
        min_length=4,
        max_length=500,
        pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://[!-~]+$",
        description="an absolute URL (printable ASCII)",
        examples=["ws://127.0.0.1:8765/ws"],
    ),
]
Token = Annotated[
    str, Meta(min_length=1, max_length=8192, pattern=r"^[!-~]+$", description="a session token")
]
AttrKey = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][\w.:-]*$")]
AttrValue = Annotated[str, Meta(max_length=1000, pattern=r"^[^\x00]*$")]
Count = Annotated[int, Meta(ge=0, le=1_000_000)]
Capacity = Annotated[int, Meta(ge=1, le=1_000_000)]
TtlS = Annotated[int, Meta(ge=1, le=3600, description="token lifetime in seconds")]
TtlMs = Annotated[int, Meta(ge=100, le=86_400_000, description="milliseconds")]
Epoch = Annotated[int, Meta(ge=1, le=INT32_MAX)]
WaitMs = Annotated[int, Meta(ge=0, le=10_000, description="milliseconds to wait, at most 10 s")]
ConfigVersionNo = Annotated[int, Meta(ge=1, le=INT32_MAX)]
Percent = Annotated[float, Meta(ge=0, le=100)]
Rate = Annotated[float, Meta(ge=0, le=1)]
Millis = Annotated[int, Meta(ge=0, le=86_400_000)]
Seq = Annotated[int, Meta(ge=0, le=INT32_MAX)]
PageSize = Annotated[int, Meta(ge=1, le=1000)]

#: path parameters and their types (the route table validates every one of them)
PATH_PARAMS: dict[str, Any] = {
    "name": Name,
    "version": Version,
    "kind": ConfigKindName,
    "scope": ConfigScope,
    "schema_version": SchemaVersionName,
    "contract_kind": ContractKindName,
    "runtime_id": Id,
    "provider_id": Id,
    "session_id": Id,
    "tenant_id": Id,
    "change_id": Id,
    "region": Id,
}


class _Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every request body: unknown fields are refused with their name."""


class PublishRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    spec: Document
    filename: Label = "<api>"
    #: publish even while the pipeline's error budget freezes changes (admin only, NF-030)
    force: bool = False


class ModuleRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    module: Document


Turns = Annotated[int, Meta(ge=1, le=1_000_000, description="a number of turns")]
WindowSize = Annotated[int, Meta(ge=1, le=10_000, description="a number of gate samples")]
StepPercent = Annotated[float, Meta(gt=0, le=100)]


class RolloutRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A canary; with ``promote_after``/``rollback_on_gates``/``steps`` a gated rollout
    (promoted step by step and rolled back by the quality gates of live sessions)."""

    canary: Version
    percent: Percent
    tenants: Annotated[tuple[Id, ...], Meta(max_length=1000)] = ()
    #: canary turns (gate samples) at a step before it may be promoted
    promote_after: Turns | None = None
    #: roll back automatically when any canary gate fails over the window
    rollback_on_gates: bool = False
    #: the percentages after ``percent`` (default 25, 50, 100 above it)
    steps: Annotated[tuple[StepPercent, ...], Meta(max_length=10)] = ()
    #: gate samples per version in the sliding window, and the fewest for a verdict
    window: WindowSize | None = None
    min_samples: WindowSize | None = None
    #: roll out even while the pipeline's error budget freezes changes (admin only, NF-030)
    force: bool = False

    @property
    def gated(self) -> bool:
        return (self.promote_after is not None or self.rollback_on_gates or bool(self.steps)
                or self.window is not None or self.min_samples is not None)


class GateSampleIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One closed turn of a live session: its gate values, pipeline version and tenant."""

    pipeline_name: Name
    pipeline_version: Version
    tenant_id: Id
    sample: TurnGateSample


class GateSamplesRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A runtime's batch of gate samples (``dropped``: lost since its previous batch)."""

    runtime_id: Id
    samples: Annotated[tuple[GateSampleIn, ...], Meta(max_length=500)]
    dropped: Count = 0


class RollbackRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    to: Version


ChangeAction = Literal["rollout", "rollback", "config.activate"]
ChangeStatus = Literal["pending", "approved", "rejected", "applied"]
Note = Annotated[str, Meta(max_length=2000, pattern=r"^[^\x00]*$")]


#: a base64 Ed25519 signature (NF-037): 64 bytes are 86 characters and ``==``
Signature = Annotated[str, Meta(min_length=88, max_length=88,
                                pattern=r"^[A-Za-z0-9+/]{86}==$")]


class ChangeSubmitRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A pipeline/policy/rollout change to review before it is applied (F-165).

    ``rollout``: ``pipeline_name`` + ``rollout`` (the body of POST .../rollout);
    ``rollback``: ``pipeline_name`` + ``rollback_to``; ``config.activate``:
    ``config_kind`` + ``config_scope`` + ``config_version``.
    """

    action: ChangeAction
    reason: Note = ""
    pipeline_name: Name | None = None
    rollout: RolloutRequest | None = None
    rollback_to: Version | None = None
    config_kind: ConfigKindName | None = None
    config_scope: ConfigScope | None = None
    config_version: ConfigVersionNo | None = None
    #: the submitter's signature of ``submit_message(request_hash)`` (NF-037)
    signature: Signature | None = None


class ReviewRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    note: Note = ""
    #: the reviewer's signature of ``review_message(change_id, verdict, request_hash)``
    signature: Signature | None = None


class SignerKeyRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An Ed25519 public key: PEM (SubjectPublicKeyInfo) or the base64 of its raw bytes."""

    public_key: Annotated[str, Meta(min_length=1, max_length=1000, pattern=r"^[^\x00]*$")]


OptionKey = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][\w.:-]*$")]
OptionValue = (
    Annotated[str, Meta(max_length=4096, pattern=r"^[^\x00]*$")]
    | Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
    | float
    | bool
    | None
)
#: provider id -> its options (scalar values): a flat document, bounded by construction
ProviderConfigDocument = Annotated[
    dict[OptionKey, Annotated[dict[OptionKey, OptionValue], Meta(max_length=100)]],
    Meta(max_length=100, examples=[{"stt": {"model": "small", "language": "en"}}]),
]


class ConfigRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A provider config document (``provider -> {option: value}``)."""

    body: ProviderConfigDocument
    activate: bool = True


class PolicyConfigRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    body: PolicyDocument
    activate: bool = True


class AdmissionConfigRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    body: Quotas
    activate: bool = True


class ActivateRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: ConfigVersionNo


class RegisterRuntimeRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    runtime_id: Id
    endpoint: Url
    transport_kind: Short = "websocket"
    region: Short = "default"
    capacity: Capacity = 100
    #: regions where the runtime stores session artifacts (timelines, recordings; F-168)
    artifact_regions: Annotated[list[Short], Meta(max_length=64)] | None = None
    #: the runtime's release and the contract schema it writes (version-skew policy)
    runtime_version: ReleaseVersion | None = None
    schema_version: SchemaVersionName | None = None


class HeartbeatRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    health: Literal["healthy", "degraded", "unhealthy"]
    load: Count | None = None
    mode: Literal["migrate", "drain"] = "migrate"


class FailoverRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["migrate", "drain"] = "migrate"


class ProviderHealthRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: Literal["healthy", "degraded", "unhealthy", "unknown"]
    error_rate: Rate = 0.0
    latency_p95_ms: Millis | None = None
    #: the provider's current unit price in USD (a price signal, F-066); left out: the
    #: last reported price stands
    price_usd: Annotated[float, Meta(ge=0, le=1_000_000)] | None = None
    #: the provider's health as seen in this region only (F-112): placement avoids a region
    #: where a provider is unhealthy; fleet-wide health (policy selection) is left as it is
    region: Short | None = None


class RouteRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tenant_id: Id
    pipeline_name: Name
    session_id: Id | None = None
    attributes: Annotated[dict[AttrKey, AttrValue], Meta(max_length=64)] = {}
    ttl_s: TtlS | None = None
    #: the client's measured latency to each region (F-110): the lowest with room wins
    region_latency_ms: Annotated[dict[Id, Annotated[int, Meta(ge=0, le=600_000)]],
                                 Meta(max_length=64)] | None = None


class PlacementRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tenant's placement policy (F-168, NF-034, F-113); replaces the one set before."""

    #: regions the tenant's sessions may be processed and their artifacts stored in
    regions: Annotated[list[Short], Meta(min_length=1, max_length=64)] | None = None
    #: the jurisdiction the regions stand for (``EU``), recorded in residency audit entries
    jurisdiction: Short | None = None
    #: how in-flight sessions fail over in a region incident (unset: the deployment's)
    failover_mode: Literal["migrate", "drain"] | None = None


class IncidentRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Declare a region-level incident (F-112): placement avoids the region."""

    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class ArtifactLocation(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a runtime stores a session's artifacts (F-168): the region of the storage
    root and the location in it."""

    region: Short
    location: Annotated[str, Meta(min_length=1, max_length=1000)]


class StatusRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: Literal["connected", "running", "degraded", "ended"]
    #: where the runtime stores the session's artifacts (reported with ``running``)
    artifacts: ArtifactLocation | None = None
    #: the session's usage summary, reported with ``ended`` (F-075)
    summary: UsageSummary | None = None
    #: why it ended (``client_end``, ``resume_window_expired`` after a disconnect...),
    #: reported with ``ended``: audited as ``session.ended`` (F-091)
    reason: Label | None = None


class HeldBy(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A lease's holder and the epoch it holds."""

    holder: Id
    epoch: Epoch


#: how long an operator hand-off waits for the holder's release before it answers 409
#: ``handoff_pending`` (the hand-off goes on; asking again waits again)
HandoffWaitMs = Annotated[int, Meta(ge=0, le=120_000, description="milliseconds to wait "
                                     "for the holder's release, at most 120 s")]


class MigrateRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where to (None: the best other healthy runtime). A lease its runtime holds live is
    handed off in two phases: the answer comes once the holder released it (the epoch
    moved), or ``409 handoff_pending`` after ``wait_ms`` (the hand-off goes on; at the
    latest it completes when the lease expires). ``force``: move at once (the holder is
    known to be gone; fencing covers it). ``released_by``: the holder itself hands the
    session over (it fenced its output already), at once."""

    target: Id | None = None
    force: bool = False
    released_by: HeldBy | None = None
    wait_ms: HandoffWaitMs = 5_000


class Placed(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a client last had its session: a runtime at a lease epoch."""

    runtime_id: Id
    lease_epoch: Epoch


class TokenRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tenant_id: Id
    ttl_s: TtlS | None = None
    #: with ``wait_ms``: while the session is still placed here, wait for it to move
    moved_from: Placed | None = None
    #: how long to wait for the session to leave ``moved_from`` (the long poll)
    wait_ms: WaitMs = 0


class VerifyRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token: Token


class LeaseRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    holder: Id
    epoch: Epoch | None = None
    ttl_ms: TtlMs | None = None


class LeaseEpochRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Renew/authorize: the holder must name the epoch it holds."""

    holder: Id
    epoch: Epoch
    ttl_ms: TtlMs | None = None


class HeldLease(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_id: Id
    epoch: Epoch


class LeaseRenewalsRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every lease a runtime holds, renewed in one request (the holder is the runtime)."""

    leases: Annotated[tuple[HeldLease, ...], Meta(max_length=2000)]
    ttl_ms: TtlMs | None = None


#: sessions per bundle batch (a runtime with more sends several)
MAX_BUNDLES = 200


class BundleFor(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tenant_id: Id
    session_id: Id
    pipeline_name: Name


class BundlesRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The sessions a runtime wants turn-start bundles for (the runtime is the path's)."""

    sessions: Annotated[tuple[BundleFor, ...], Meta(min_length=1, max_length=MAX_BUNDLES)]


class KeyRotateRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rotate the token signing key (F-169): to ``key_ref`` (``file:PATH`` / ``env:VAR``),
    or to a key generated in the control plane's key directory."""

    key_ref: Annotated[str, msgspec.Meta(min_length=5, max_length=1000)] | None = None
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "manual"


class KeyRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    role: Literal["viewer", "operator", "admin"]
    tenant_id: Id | None = None


# ---- query parameters -----------------------------------------------------------------------
class _Query(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every query-parameter set (decoded from strings, unknown names refused)."""


class NoQuery(_Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class HandoffQuery(_Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``force=true``: rotate/revoke at once instead of waiting for the holder's release
    (the holder is known to be gone; fencing covers it). ``wait_ms``: how long to wait for
    the release before answering ``409 handoff_pending`` (the hand-off goes on)."""

    force: bool = False
    wait_ms: HandoffWaitMs = 5_000


class PipelinesQuery(_Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name | None = None


class ResolveQuery(_Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tenant_id: Id
    session_id: Id | None = None


class BundleQuery(_Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tenant_id: Id
    session_id: Id
    pipeline_name: Name
    runtime_id: Id | None = None


class SloQuery(_Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: one pipeline's verdict (with the deployment's); default every pipeline with events
    scope: Name | None = None


class ChangesQuery(_Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: ChangeStatus | None = None


class ProvenanceQuery(_Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: only the changes of this target (``pipeline:NAME``, ``config:KIND/SCOPE``)
    target: Annotated[str, Meta(min_length=1, max_length=400,
                                pattern=r"^[^\x00]*$")] | None = None


class AuditQuery(_Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    after: Seq = 0
    limit: PageSize = 1000
    #: only this tenant's entries (a tenant key: its own, the default)
    tenant_id: Id | None = None
