"""Driving a latency-table build: generate models lazily, queue their jobs, advance phases.

A table keeps at most ``WINDOW`` of its jobs queued or running; each finished job (its
kind's ``on_finished`` hook, ``server.store.table_hooks``, in the agent's report transaction)
generates the next model. So the POST answers at once, the queue never holds hundreds of
table jobs ahead of other work, and ONNX generation never overlaps a measurement of the same
build. The artifact store comes in explicitly (the hook's context, or the route's state). The phases::

    building   (block entries pending -> queued -> succeeded | failed)
      -> validating (validation networks, likewise)  -> succeeded
      -> failed  (some block failed: POST /tables/{id}/resume retries them)
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from functools import cache
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Job, Model, utcnow
from db.nas import LatencyTable, TableEntry, TableNetwork
from latencylab.spaces import Block, LocalPredictor, get_space
from server.artifacts import ArtifactStore
from server.queue import lifecycle
from server.store.artifacts import add_artifact

log = logging.getLogger("latencylab.tables")
WINDOW = 2
"""Jobs of one table phase queued or running at once."""
ACTIVE = ("pending", "queued")
KIND_KEY = "validation"
"""Key in a validation network's ``arch`` JSON naming its kind (absent: ``generated``)."""
EXPORTED_KINDS = ("exported", "exported_normalized")
"""``validate_exported``: each arch torch.onnx.export'ed as it is, and normalised."""
EXPORTED_SPACES = ("ofa-proxyless", "ofa-mbv3")
"""The spaces ``converters.torch_reference`` writes as PyTorch modules."""


@cache
def blocks_of(space: str, resolution: int) -> dict[str, Block]:
    """The unique blocks of ``space`` at ``resolution`` by key, in expand order."""
    return {b.key: b for b in get_space(space).expand(resolution)}


def scope_of(table: LatencyTable) -> list[Any]:
    """Where-clauses selecting the entries measured in this table's scope."""
    return [
        TableEntry.device_id == table.device_id,
        TableEntry.runtime == table.runtime,
        TableEntry.precision == table.precision,
        TableEntry.batch_size == table.batch_size,
        TableEntry.threads == table.threads,
    ]


def entries_of(session: Session, table: LatencyTable) -> dict[str, TableEntry]:
    keys = list(blocks_of(table.space, table.resolution))
    rows = session.scalars(
        select(TableEntry).where(*scope_of(table), TableEntry.block_key.in_(keys))
    )
    return {e.block_key: e for e in rows}


def networks_of(session: Session, table: LatencyTable) -> list[TableNetwork]:
    q = select(TableNetwork).where(TableNetwork.table_id == table.id).order_by(TableNetwork.idx)
    return list(session.scalars(q))


def kind_of(net: TableNetwork) -> str:
    """``generated``, ``exported`` or ``exported_normalized``."""
    arch = net.arch
    return str(arch.get(KIND_KEY, "generated")) if isinstance(arch, dict) else "generated"


def arch_of(net: TableNetwork) -> Any:
    """The network's architecture in the space's encoding (without its kind)."""
    arch = net.arch
    if isinstance(arch, dict) and KIND_KEY in arch:
        return {k: v for k, v in arch.items() if k != KIND_KEY}
    return arch


def networks_planned(table: LatencyTable) -> int:
    """Validation networks the table measures: generated plus both exported kinds."""
    n = int(table.settings.get("validate_n", 0))
    return n + len(EXPORTED_KINDS) * int(table.settings.get("validate_exported", 0))


def _network_proto(table: LatencyTable, net: TableNetwork) -> tuple[Any, dict[str, int]]:
    """The ONNX model of a validation network of its kind, and the normaliser's rewrites."""
    from converters.blocks import network_model

    space, kind, arch = get_space(table.space), kind_of(net), arch_of(net)
    if kind == "generated":
        return network_model(space, arch, table.resolution, table.batch_size), {}
    from converters.onnx_normalize import normalize
    from converters.torch_reference import exported_network  # torch: only here

    proto = exported_network(space, arch, table.resolution, table.batch_size)
    return normalize(proto) if kind == "exported_normalized" else (proto, {})


def stat_of(table: LatencyTable) -> str:
    """``min``, ``p50`` or ``mean``: the statistic of each measurement the table sums."""
    return str(table.settings.get("statistic", "mean"))


def value_of(row: TableEntry | TableNetwork, stat: str) -> float | None:
    value = getattr(row, f"{stat}_ms", None)
    return row.mean_ms if value is None else float(value)


def lut_of(table: LatencyTable, entries: dict[str, TableEntry]) -> dict[str, dict[str, Any]]:
    """``{block key: {mean, count, var}}`` of the measured entries (``mean`` = the statistic)."""
    stat = stat_of(table)
    out = {}
    for key, e in entries.items():
        value = value_of(e, stat)
        if e.status == "succeeded" and value is not None:
            out[key] = {"mean": value, "count": e.count or 0, "var": e.var_ms2 or 0.0}
    return out


