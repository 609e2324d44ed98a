"""conversions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 07:35:38.137098
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("precision", sa.String(length=8), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("device_selector", sa.String(length=200), nullable=False),
        sa.Column("reuse_key", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=True),
        sa.Column("artifact_meta", sa.JSON(), nullable=False),
        sa.Column("validation", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("log_sha256", sa.String(length=64), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["artifact_sha256"],
            ["artifacts.sha256"],
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["log_sha256"],
            ["artifacts.sha256"],
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
        ),
        sa.ForeignKeyConstraint(
            ["source_sha256"],
            ["artifacts.sha256"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_conversions_model_id"), ["model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_conversions_reuse_key"), ["reuse_key"], unique=False)

    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("artifact_meta", sa.JSON(), nullable=False, server_default="{}")
        )

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("conversion_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("options", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.alter_column("artifact_sha256", existing_type=sa.VARCHAR(length=64), nullable=True)
        batch_op.create_index(batch_op.f("ix_jobs_conversion_id"), ["conversion_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_jobs_conversion_id", "conversions", ["conversion_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint("fk_jobs_conversion_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_jobs_conversion_id"))
        batch_op.alter_column(
            "artifact_sha256", existing_type=sa.VARCHAR(length=64), nullable=False
        )
        batch_op.drop_column("options")
        batch_op.drop_column("conversion_id")

    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("artifact_meta")

    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversions_reuse_key"))
        batch_op.drop_index(batch_op.f("ix_conversions_model_id"))

    op.drop_table("conversions")
