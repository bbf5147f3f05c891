"""Audit intake: a write appends its audit entry without waiting for the chain's tail.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cp_audit_intake",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=400), nullable=False),
        sa.Column("detail_json", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("cp_audit_intake")
