"""Session-token signing keys by reference, with their rotation history (F-169, NF-035).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cp_token_keys",
        sa.Column("kid", sa.String(length=64), primary_key=True),
        sa.Column("algorithm", sa.String(length=20), nullable=False),
        sa.Column("key_ref", sa.String(length=1000), nullable=False),
        sa.Column("public_pem", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("retired_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("verify_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cp_token_keys")
