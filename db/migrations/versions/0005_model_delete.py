"""model delete and artifact garbage collection: models.deleted_at, artifacts.used_at/purged_at

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: not deleted (every existing model).
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(), nullable=True))
    # used_at NULL reads as created_at; purged_at NULL: the file is (meant to be) there.
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("used_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
        batch_op.drop_column("used_at")
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
