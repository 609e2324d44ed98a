"""predictor calibration: each kernel sample's layout-conversion time, calibration networks
(``predictor_networks.role``, their network terms) and the predictor's calibration report

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 18:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("accuracy_uncalibrated", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("calibration", sa.JSON(), nullable=True))
    with op.batch_alter_table("predictor_samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("layout_ms", sa.Float(), nullable=True))
    with op.batch_alter_table("predictor_networks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=16), server_default="validation", nullable=False)
        )
        batch_op.add_column(sa.Column("predicted_uncalibrated_ms", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("terms", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictor_networks", schema=None) as batch_op:
        batch_op.drop_column("terms")
        batch_op.drop_column("predicted_uncalibrated_ms")
        batch_op.drop_column("role")
    with op.batch_alter_table("predictor_samples", schema=None) as batch_op:
        batch_op.drop_column("layout_ms")
    with op.batch_alter_table("predictors", schema=None) as batch_op:
        batch_op.drop_column("calibration")
        batch_op.drop_column("accuracy_uncalibrated")
