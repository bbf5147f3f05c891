"""Provider price signals beside provider health (F-066).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cp_provider_health", sa.Column("price_usd", sa.Float(), nullable=True))
    op.add_column("cp_provider_health", sa.Column("price_at_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cp_provider_health") as batch:
        batch.drop_column("price_at_ms")
        batch.drop_column("price_usd")