# ------------------------------------------------------------------ models and jobs
def _tensor(shape: tuple[int, int, int], batch: int, head: bool = False) -> dict[str, Any]:
    h, w, c = shape
    return {"shape": [batch, c] if head else [batch, c, h, w], "dtype": "float32"}


def _queue_model(
    session: Session,
    store: ArtifactStore,
    table: LatencyTable,
    proto: Any,
    *,
    kind: str,
    name: str,
    io: tuple[dict[str, Any], dict[str, Any]],
    meta: dict[str, Any],
) -> tuple[Model, Job]:
    """Store an ONNX model as a hidden Model (kind block|network) and queue its job."""
    data = proto.SerializeToString()
    pending = store.open_pending(limit=len(data) + 1)
    try:
        pending.write(data)
    except BaseException:
        pending.discard()
        raise
    sha, size, _ = add_artifact(session, pending, "onnx")
    model = Model(
        name=name[:200],
        kind=kind,
        format="onnx",
        sha256=sha,
        size=size,
        inputs=[{"name": "input", **io[0]}],
        outputs=[{"name": "output", **io[1]}],
        opset=17,
        meta=meta,
    )
    session.add(model)
    session.flush()
    job = Job(
        kind=f"table_{kind}",
        model_id=model.id,
        artifact_sha256=sha,
        runtime=table.runtime,
        device_selector=table.device_name,
        precision=table.precision,
        batch_size=table.batch_size,
        threads=table.threads,
        settings=dict(table.settings["measure"]),
        max_attempts=int(table.settings.get("max_attempts", 3)),
    )
    lifecycle.enqueue(session, job)
    return model, job


