"""Reviewed changes: rollouts, rollbacks and config activations approved before they apply.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cp_changes",
        sa.Column("change_id", sa.String(length=64), primary_key=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=400), nullable=False),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("submitted_by", sa.String(length=200), nullable=False),
        sa.Column("submitted_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("reviewed_by", sa.String(length=200), nullable=True),
        sa.Column("reviewed_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("applied_by", sa.String(length=200), nullable=True),
        sa.Column("applied_at_ms", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_cp_changes_status", "cp_changes", ["status", "submitted_at_ms"])


def downgrade() -> None:
    op.drop_index("ix_cp_changes_status", table_name="cp_changes")
    op.drop_table("cp_changes")
