"""Initial control-plane schema (every table in ``rspp.controlplane._schema`` at v0.1).

Revision ID: 0001
Revises:
"""

from alembic import op

from rspp.controlplane._schema import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The v0.1 schema is the metadata as first released; later revisions use
    # explicit op.* operations against it.
    metadata.create_all(bind=op.get_bind())


def downgrade() -> None:
    metadata.drop_all(bind=op.get_bind())
