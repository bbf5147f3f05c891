"""Accepted turns counted by the deployment's availability SLO (NF-005, NF-030).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cp_slo_events",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("pipeline_name", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("runtime_id", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("bad", sa.Integer(), nullable=False),
    )
    op.create_index("ix_cp_slo_events_at", "cp_slo_events", ["at_ms"])


def downgrade() -> None:
    op.drop_index("ix_cp_slo_events_at", table_name="cp_slo_events")
    op.drop_table("cp_slo_events")
