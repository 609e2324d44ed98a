"""A latency table as JSON (what the SDK's LocalPredictor reads), CSV, or OFA's YAML."""

from __future__ import annotations

import csv
import io

from sqlalchemy.orm import Session

from db.nas import LatencyTable
from latencylab.spaces import get_space, ofa_entries, to_ofa_yaml
from latencylab.tables import TableEntryPublic, TableExport
from server.store import table_build as build
from server.store.tables import TableRejected, table_public

CSV_COLUMNS = (
    "key",
    "ofa_key",
    "kind",
    "in_shape",
    "out_shape",
    "kernel",
    "stride",
    "expand",
    "mid",
    "se",
    "skip",
    "status",
    "value_ms",
    "mean_ms",
    "p50_ms",
    "min_ms",
    "var_ms2",
    "count",
    "error",
)


def export_json(session: Session, table: LatencyTable) -> TableExport:
    entries = build.entries_of(session, table)
    lut = build.lut_of(table, entries)
    blocks = build.blocks_of(table.space, table.resolution)
    out = {
        key: TableEntryPublic(
            **lut[key],
            mean_ms=entries[key].mean_ms,
            p50_ms=entries[key].p50_ms,
            min_ms=entries[key].min_ms,
            ofa_key=blocks[key].ofa_key,
        )
        for key in blocks
        if key in lut
    }
    validation = [
        {
            "idx": n.idx,
            "arch": build.arch_of(n),
            "kind": build.kind_of(n),
            "status": n.status,
            "lut_sum_ms": n.lut_sum_ms,
            "mean_ms": n.mean_ms,
            "p50_ms": n.p50_ms,
            "min_ms": n.min_ms,
            "measured_ms": build.value_of(n, build.stat_of(table)),
            "error": n.error,
        }
        for n in build.networks_of(session, table)
    ]
    public = table_public(session, table)
    return TableExport(**public.model_dump(), entries=out, validation=validation)


def _shape(s: object) -> str:
    return "x".join(str(x) for x in s) if isinstance(s, list | tuple) else ""


def export_csv(session: Session, table: LatencyTable) -> str:
    """One row per block (failed and pending ones included, with their status)."""
    entries = build.entries_of(session, table)
    lut = build.lut_of(table, entries)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for key, b in build.blocks_of(table.space, table.resolution).items():
        e = entries.get(key)
        w.writerow(
            [
                key,
                b.ofa_key or "",
                b.kind,
                _shape(b.in_shape),
                _shape(b.out_shape),
                b.kernel,
                b.stride,
                b.expand,
                b.mid,
                int(b.se),
                int(b.skip),
                e.status if e else "missing",
                lut[key]["mean"] if key in lut else "",
                "" if e is None or e.mean_ms is None else e.mean_ms,
                "" if e is None or e.p50_ms is None else e.p50_ms,
                "" if e is None or e.min_ms is None else e.min_ms,
                "" if e is None or e.var_ms2 is None else e.var_ms2,
                "" if e is None or e.count is None else e.count,
                (e.error or "") if e else "",
            ]
        )
    return buf.getvalue()


def export_ofa_yaml(session: Session, table: LatencyTable) -> str:
    """OFA / ProxylessNAS lookup-table YAML: ``{ofa key: {mean, count, var}}`` (ms, ms^2)."""
    if table.space not in ("ofa-proxyless", "ofa-mbv3"):
        raise TableRejected(
            f"format ofa-yaml exists for the OFA spaces (ofa-proxyless, ofa-mbv3), not "
            f"{table.space}; use json or csv"
        )
    lut = build.lut_of(table, build.entries_of(session, table))
    header = (
        f"LatencyLab table {table.id}: {table.space} at {table.resolution}x{table.resolution} "
        f"on {table.device_name} ({table.runtime}, {table.precision}, batch {table.batch_size}, "
        f"{table.threads} thread(s)); 'mean' holds each block's {build.stat_of(table)} latency in ms, var in ms^2, "
        f"count = measured runs; {len(lut)} of {table.blocks_total} blocks measured"
    )
    return to_ofa_yaml(ofa_entries(get_space(table.space), lut, table.resolution), header=header)
