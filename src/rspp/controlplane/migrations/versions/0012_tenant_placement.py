"""Tenant placement policy: data residency and failover mode (F-168, NF-034, F-113);
the regions where a runtime stores session artifacts; provider health per region (F-112).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cp_tenant_placement",
        sa.Column("tenant_id", sa.String(length=200), primary_key=True),
        sa.Column("regions_json", sa.Text(), nullable=True),
        sa.Column("jurisdiction", sa.String(length=100), nullable=True),
        sa.Column("failover_mode", sa.String(length=20), nullable=True),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
    )
    op.add_column("cp_runtimes", sa.Column("artifact_regions_json", sa.Text(), nullable=True))
    op.create_table(
        "cp_region_provider_health",
        sa.Column("region", sa.String(length=200), primary_key=True),
        sa.Column("provider_id", sa.String(length=200), primary_key=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reported_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cp_region_provider_health")
    with op.batch_alter_table("cp_runtimes") as batch:
        batch.drop_column("artifact_regions_json")
    op.drop_table("cp_tenant_placement")
