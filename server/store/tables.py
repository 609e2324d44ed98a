"""Latency tables: create / resume builds on ONE device, serve them, predict with them.

The build itself (lazy model generation, job hooks, phases) is in ``table_build``; quality
figures in ``table_quality``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Device, Job, utcnow
from db.nas import LatencyTable, TableEntry
from latencylab.spaces import LocalPredictor, get_space
from latencylab.status import FINISHED
from latencylab.tables import (
    FailedBlock,
    PredictResponse,
    SpacePublic,
    TableCreate,
    TableProgress,
    TablePublic,
    TableQuality,
)
from server.artifacts import ArtifactStore
from server.config import Settings
from server.store import table_build as build
from server.store.benchmarks import _describe
from server.store.conversions import NATIVE_RUNTIMES
from server.store.devices import SelectorError, can_take, device_matches, is_online, list_devices
from server.store.devices import parse_selector as _parse

TERMINAL = ("succeeded", "failed")
"""The final statuses of table entries and validation networks."""


class TableRejected(ValueError):
    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def list_spaces() -> list[SpacePublic]:
    from latencylab.spaces import SPACES

    return [SpacePublic.model_validate(s.to_dict()) for s in SPACES.values()]


def resolve_device(session: Session, selector: str, runtime: str, offline_s: float) -> Device:
    """The ONE registered device a table is measured on: online first, then last seen."""
    try:
        _parse(selector)
    except SelectorError as exc:
        raise TableRejected(str(exc)) from exc
    devices = list_devices(session)
    matching = [d for d in devices if device_matches(d, selector)]
    if not matching:
        raise TableRejected(f"no registered device matches '{selector}'; {_describe(devices)}")
    able = [d for d in matching if can_take(d, selector, runtime)]
    if not able:
        raise TableRejected(
            f"devices matching '{selector}' do not offer runtime '{runtime}'; {_describe(matching)}"
        )
    return max(able, key=lambda d: (is_online(d, offline_s), d.last_seen, -d.id))


def _same(session: Session, body: TableCreate, res: int, device: Device) -> LatencyTable | None:
    q = select(LatencyTable).where(
        LatencyTable.space == body.space,
        LatencyTable.resolution == res,
        LatencyTable.device_id == device.id,
        LatencyTable.runtime == body.runtime,
        LatencyTable.precision == body.precision,
        LatencyTable.batch_size == body.batch_size,
        LatencyTable.threads == body.threads,
    )
    want = {"statistic": body.statistic, "validate_n": body.validate_n, "seed": body.seed}
    if body.validate_exported:
        want["validate_exported"] = body.validate_exported
    for t in session.scalars(q.order_by(LatencyTable.id.desc())):
        if all(t.settings.get(k) == v for k, v in want.items()):
            return t
    return None


def _add_entries(session: Session, table: LatencyTable) -> None:
    """Create the scope's missing entries (no-op blocks measured as 0 ms); retry failed ones."""
    existing = build.entries_of(session, table)
    for entry in existing.values():
        if entry.status == "failed":
            entry.status, entry.error, entry.job_id, entry.model_id = "pending", None, None, None
    table.blocks_reused = sum(e.status == "succeeded" for e in existing.values())
    for key, block in build.blocks_of(table.space, table.resolution).items():
        if key in existing:
            continue
        entry = TableEntry(
            device_id=table.device_id,
            runtime=table.runtime,
            precision=table.precision,
            batch_size=table.batch_size,
            threads=table.threads,
            block_key=key,
            block=block.to_dict(),
        )
        if block.is_noop:
            entry.status, entry.mean_ms, entry.p50_ms, entry.min_ms = "succeeded", 0.0, 0.0, 0.0
            entry.var_ms2, entry.count, entry.finished_at = 0.0, 0, utcnow()
        try:
            with session.begin_nested():  # a concurrent build may insert the same entry
                session.add(entry)
        except IntegrityError:
            pass


def create_table(
    session: Session, store: ArtifactStore, body: TableCreate, owner: int | None, cfg: Settings
) -> tuple[LatencyTable, bool]:
    """A new table (or the identical existing one, resumed if failed); ``(table, created)``."""
    try:
        space = get_space(body.space)
        res = space.check_resolution(body.resolution)
    except ValueError as exc:
        raise TableRejected(str(exc)) from exc
    if body.runtime not in NATIVE_RUNTIMES["onnx"]:
        raise TableRejected(
            f"runtime '{body.runtime}' does not run ONNX blocks natively; tables support "
            f"{', '.join(sorted(NATIVE_RUNTIMES['onnx']))}"
        )
    if body.validate_exported and space.name not in build.EXPORTED_SPACES:
        raise TableRejected(
            f"validate_exported: {space.name} has no reference PyTorch implementation to "
            f"export; use it with {', '.join(build.EXPORTED_SPACES)} or set it to 0"
        )
    device = resolve_device(session, body.device, body.runtime, cfg.offline_after_s)
    if not body.fresh and (old := _same(session, body, res, device)) is not None:
        if old.status == "failed":
            resume_table(session, store, old)
        return old, False
    settings: dict[str, Any] = {
        "measure": body.settings.model_dump(),
        "statistic": body.statistic,
        "validate_n": body.validate_n,
        "validate_exported": body.validate_exported,
        "seed": body.seed,
        "max_attempts": cfg.max_attempts,
    }
    table = LatencyTable(
        space=space.name,
        resolution=res,
        device_id=device.id,
        device_name=device.name,
        device_selector=body.device,
        runtime=body.runtime,
        precision=body.precision,
        batch_size=body.batch_size,
        threads=body.threads,
        settings=settings,
        blocks_total=len(build.blocks_of(space.name, res)),
        owner_token_id=owner,
    )
    session.add(table)
    session.flush()
    _add_entries(session, table)
    build.advance(session, store, table)
    return table, True


