"""stored predictions: a bundle's prediction per ONNX graph and input shapes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 19:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bundle_sha256", sa.String(length=64), nullable=False),
        sa.Column("onnx_sha256", sa.String(length=64), nullable=False),
        sa.Column("shapes_key", sa.String(length=64), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("kernels", sa.JSON(), nullable=False),
        sa.Column("notes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "bundle_sha256", "onnx_sha256", "shapes_key", name="uq_stored_predictions_key"
        ),
    )
    with op.batch_alter_table("stored_predictions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_stored_predictions_onnx_sha256"), ["onnx_sha256"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("stored_predictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stored_predictions_onnx_sha256"))
    op.drop_table("stored_predictions")
