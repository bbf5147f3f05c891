"""Two-phase hand-off of a live lease (operator migrate / rotate / revoke).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cp_leases", sa.Column("acquired_at_ms", sa.BigInteger(), nullable=True))
    op.create_table(
        "cp_lease_handoffs",
        sa.Column("handoff_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("deadline_ms", sa.BigInteger(), nullable=False),
        sa.Column("completed_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("result_json", sa.Text(), nullable=True),
    )
    op.create_index("ix_cp_lease_handoffs_session_id", "cp_lease_handoffs", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_cp_lease_handoffs_session_id", table_name="cp_lease_handoffs")
    op.drop_table("cp_lease_handoffs")
    with op.batch_alter_table("cp_leases") as batch:
        batch.drop_column("acquired_at_ms")
