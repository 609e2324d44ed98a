"""result quality: results.quality (quality flags, measurement mode, between-run summary)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL (every existing result): the coordinator computes its flags from the stored raw
    # times the first time the result is read (server/store/quality.py) and keeps them.
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quality", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("quality")
