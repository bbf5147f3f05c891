"""Initial control-plane schema.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cp_api_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "cp_audit",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=400), nullable=False),
        sa.Column("detail_json", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "cp_config_heads",
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("active_version", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "scope"),
    )
    op.create_table(
        "cp_configs",
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body_json", sa.Text(), nullable=False),
        sa.Column("body_hash", sa.String(length=128), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "scope", "version"),
    )
    op.create_table(
        "cp_counters",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "cp_lease_epochs",
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("issued_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "epoch"),
    )
    op.create_table(
        "cp_leases",
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_table(
        "cp_modules",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("content_hash", sa.String(length=128), nullable=False),
        sa.Column("content_text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version"),
    )
    op.create_table(
        "cp_outcomes",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("body_json", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(op.f("ix_cp_outcomes_tenant_id"), "cp_outcomes", ["tenant_id"], unique=False)
    op.create_table(
        "cp_pipelines",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("spec_hash", sa.String(length=128), nullable=False),
        sa.Column("spec_text", sa.Text(), nullable=False),
        sa.Column("modules_json", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("publish_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version"),
    )
    op.create_table(
        "cp_provider_health",
        sa.Column("provider_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error_rate", sa.Float(), nullable=False),
        sa.Column("latency_p95_ms", sa.Integer(), nullable=True),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("provider_id"),
    )
    op.create_table(
        "cp_rollouts",
        sa.Column("pipeline_name", sa.String(length=200), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("stable_version", sa.String(length=100), nullable=False),
        sa.Column("canary_version", sa.String(length=100), nullable=True),
        sa.Column("percent", sa.Float(), nullable=False),
        sa.Column("tenants_json", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pipeline_name"),
    )
    op.create_table(
        "cp_runtimes",
        sa.Column("runtime_id", sa.String(length=200), nullable=False),
        sa.Column("endpoint", sa.String(length=500), nullable=False),
        sa.Column("transport_kind", sa.String(length=50), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("health", sa.String(length=20), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("load", sa.Integer(), nullable=False),
        sa.Column("last_heartbeat_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("runtime_id"),
    )
    op.create_table(
        "cp_sessions",
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("pipeline_name", sa.String(length=200), nullable=False),
        sa.Column("pipeline_version", sa.String(length=100), nullable=False),
        sa.Column("runtime_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("attributes_json", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_index(op.f("ix_cp_sessions_runtime_id"), "cp_sessions", ["runtime_id"], unique=False)
    op.create_index(op.f("ix_cp_sessions_tenant_id"), "cp_sessions", ["tenant_id"], unique=False)
    op.create_table(
        "cp_signals",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("body_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(op.f("ix_cp_signals_session_id"), "cp_signals", ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_cp_signals_session_id"), table_name="cp_signals")
    op.drop_table("cp_signals")
    op.drop_index(op.f("ix_cp_sessions_tenant_id"), table_name="cp_sessions")
    op.drop_index(op.f("ix_cp_sessions_runtime_id"), table_name="cp_sessions")
    op.drop_table("cp_sessions")
    op.drop_table("cp_runtimes")
    op.drop_table("cp_rollouts")
    op.drop_table("cp_provider_health")
    op.drop_table("cp_pipelines")
    op.drop_index(op.f("ix_cp_outcomes_tenant_id"), table_name="cp_outcomes")
    op.drop_table("cp_outcomes")
    op.drop_table("cp_modules")
    op.drop_table("cp_leases")
    op.drop_table("cp_lease_epochs")
    op.drop_table("cp_counters")
    op.drop_table("cp_configs")
    op.drop_table("cp_config_heads")
    op.drop_table("cp_audit")
    op.drop_table("cp_api_keys")
