"""Signed change provenance (NF-037): signer keys of API keys; signatures on changes.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cp_signer_keys",
        sa.Column("key_id", sa.String(length=64), primary_key=True),
        sa.Column("fingerprint", sa.String(length=64), primary_key=True),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("registered_at_ms", sa.BigInteger(), nullable=False),
    )
    with op.batch_alter_table("cp_changes") as batch:
        batch.add_column(sa.Column("submit_signature", sa.Text(), nullable=True))
        batch.add_column(sa.Column("submit_signer", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("review_signature", sa.Text(), nullable=True))
        batch.add_column(sa.Column("review_signer", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cp_changes") as batch:
        for name in ("review_signer", "review_signature", "submit_signer", "submit_signature"):
            batch.drop_column(name)
    op.drop_table("cp_signer_keys")
