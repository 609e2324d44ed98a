"""Uploaded models and the artifacts behind them."""

from __future__ import annotations

import json
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import ApiToken, Model
from latencylab.errors import ErrorCode
from latencylab.fields import MAX_JSON_DEPTH, json_problem
from latencylab.schemas import ModelPublic, ModelUpdate, TensorSpec
from server.artifacts import ArtifactStore, PendingFile
from server.errors import ApiError
from server.formats import InspectLimits, ModelRejected, apply_input_shapes, inspect_upload
from server.store.artifacts import add_artifact
from server.upload import MAX_FIELD_BYTES as MAX_METADATA_BYTES


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


def check_name(name: str | None) -> None:
    if name and "\x00" in name:
        raise ModelRejected("name must not contain NUL characters")


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number; give finite numbers only")


def parse_metadata(raw: str | None) -> dict[str, Any]:
    """The upload's ``metadata`` field: a JSON object the database can store (finite numbers,
    no NUL characters, nested at most ``MAX_JSON_DEPTH`` levels; the form caps it at 64 KiB)."""
    if raw is None or raw.strip() == "":
        return {}
    try:
        meta = json.loads(raw, parse_constant=_no_constant)
    except RecursionError as exc:
        raise ModelRejected(f"metadata is nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an integer of 5000 digits
        raise ModelRejected(f"metadata is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelRejected('metadata must be a JSON object, e.g. {"tags": ["mbv2"]}')
    problem = json_problem(meta, root="metadata")
    if problem is not None:
        raise ModelRejected(problem)
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
    limits: InspectLimits,
) -> Model:
    """Validate the streamed file (checked in a sandbox within ``limits``) and register it.
    On any error nothing remains."""
    created = False
    sha = None
    try:
        fname = check_filename(filename)
        check_name(name)
        meta = parse_metadata(metadata_raw)
        with store.scratch_dir("inspect-") as tmp:
            info = inspect_upload(pending.path, tmp, limits, filename=fname)
        inputs = apply_input_shapes(info.inputs, meta.get("input_shapes"))
        fmt = info.format
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
    """The model, or None when it does not exist or was deleted (its results kept)."""
    model = session.get(Model, model_id)
    return model if model is not None and model.deleted_at is None else None


def find_model(session: Session, model_id: int) -> Model:
    """The live model: 404 when it never existed (or was deleted with its results), 410
    ``model_deleted`` when it was deleted and its results kept."""
    model = session.get(Model, model_id)
    if model is None:
        raise ApiError(404, ErrorCode.not_found, f"model {model_id} does not exist")
    if model.deleted_at is not None:
        raise ApiError(
            410,
            ErrorCode.model_deleted,
            f"model {model_id} was deleted at {model.deleted_at.isoformat(timespec='seconds')}Z;"
            " its benchmarks and results are still readable by id",
        )
    return model


def lock_model(session: Session, model_id: int) -> Model | None:
    """The model row, locked for this transaction (a no-op write: a row lock on PostgreSQL,
    the write lock on SQLite), so a concurrent edit or delete waits instead of being lost."""
    session.execute(
        update(Model)
        .where(Model.id == model_id)
        .values(id=Model.id)
        .execution_options(synchronize_session=False)
    )
    return session.get(Model, model_id, populate_existing=True)


def check_owner(model: Model, token: ApiToken) -> None:
    """Only the token that uploaded a model, or an admin, may change or delete it."""
    if token.scope == "admin" or (
        model.owner_token_id is not None and model.owner_token_id == token.id
    ):
        return
    raise ApiError(
        403,
        ErrorCode.forbidden,
        f"model {model.id} was uploaded with another token; only that token or an admin may "
        "change or delete it",
    )


def update_model(session: Session, model_id: int, body: ModelUpdate, token: ApiToken) -> Model:
    """Apply a ``ModelUpdate`` (see its docstring for the merge rules) to a live model."""
    if lock_model(session, model_id) is None:
        raise ApiError(404, ErrorCode.not_found, f"model {model_id} does not exist")
    model = find_model(session, model_id)
    check_owner(model, token)
    given = body.model_fields_set
    meta = dict(model.meta or {})
    for key, value in (body.metadata or {}).items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    for key in ("accuracy", "tags"):
        if key in given:
            value = getattr(body, key)
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
    if len(json.dumps(meta)) > MAX_METADATA_BYTES:
        raise ApiError(
            422,
            ErrorCode.validation_error,
            f"metadata would exceed {MAX_METADATA_BYTES // 1024} KiB as JSON; nothing changed",
        )
    if body.name is not None:
        model.name = body.name
    model.meta = meta
    session.flush()
    return model


def list_models(
    session: Session, limit: int = 500, offset: int = 0, sha256: str | None = None
) -> list[Model]:
    q = select(Model).where(Model.kind == "user", Model.deleted_at.is_(None))
    q = q.order_by(Model.id.desc())
    if sha256 is not None:
        q = q.where(Model.sha256 == sha256)
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
