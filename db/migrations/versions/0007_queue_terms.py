"""queue terms: leasing matched in SQL, one running job per device

Queue keys (a job's selector + runtime as the terms a device must offer), device terms (what
a device offers), ``jobs.queue_key_id``, a partial unique index allowing one running job per
device and a partial index of queued jobs by key. Existing unfinished jobs and devices get
their terms here (the derivation is frozen below, as of this revision: server.queue.terms).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 10:00:00.000000
"""

from __future__ import annotations

import socket
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_LEN = 200


def _selector_terms(selector: str) -> set[tuple[str, str]]:
    selector = selector.strip()
    if ":" not in selector:
        return {(":local", "true")} if selector == "local" else {(":name", selector)}
    out = set()
    for part in selector.split(","):
        key, _, value = part.partition(":")
        key, value = key.strip().lower(), value.strip()
        out.add((key, value if key == "runtime" else value.lower()))
    return out


def _device_terms(row: Any, host: str) -> set[tuple[str, str]]:
    attrs, info = row.attributes or {}, row.info or {}
    terms = {(":name", row.name), ("name", row.name.lower()), ("class", str(row.cls).lower())}
    terms.update(("runtime", r) for r in row.runtimes or {})
    if attrs.get("host") == host or attrs.get("local") in (True, "true"):
        terms.add((":local", "true"))
    for key in {*info, *attrs}:
        if key in ("class", "name", "runtime") or ":" in key:
            continue
        value = attrs[key] if key in attrs else info[key]
        if value is not None:
            terms.add((key, str(value).lower()))
    return {(k, v) for k, v in terms if 0 < len(k) <= _LEN and 0 < len(v) <= _LEN and "," not in v}


def _backfill(conn: sa.Connection) -> None:
    meta = sa.MetaData()
    jobs = sa.Table("jobs", meta, autoload_with=conn)
    devices = sa.Table("devices", meta, autoload_with=conn)
    keys = sa.Table("queue_keys", meta, autoload_with=conn)
    key_terms = sa.Table("queue_key_terms", meta, autoload_with=conn)
    device_terms = sa.Table("device_terms", meta, autoload_with=conn)
    made: dict[tuple[str, str], int] = {}
    unfinished = jobs.c.status.in_(("waiting", "queued", "running"))
    rows = conn.execute(
        sa.select(jobs.c.id, jobs.c.device_selector, jobs.c.runtime).where(unfinished)
    ).all()
    for job_id, selector, runtime in rows:
        pair = (selector, runtime)
        if pair not in made:
            key_id = conn.execute(
                keys.insert().values(selector=selector, runtime=runtime).returning(keys.c.id)
            ).scalar_one()
            terms = _selector_terms(selector) | {("runtime", runtime)}
            conn.execute(
                key_terms.insert(),
                [{"queue_key_id": key_id, "key": k, "value": v} for k, v in terms],
            )
            made[pair] = key_id
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(queue_key_id=made[pair]))
    host = socket.gethostname()
    query = sa.select(
        devices.c.id,
        devices.c.name,
        devices.c["class"].label("cls"),
        devices.c.runtimes,
        devices.c.attributes,
        devices.c.info,
    )
    for row in conn.execute(query).all():
        terms = _device_terms(row, host)
        if terms:
            conn.execute(
                device_terms.insert(),
                [{"device_id": row.id, "key": k, "value": v} for k, v in terms],
            )
    # The old lease could hand one device several jobs at once: keep its first running, so
    # the unique index below can be built; the others go back to the queue.
    running = conn.execute(
        sa.select(jobs.c.id, jobs.c.device_id)
        .where(jobs.c.status == "running", jobs.c.device_id.is_not(None))
        .order_by(jobs.c.device_id, jobs.c.id)
    ).all()
    seen: set[int] = set()
    for job_id, device_id in running:
        if device_id in seen:
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(
                    status="queued",
                    device_id=None,
                    lease_expires_at=None,
                    error="requeued on upgrade: its device held another job at the same time",
                )
            )
        seen.add(device_id)


def upgrade() -> None:
    op.create_table(
        "queue_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("selector", sa.String(length=200), nullable=False),
        sa.Column("runtime", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("selector", "runtime", name="uq_queue_keys_selector"),
    )
    op.create_table(
        "queue_key_terms",
        sa.Column("queue_key_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["queue_key_id"], ["queue_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("queue_key_id", "key", "value"),
    )
    op.create_table(
        "device_terms",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id", "key", "value"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queue_key_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_jobs_queue_key_id", "queue_keys", ["queue_key_id"], ["id"])
    _backfill(op.get_bind())
    op.create_index(
        "uq_jobs_running_device",
        "jobs",
        ["device_id"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "ix_jobs_queued",
        "jobs",
        ["queue_key_id", "id"],
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_queued", table_name="jobs")
    op.drop_index("uq_jobs_running_device", table_name="jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint("fk_jobs_queue_key_id", type_="foreignkey")
        batch_op.drop_column("queue_key_id")
    op.drop_table("device_terms")
    op.drop_table("queue_key_terms")
    op.drop_table("queue_keys")
