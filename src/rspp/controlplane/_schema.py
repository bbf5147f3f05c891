"""Table definitions (SQLAlchemy Core) shared by the store and the Alembic migrations.

The migrations in ``migrations/versions`` create exactly these tables; the same
migrations run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

_MS = BigInteger

pipelines = Table(
    "cp_pipelines",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("version", String(100), primary_key=True),
    Column("spec_hash", String(128), nullable=False),
    Column("spec_text", Text, nullable=False),
    Column("modules_json", Text, nullable=False),
    Column("author", String(200), nullable=False),
    Column("created_at_ms", _MS, nullable=False),
    Column("publish_seq", Integer, nullable=False),
)

modules = Table(
    "cp_modules",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("version", String(100), primary_key=True),
    Column("content_hash", String(128), nullable=False),
    Column("content_text", Text, nullable=False),
    Column("author", String(200), nullable=False),
    Column("created_at_ms", _MS, nullable=False),
)

rollouts = Table(
    "cp_rollouts",
    metadata,
    Column("pipeline_name", String(200), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("stable_version", String(100), nullable=False),
    Column("canary_version", String(100), nullable=True),
    Column("percent", Float, nullable=False),
    Column("tenants_json", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("updated_at_ms", _MS, nullable=False),
)

configs = Table(
    "cp_configs",
    metadata,
    Column("kind", String(50), primary_key=True),
    Column("scope", String(200), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("body_json", Text, nullable=False),
    Column("body_hash", String(128), nullable=False),
    Column("author", String(200), nullable=False),
    Column("created_at_ms", _MS, nullable=False),
)

config_heads = Table(
    "cp_config_heads",
    metadata,
    Column("kind", String(50), primary_key=True),
    Column("scope", String(200), primary_key=True),
    Column("active_version", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("updated_at_ms", _MS, nullable=False),
)

runtimes = Table(
    "cp_runtimes",
    metadata,
    Column("runtime_id", String(200), primary_key=True),
    Column("endpoint", String(500), nullable=False),
    Column("transport_kind", String(50), nullable=False),
    Column("region", String(100), nullable=False),
    Column("health", String(20), nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("load", Integer, nullable=False),
    Column("last_heartbeat_ms", _MS, nullable=False),
    #: regions where the runtime stores session artifacts (JSON list; NULL: none declared)
    Column("artifact_regions_json", Text, nullable=True),
)

sessions = Table(
    "cp_sessions",
    metadata,
    Column("session_id", String(200), primary_key=True),
    Column("tenant_id", String(200), nullable=False, index=True),
    Column("pipeline_name", String(200), nullable=False),
    Column("pipeline_version", String(100), nullable=False),
    Column("runtime_id", String(200), nullable=True, index=True),
    Column("status", String(20), nullable=False),
    Column("policy_version", Integer, nullable=True),
    Column("attributes_json", Text, nullable=False),
    Column("created_at_ms", _MS, nullable=False),
    Column("updated_at_ms", _MS, nullable=False),
)

leases = Table(
    "cp_leases",
    metadata,
    Column("session_id", String(200), primary_key=True),
    Column("epoch", Integer, nullable=False),
    Column("holder", String(200), nullable=False),
    Column("expires_at_ms", _MS, nullable=False),
    #: when a runtime last acquired the lease at this epoch (None: issued by the control
    #: plane and not yet taken up: nobody acts on it, a hand-off need not wait for it)
    Column("acquired_at_ms", _MS, nullable=True),
)

#: operator hand-offs of a live lease (migrate, rotate, revoke; two phases): pending while
#: ``completed_at_ms`` is None, the holder's renewals are refused and it releases the lease
lease_handoffs = Table(
    "cp_lease_handoffs",
    metadata,
    Column("handoff_id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(200), nullable=False, index=True),
    Column("epoch", Integer, nullable=False),
    Column("holder", String(200), nullable=False),
    Column("action", String(20), nullable=False),
    Column("target", String(200), nullable=True),
    Column("actor", String(200), nullable=False),
    Column("started_at_ms", _MS, nullable=False),
    Column("deadline_ms", _MS, nullable=False),
    Column("completed_at_ms", _MS, nullable=True),
    Column("outcome", String(20), nullable=True),
    Column("result_json", Text, nullable=True),
)

lease_epochs = Table(
    "cp_lease_epochs",
    metadata,
    Column("session_id", String(200), primary_key=True),
    Column("epoch", Integer, primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("issued_at_ms", _MS, nullable=False),
)

signals = Table(
    "cp_signals",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(200), nullable=False, index=True),
    Column("body_json", Text, nullable=False),
)

outcomes = Table(
    "cp_outcomes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(200), nullable=False, index=True),
    Column("session_id", String(200), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("body_json", Text, nullable=False),
    Column("created_at_ms", _MS, nullable=False),
)

provider_health = Table(
    "cp_provider_health",
    metadata,
    Column("provider_id", String(200), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("error_rate", Float, nullable=False),
    Column("latency_p95_ms", Integer, nullable=True),
    Column("updated_at_ms", _MS, nullable=False),
    #: the provider's last reported unit price (USD, F-066) and when it was reported
    Column("price_usd", Float, nullable=True),
    Column("price_at_ms", _MS, nullable=True),
)

audit = Table(
    "cp_audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts_ms", _MS, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("detail_json", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # the tenant an entry concerns (None: fleet-wide); covered by the hash when set
    Column("tenant_id", String(200), nullable=True),
    Index("ix_cp_audit_tenant_seq", "tenant_id", "seq"),
)

#: audit entries committed with their change but not yet linked into the hash chain;
#: the chain's single sealer moves them to ``cp_audit`` in id order (see ``_audit.py``)
audit_intake = Table(
    "cp_audit_intake",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts_ms", _MS, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("detail_json", Text, nullable=False),
    Column("tenant_id", String(200), nullable=True),
)

api_keys = Table(
    "cp_api_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("tenant_id", String(200), nullable=True),
    Column("created_by", String(200), nullable=False),
    Column("created_at_ms", _MS, nullable=False),
)

counters = Table(
    "cp_counters",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Integer, nullable=False),
)

gate_samples = Table(
    "cp_gate_samples",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("pipeline_name", String(200), nullable=False),
    Column("pipeline_version", String(100), nullable=False),
    Column("tenant_id", String(200), nullable=False),
    Column("runtime_id", String(200), nullable=False),
    Column("received_at_ms", _MS, nullable=False),
    Column("body_json", Text, nullable=False),
    Index("ix_cp_gate_samples_version", "pipeline_name", "pipeline_version", "seq"),
)

#: accepted turns counted by the availability SLO (NF-005): kept for its longest window
slo_events = Table(
    "cp_slo_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", _MS, nullable=False),
    Column("pipeline_name", String(200), nullable=False),
    Column("tenant_id", String(200), nullable=False),
    Column("runtime_id", String(200), nullable=False),
    Column("outcome", String(64), nullable=False),
    Column("bad", Integer, nullable=False),
    Index("ix_cp_slo_events_at", "at_ms"),
)

rollout_policies = Table(
    "cp_rollout_policies",
    metadata,
    Column("pipeline_name", String(200), primary_key=True),
    Column("body_json", Text, nullable=False),
    Column("state", String(20), nullable=False),
    Column("updated_at_ms", _MS, nullable=False),
)

#: one session's checkpointed state (session-hot and session-durable state plus the
#: runtime's resume point), written by the lease holder at turn boundaries (F-155)
session_state = Table(
    "cp_session_state",
    metadata,
    Column("session_id", String(200), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("lease_epoch", Integer, nullable=False),
    Column("holder", String(200), nullable=False),
    Column("doc_json", Text, nullable=False),
    Column("updated_at_ms", _MS, nullable=False),
    #: the epoch whose holder loaded the state to resume the session
    Column("taken_epoch", Integer, nullable=True),
)

#: reviewed changes (F-165): a rollout, rollback or config activation submitted, approved
#: or rejected by another key, and applied once (its request as submitted)
changes = Table(
    "cp_changes",
    metadata,
    Column("change_id", String(64), primary_key=True),
    Column("action", String(40), nullable=False),
    Column("target", String(400), nullable=False),
    Column("request_json", Text, nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("submitted_by", String(200), nullable=False),
    Column("submitted_at_ms", _MS, nullable=False),
    Column("reviewed_by", String(200), nullable=True),
    Column("reviewed_at_ms", _MS, nullable=True),
    Column("review_note", Text, nullable=True),
    Column("applied_by", String(200), nullable=True),
    Column("applied_at_ms", _MS, nullable=True),
    #: signed provenance (NF-037): base64 Ed25519 signatures and the signer key fingerprints
    Column("submit_signature", Text, nullable=True),
    Column("submit_signer", String(64), nullable=True),
    Column("review_signature", Text, nullable=True),
    Column("review_signer", String(64), nullable=True),
    Index("ix_cp_changes_status", "status", "submitted_at_ms"),
)

#: the Ed25519 public keys API keys sign changes with (NF-037)
signer_keys = Table(
    "cp_signer_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("fingerprint", String(64), primary_key=True),
    Column("public_key", Text, nullable=False),
    Column("registered_at_ms", _MS, nullable=False),
)

#: session-token signing keys (F-169, NF-035): references to the private material (never
#: the material), the public half, and when each key signed and until when it verifies
token_keys = Table(
    "cp_token_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(20), nullable=False),
    Column("key_ref", String(1000), nullable=False),
    Column("public_pem", Text, nullable=True),
    Column("state", String(20), nullable=False),
    Column("created_at_ms", _MS, nullable=False),
    Column("retired_at_ms", _MS, nullable=True),
    Column("verify_until_ms", _MS, nullable=True),
    Column("reason", String(200), nullable=False),
)

#: regions an operator declared in an incident (F-110, F-112): placement avoids them
region_incidents = Table(
    "cp_region_incidents",
    metadata,
    Column("region", String(200), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("opened_by", String(200), nullable=False),
    Column("opened_at_ms", _MS, nullable=False),
)

#: per tenant: regions its sessions and their artifacts may use, failover mode (F-168, F-113)
tenant_placement = Table(
    "cp_tenant_placement",
    metadata,
    Column("tenant_id", String(200), primary_key=True),
    Column("regions_json", Text, nullable=True),
    Column("jurisdiction", String(100), nullable=True),
    Column("failover_mode", String(20), nullable=True),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at_ms", _MS, nullable=False),
)

#: a provider's health as seen in one region (F-112): placement avoids a region where one
#: is unhealthy
region_provider_health = Table(
    "cp_region_provider_health",
    metadata,
    Column("region", String(200), primary_key=True),
    Column("provider_id", String(200), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("reported_by", String(200), nullable=False),
    Column("updated_at_ms", _MS, nullable=False),
)
