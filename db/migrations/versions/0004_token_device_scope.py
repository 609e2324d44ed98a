"""token device scope: api_tokens.device_scope (device-name globs an agent token may register)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:12:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL (every existing token): the token may register any device name, as before.
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_scope", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("device_scope")
