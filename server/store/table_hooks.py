"""The job kinds of latency tables (``table_block``, ``table_network``): record a block's or
a network's measurement, then let the table advance (queue the next model, change phase).
Registered at app start (``server.app``) with the other kinds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from db.models import Job, Result
from db.nas import LatencyTable, TableEntry, TableNetwork
from latencylab.status import JobStatus
from server.queue.kinds import JobContext, PlainKind
from server.store.table_build import advance, safely


def _stats(result: Result | None) -> tuple[dict[str, Any] | None, str | None]:
    if result is not None and result.status == JobStatus.succeeded and result.latency:
        return result.latency, None
    return None, (result.error if result is not None else None) or "measurement failed"


def block_finished(ctx: JobContext, job: Job, result: Result | None) -> None:
    session = ctx.session

    def run() -> None:
        entry = session.scalar(select(TableEntry).where(TableEntry.job_id == job.id))
        if entry is None:
            return
        lat, error = _stats(result)
        entry.finished_at = ctx.now()
        if lat is None:
            entry.status, entry.error = "failed", error or job.error
        else:
            std = float(lat.get("std") or 0.0)
            entry.status, entry.error = "succeeded", None
            entry.mean_ms, entry.p50_ms = float(lat["mean"]), lat.get("p50")
            entry.min_ms = lat.get("min")
            entry.var_ms2, entry.count = std * std, result.runs if result else 0
        session.flush()
        tables = session.scalars(
            select(LatencyTable).where(
                LatencyTable.status == "building",
                LatencyTable.device_id == entry.device_id,
                LatencyTable.runtime == entry.runtime,
                LatencyTable.precision == entry.precision,
                LatencyTable.batch_size == entry.batch_size,
                LatencyTable.threads == entry.threads,
            )
        )
        for table in list(tables):
            advance(session, ctx.store, table)

    safely(session, f"block job {job.id}", run)


def network_finished(ctx: JobContext, job: Job, result: Result | None) -> None:
    session = ctx.session

    def run() -> None:
        net = session.scalar(select(TableNetwork).where(TableNetwork.job_id == job.id))
        if net is None:
            return
        lat, error = _stats(result)
        net.finished_at = ctx.now()
        if lat is None:
            net.status, net.error = "failed", error or job.error
        else:
            net.status, net.mean_ms, net.p50_ms = "succeeded", float(lat["mean"]), lat.get("p50")
            net.min_ms = lat.get("min")
        session.flush()
        table = session.get(LatencyTable, net.table_id)
        if table is not None:
            advance(session, ctx.store, table)

    safely(session, f"network job {job.id}", run)


class BlockKind(PlainKind):
    def on_finished(self, ctx: JobContext, job: Job, result: Result | None) -> None:
        block_finished(ctx, job, result)


class NetworkKind(PlainKind):
    def on_finished(self, ctx: JobContext, job: Job, result: Result | None) -> None:
        network_finished(ctx, job, result)