def resume_table(session: Session, store: ArtifactStore, table: LatencyTable) -> LatencyTable:
    """Retry failed blocks (or networks) and re-queue anything stranded; keep measured ones."""
    if table.status == "failed":
        _add_entries(session, table)
        table.status, table.error, table.finished_at = "building", None, None
    elif table.status == "validating":
        for net in build.networks_of(session, table):
            job = session.get(Job, net.job_id) if net.job_id else None
            if net.status == "queued" and (job is None or job.status in FINISHED):
                net.status, net.job_id = "pending", None
    build.advance(session, store, table)
    return table


def kick(session: Session, store: ArtifactStore, table: LatencyTable) -> None:
    """Queue stranded pending work (e.g. after a coordinator restart); cheap when none."""
    if table.status in ("building", "validating"):
        build.safely(session, f"table {table.id}", lambda: build.advance(session, store, table))


def get_table(session: Session, table_id: int) -> LatencyTable | None:
    return session.get(LatencyTable, table_id)


def list_tables(session: Session, limit: int = 200) -> list[LatencyTable]:
    return list(session.scalars(select(LatencyTable).order_by(LatencyTable.id.desc()).limit(limit)))


def progress_of(session: Session, table: LatencyTable) -> TableProgress:
    entries = build.entries_of(session, table)
    nets = build.networks_of(session, table)
    b_done = sum(e.status in TERMINAL for e in entries.values())
    n_total = len(nets) if nets else build.networks_planned(table)
    n_done = sum(n.status in TERMINAL for n in nets)
    return TableProgress(
        done=b_done + n_done,
        total=table.blocks_total + n_total,
        blocks_done=b_done,
        blocks_total=table.blocks_total,
        blocks_failed=sum(e.status == "failed" for e in entries.values()),
        blocks_reused=table.blocks_reused,
        networks_done=n_done,
        networks_total=n_total,
        networks_failed=sum(n.status == "failed" for n in nets),
    )


def table_public(session: Session, table: LatencyTable) -> TablePublic:
    blocks = build.blocks_of(table.space, table.resolution)
    failed = [
        FailedBlock(key=k, ofa_key=blocks[k].ofa_key, error=e.error)
        for k, e in build.entries_of(session, table).items()
        if e.status == "failed"
    ]
    built = table.blocks_finished_at
    return TablePublic(
        id=table.id,
        space=table.space,
        resolution=table.resolution,
        device=table.device_name,
        device_selector=table.device_selector,
        runtime=table.runtime,
        precision=table.precision,
        batch_size=table.batch_size,
        threads=table.threads,
        status=table.status,
        progress=progress_of(session, table),
        settings=table.settings or {},
        quality=TableQuality.model_validate(table.quality) if table.quality else None,
        calibration=table.calibration,
        predictor="linear" if table.calibration else "lut_sum",
        error=table.error,
        failed_blocks=failed,
        build_seconds=(built - table.created_at).total_seconds() if built else None,
        created_at=table.created_at,
        finished_at=table.finished_at,
    )


_PREDICTORS: dict[tuple[str, int], LocalPredictor] = {}


def predictor_for(session: Session, table: LatencyTable) -> LocalPredictor:
    """The table's LocalPredictor (cached once the table is final); 409 while incomplete."""
    key = (str(session.get_bind().engine.url), table.id)
    if table.status == "succeeded" and key in _PREDICTORS:
        return _PREDICTORS[key]
    entries = build.entries_of(session, table)
    lut = build.lut_of(table, entries)
    if len(lut) < table.blocks_total:
        raise TableRejected(
            f"table {table.id} is {table.status}: {len(lut)} of {table.blocks_total} blocks "
            "measured; predictions need every block",
            409,
        )
    pred = LocalPredictor(table.space, lut, table.calibration, table.resolution)
    if table.status == "succeeded":
        _PREDICTORS[key] = pred
    return pred


def predict(
    session: Session, table: LatencyTable, archs: list[Any], resolution: int | None
) -> PredictResponse:
    pred = predictor_for(session, table)
    try:
        lat, lut = pred.predict(archs, resolution)
    except (ValueError, KeyError) as exc:
        raise TableRejected(str(exc.args[0]) if exc.args else str(exc)) from exc
    return PredictResponse(
        latency_ms=lat, lut_sum_ms=lut, predictor="linear" if table.calibration else "lut_sum"
    )
