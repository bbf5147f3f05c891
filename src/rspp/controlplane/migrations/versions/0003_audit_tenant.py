"""Audit entries name the tenant they concern (tenant keys read only their own).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cp_audit") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(length=200), nullable=True))
        batch.create_index("ix_cp_audit_tenant_seq", ["tenant_id", "seq"])


def downgrade() -> None:
    with op.batch_alter_table("cp_audit") as batch:
        batch.drop_index("ix_cp_audit_tenant_seq")
        batch.drop_column("tenant_id")
