"""The measurement jobs of predictor builds: kernel batches, single kernels, whole networks.

Each job measures a hidden model (``Model.kind`` ``kernels`` / ``kernel`` / ``validation``)
stored in the artifact store like a table's block: its file is needed only while the job
runs (garbage collection purges it afterwards; the measurements live in the sample rows).
A batch's artifact is a zip of ONNX files with ``manifest.json`` (``KernelManifest``).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import Job, Model
from db.predictors import Predictor
from latencylab.predictors import BATCH_KIND, KernelItem, KernelManifest
from server.artifacts import ArtifactStore
from server.queue import lifecycle
from server.store.artifacts import add_artifact

SINGLE_KIND = "predictor_single"
NETWORK_KIND = "predictor_network"


def io_specs(proto: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Graph inputs (initializers aside) and outputs as ``TensorSpec`` dicts."""
    from onnx import helper

    inits = {i.name for i in proto.graph.initializer}

    def spec(v: Any) -> dict[str, Any]:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in t.shape.dim]  # fmt: skip
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "float32"
        return {"name": v.name, "shape": dims, "dtype": dtype}

    ins = [spec(v) for v in proto.graph.input if v.name not in inits]
    return ins, [spec(v) for v in proto.graph.output]


def _store(session: Session, store: ArtifactStore, data: bytes, fmt: str) -> tuple[str, int]:
    pending = store.open_pending(limit=len(data) + 1)
    try:
        pending.write(data)
    except BaseException:
        pending.discard()
        raise
    sha, size, _ = add_artifact(session, pending, fmt)
    return sha, size


def _queue(
    session: Session,
    store: ArtifactStore,
    p: Predictor,
    *,
    data: bytes,
    fmt: str,
    model_kind: str,
    job_kind: str,
    name: str,
    io_: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    settings: dict[str, Any],
    meta: dict[str, Any],
) -> tuple[Model, Job]:
    sha, size = _store(session, store, data, fmt)
    model = Model(
        name=name[:200],
        kind=model_kind,
        format="onnx",
        sha256=sha,
        size=size,
        inputs=io_[0],
        outputs=io_[1],
        opset=None,
        meta={"predictor_id": p.id, **meta},
    )
    session.add(model)
    session.flush()
    job = Job(
        kind=job_kind,
        model_id=model.id,
        artifact_sha256=sha,
        runtime=p.runtime,
        device_selector=p.device_name,
        precision=p.precision,
        batch_size=p.batch_size,
        threads=p.threads,
        settings=dict(settings),
        max_attempts=int(p.settings.get("max_attempts", 3)),
    )
    lifecycle.enqueue(session, job)
    return model, job


def queue_batch(
    session: Session, store: ArtifactStore, p: Predictor, models: Sequence[tuple[str, Any]]
) -> Job:
    """One ``predictor_batch`` job measuring ``models`` (``(sample key, ModelProto)``)."""
    buf = io.BytesIO()
    items = []
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, (key, proto) in enumerate(models):
            name = f"k{i:04d}.onnx"
            zf.writestr(name, proto.SerializeToString())
            items.append(KernelItem(key=key, file=name, inputs=io_specs(proto)[0]))
        zf.writestr("manifest.json", KernelManifest(items=items).model_dump_json())
    _, job = _queue(
        session,
        store,
        p,
        data=buf.getvalue(),
        fmt="zip",
        model_kind="kernels",
        job_kind=BATCH_KIND,
        name=f"predictor {p.id} kernel batch ({len(items)} models)",
        io_=([], []),
        settings=p.settings["kernel"],
        meta={"kernels": len(items)},
    )
    return job


def queue_single(session: Session, store: ArtifactStore, p: Predictor, key: str, proto: Any) -> Job:
    """One kernel model measured the standard way (a fresh process): the bias check."""
    _, job = _queue(
        session,
        store,
        p,
        data=proto.SerializeToString(),
        fmt="onnx",
        model_kind="kernel",
        job_kind=SINGLE_KIND,
        name=f"predictor {p.id} kernel {key}",
        io_=io_specs(proto),
        settings=p.settings["kernel"],
        meta={"sample_key": key[:300]},
    )
    return job


def queue_network(
    session: Session,
    store: ArtifactStore,
    p: Predictor,
    name: str,
    proto: Any,
    role: str = "validation",
) -> tuple[Model, Job]:
    """A calibration or validation network measured end to end (a fresh process, as a
    benchmark)."""
    return _queue(
        session,
        store,
        p,
        data=proto.SerializeToString(),
        fmt="onnx",
        model_kind="validation",
        job_kind=NETWORK_KIND,
        name=f"predictor {p.id} {role} {name}",
        io_=io_specs(proto),
        settings=p.settings["network"],
        meta={"network": name, "role": role},
    )


def claim(session: Session, row: Any, row_id: int, column: str = "status") -> bool:
    """Atomically move a pending row to queued (False: another build took it)."""
    col = getattr(row, column)
    res = session.execute(
        update(row)
        .where(row.id == row_id, col == "pending")
        .values({column: "queued"})
        .execution_options(synchronize_session=False)
    )
    return res.rowcount == 1  # type: ignore[attr-defined]