def _claim(session: Session, row: type[TableEntry] | type[TableNetwork], row_id: int) -> bool:
    """Atomically move a pending row to queued (False: someone else took it)."""
    res = session.execute(
        update(row)
        .where(row.id == row_id, row.status == "pending")
        .values(status="queued")
        .execution_options(synchronize_session=False)
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def _refill_blocks(
    session: Session, store: ArtifactStore, table: LatencyTable, entries: dict[str, TableEntry]
) -> None:
    from converters.blocks import block_model  # numpy + onnx: only where models are built

    queued = sum(e.status == "queued" for e in entries.values())
    pending = sorted((e for e in entries.values() if e.status == "pending"), key=lambda e: e.id)
    blocks = blocks_of(table.space, table.resolution)
    for entry in pending:
        if queued >= WINDOW:
            return
        if not _claim(session, TableEntry, entry.id):
            continue
        session.refresh(entry)
        block = blocks[entry.block_key]
        try:
            proto = block_model(block, batch_size=table.batch_size)
            b = table.batch_size
            io = (_tensor(block.in_shape, b), _tensor(block.out_shape, b, block.kind == "head"))
            model, job = _queue_model(
                session,
                store,
                table,
                proto,
                kind="block",
                name=f"{table.space} block {entry.block_key}",
                io=io,
                meta={"block_key": entry.block_key, "table_id": table.id},
            )
        except Exception as exc:  # a block that cannot be built is a failed entry
            log.exception("table %s: building block %s failed", table.id, entry.block_key)
            entry.status, entry.error = "failed", f"building the block failed: {exc}"
            entry.finished_at = utcnow()
            continue
        entry.model_id, entry.job_id = model.id, job.id
        queued += 1


def _refill_networks(
    session: Session, store: ArtifactStore, table: LatencyTable, nets: list[TableNetwork]
) -> None:
    queued = sum(n.status == "queued" for n in nets)
    space = get_space(table.space)
    for net in nets:
        if queued >= WINDOW:
            return
        if net.status != "pending" or not _claim(session, TableNetwork, net.id):
            continue
        session.refresh(net)
        try:
            kind = kind_of(net)
            blocks = space.blocks_for(arch_of(net), table.resolution)
            proto, rewrites = _network_proto(table, net)
            b = table.batch_size
            head = blocks[-1].kind == "head"
            io = (_tensor(blocks[0].in_shape, b), _tensor(blocks[-1].out_shape, b, head))
            model, job = _queue_model(
                session,
                store,
                table,
                proto,
                kind="network",
                name=f"{table.space} r{table.resolution} table {table.id} net {net.idx} {kind}",
                io=io,
                meta={
                    "table_id": table.id,
                    "arch": arch_of(net),
                    KIND_KEY: kind,
                    "ops": dict(Counter(n.op_type for n in proto.graph.node)),
                    "rewrites": rewrites,
                },
            )
            model.opset = max((o.version for o in proto.opset_import if o.domain == ""), default=17)
        except Exception as exc:
            log.exception("table %s: building network %s failed", table.id, net.idx)
            net.status, net.error, net.finished_at = "failed", f"build failed: {exc}", utcnow()
            continue
        net.model_id, net.job_id = model.id, job.id
        queued += 1


# ------------------------------------------------------------------ phases
def _start_validation(
    session: Session, table: LatencyTable, entries: dict[str, TableEntry]
) -> None:
    space = get_space(table.space)
    rng = random.Random(int(table.settings.get("seed", 0)))
    archs = [space.sample(rng) for _ in range(int(table.settings.get("validate_n", 0)))]
    predictor = LocalPredictor(space, lut_of(table, entries), resolution=table.resolution)
    _, sums = predictor.predict(archs)
    for i, (arch, s) in enumerate(zip(archs, sums, strict=True)):
        session.add(TableNetwork(table_id=table.id, idx=i, arch=arch, lut_sum_ms=s))
    n_exp = int(table.settings.get("validate_exported", 0))
    if n_exp and table.space in EXPORTED_SPACES:  # the same archs first: paired with generated
        more = [space.sample(rng) for _ in range(max(0, n_exp - len(archs)))]
        exp_archs = [*archs[:n_exp], *more]
        _, exp_sums = predictor.predict(exp_archs)
        idx = len(archs)
        for kind in EXPORTED_KINDS:
            for arch, s in zip(exp_archs, exp_sums, strict=True):
                row = TableNetwork(table_id=table.id, idx=idx, arch={**arch, KIND_KEY: kind})
                row.lut_sum_ms = s
                session.add(row)
                idx += 1
    table.blocks_finished_at = utcnow()
    session.flush()


def _finish(session: Session, table: LatencyTable, nets: list[TableNetwork]) -> None:
    from server.store.table_quality import assess, assess_kinds

    stat = stat_of(table)
    ok = [n for n in nets if n.status == "succeeded" and n.lut_sum_ms is not None]
    gen = [n for n in ok if kind_of(n) == "generated"]
    meas = [float(value_of(n, stat) or 0.0) for n in gen]
    quality, calibration = assess([float(n.lut_sum_ms or 0.0) for n in gen], meas)
    for n, point in zip(gen, (quality or {}).get("points", []), strict=False):
        point["idx"] = n.idx
    if quality is not None and len(gen) < len(ok):
        rows = [
            (kind_of(n), n.idx, json_key(arch_of(n)), float(n.lut_sum_ms or 0.0), value_of(n, stat))
            for n in ok
        ]
        ops: dict[str, Any] = {}
        for n in ok:
            model = session.get(Model, n.model_id) if n.model_id else None
            ops.setdefault(kind_of(n), ((model.meta or {}) if model else {}).get("ops", {}))
        quality["kinds"] = assess_kinds(rows, quality, calibration, ops)
    table.quality, table.calibration = quality, calibration
    failed = len(nets) - len(ok)
    table.error = f"{failed} of {len(nets)} validation networks failed" if failed else None
    table.finished_at = utcnow()


def _transition(session: Session, table: LatencyTable, old: str, new: str) -> bool:
    """Move the table from ``old`` to ``new`` unless a concurrent transaction already did."""
    session.flush()
    res = session.execute(
        update(LatencyTable)
        .where(LatencyTable.id == table.id, LatencyTable.status == old)
        .values(status=new)
        .execution_options(synchronize_session=False)
    )
    session.refresh(table)
    return res.rowcount == 1  # type: ignore[attr-defined]


def advance(session: Session, store: ArtifactStore, table: LatencyTable) -> None:
    """Queue what the table needs next and move it to its next phase when one ends."""
    if table.status == "building":
        entries = entries_of(session, table)
        _refill_blocks(session, store, table, entries)
        if any(e.status in ACTIVE for e in entries.values()):
            return
        failed = sorted(k for k, e in entries.items() if e.status == "failed")
        if failed:
            if _transition(session, table, "building", "failed"):
                table.finished_at = utcnow()
                table.error = f"{len(failed)} block(s) failed (resume to retry): {failed[0]} ..."
            return
        if not _transition(session, table, "building", "validating"):
            return
        _start_validation(session, table, entries)
    if table.status == "validating":
        nets = networks_of(session, table)
        _refill_networks(session, store, table, nets)
        active = any(n.status in ACTIVE for n in nets)
        if not active and _transition(session, table, "validating", "succeeded"):
            _finish(session, table, nets)


def json_key(arch: Any) -> str:
    """A canonical string of an architecture (pairs the kinds of one arch)."""
    return json.dumps(arch, sort_keys=True)


def safely(session: Session, what: str, fn: Any) -> None:
    """Run a hook body in a savepoint: a table bug must never fail an agent's report."""
    try:
        with session.begin_nested():
            fn()
    except Exception:
        log.exception("table hook failed: %s", what)
