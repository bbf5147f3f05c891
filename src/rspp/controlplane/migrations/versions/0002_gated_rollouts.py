"""Gated rollouts: gate samples of live sessions and rollout policies.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cp_gate_samples",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pipeline_name", sa.String(length=200), nullable=False),
        sa.Column("pipeline_version", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("runtime_id", sa.String(length=200), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("body_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_cp_gate_samples_version", "cp_gate_samples",
                    ["pipeline_name", "pipeline_version", "seq"], unique=False)
    op.create_table(
        "cp_rollout_policies",
        sa.Column("pipeline_name", sa.String(length=200), nullable=False),
        sa.Column("body_json", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pipeline_name"),
    )


def downgrade() -> None:
    op.drop_table("cp_rollout_policies")
    op.drop_index("ix_cp_gate_samples_version", table_name="cp_gate_samples")
    op.drop_table("cp_gate_samples")
