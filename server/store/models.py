"""Uploaded models and the artifacts behind them."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Model
from latencylab.schemas import ModelPublic, TensorSpec
from server.artifacts import ArtifactStore, PendingFile
from server.formats import ModelRejected, apply_input_shapes, detect_format, inspect_upload
from server.store.artifacts import add_artifact


def check_filename(filename: str | None) -> str:
    """A plain file name: no directories, no ``..``, no control characters."""
    if not filename:
        return "model"
    if (
        "/" in filename
        or "\\" in filename
        or filename in {".", ".."}
        or ".." in PurePosixPath(filename).parts
        or PureWindowsPath(filename).drive
        or any(ord(c) < 32 for c in filename)
        or len(filename) > 255
    ):
        raise ModelRejected(f"filename must be a plain file name, got {filename!r}", 400)
    return filename


def parse_metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or raw.strip() == "":
        return {}
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelRejected(f"metadata is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelRejected('metadata must be a JSON object, e.g. {"tags": ["mbv2"]}')
    acc = meta.get("accuracy", {})
    if not isinstance(acc, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in acc.values()
    ):
        raise ModelRejected('metadata.accuracy must map metric names to numbers: {"top1": 75.3}')
    tags = meta.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ModelRejected("metadata.tags must be a list of strings")
    if "input_shapes" in meta and not isinstance(meta["input_shapes"], dict):
        raise ModelRejected("metadata.input_shapes must map input names to shapes")
    return meta


def create_model(
    session: Session,
    store: ArtifactStore,
    pending: PendingFile,
    *,
    filename: str | None,
    name: str | None,
    metadata_raw: str | None,
    owner_token_id: int | None,
    max_unpacked: int = 4 * 2**30,
) -> Model:
    """Validate the streamed file and register it. On any error nothing remains."""
    created = False
    sha = None
    try:
        fname = check_filename(filename)
        meta = parse_metadata(metadata_raw)
        kind = detect_format(pending.path, fname)
        with tempfile.TemporaryDirectory(dir=store.tmp, prefix="inspect-") as tmp:
            info = inspect_upload(pending.path, kind, Path(tmp), max_unpacked)
        inputs = apply_input_shapes(info.inputs, meta.get("input_shapes"))
        fmt = "onnx" if kind == "onnx-zip" else info.format
        sha, size, created = add_artifact(session, pending, fmt)
        model = Model(
            name=(name or PurePosixPath(fname).stem.removesuffix(".mlpackage") or "model")[:200],
            format=fmt,
            artifact_meta=info.artifact_meta,
            sha256=sha,
            size=size,
            inputs=inputs,
            outputs=info.outputs,
            opset=info.opset,
            meta=meta,
            owner_token_id=owner_token_id,
        )
        session.add(model)
        session.flush()
        return model
    except BaseException:
        pending.discard()
        if created and sha is not None:
            store.remove(sha)
        raise


def get_model(session: Session, model_id: int) -> Model | None:
    return session.get(Model, model_id)


def list_models(session: Session, limit: int = 500, offset: int = 0) -> list[Model]:
    q = select(Model).where(Model.kind == "user").order_by(Model.id.desc())
    return list(session.scalars(q.limit(limit).offset(offset)))


def model_public(m: Model) -> ModelPublic:
    return ModelPublic(
        id=m.id,
        name=m.name,
        kind=m.kind,
        format=m.format,
        sha256=m.sha256,
        size=m.size,
        inputs=[TensorSpec(**i) for i in m.inputs],
        outputs=[TensorSpec(**o) for o in m.outputs],
        opset=m.opset,
        metadata=m.meta or {},
        created_at=m.created_at,
    )
