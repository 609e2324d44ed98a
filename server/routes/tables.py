from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import JSONResponse

from db.nas import LatencyTable
from latencylab.fields import Id
from latencylab.tables import (
    PredictRequest,
    PredictResponse,
    SpacePublic,
    TableCreate,
    TableFormat,
    TablePublic,
)
from server.deps import CurrentUser, SessionDep, StateDep
from server.openapi import AUTH, errors
from server.store import table_export as export
from server.store import tables as store

router = APIRouter(tags=["tables"], responses=AUTH)


def _table(session: SessionDep, table_id: int) -> LatencyTable:
    table = store.get_table(session, table_id)
    if table is None:
        raise HTTPException(404, f"latency table {table_id} does not exist")
    return table


@router.get("/spaces", response_model=list[SpacePublic])
def list_spaces(_: CurrentUser) -> list[SpacePublic]:
    """The built-in NAS search spaces: choices, resolutions, arch format, unique blocks."""
    return store.list_spaces()


@router.post(
    "/tables",
    response_model=TablePublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(400, 422),
)
def create_table(
    body: TableCreate, session: SessionDep, state: StateDep, token: CurrentUser
) -> TablePublic:
    """Build a latency table of a space on one device (identical tables are reused)."""
    try:
        table, created = store.create_table(session, state.store, body, token.id, state.settings)
    except store.TableRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    return store.table_public(session, table).model_copy(update={"reused": not created})


@router.get("/tables", response_model=list[TablePublic], responses=errors(422))
def list_tables(
    session: SessionDep, _: CurrentUser, limit: int = Query(200, ge=1, le=2000)
) -> list[TablePublic]:
    """Latency tables, newest first, with status, progress and quality."""
    return [store.table_public(session, t) for t in store.list_tables(session, limit)]


@router.get(
    "/tables/{table_id}",
    response_model=TablePublic,
    responses={
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/yaml": {"schema": {"type": "string"}},
            }
        },
        **errors(404, 422),
    },
)
def get_table(
    table_id: Id,
    session: SessionDep,
    state: StateDep,
    _: CurrentUser,
    format: TableFormat | None = Query(
        None,
        description="json | csv | ofa-yaml: the entries. json and csv key each block by its "
        "LatencyLab key and carry `ofa_key`, the key ofa-yaml and OFA's own tables use "
        "(e.g. expanded_conv-input:112x112x24-output:56x56x32-expand:6-kernel:3-stride:2-idskip:0)",
    ),
) -> TablePublic | Response:
    """A table's status, progress and quality; with ?format= the table itself."""
    table = _table(session, table_id)
    store.kick(session, state.store, table)
    try:
        if format == "json":
            return JSONResponse(export.export_json(session, table).model_dump(mode="json"))
        if format == "csv":
            return Response(export.export_csv(session, table), media_type="text/csv")
        if format == "ofa-yaml":
            return Response(export.export_ofa_yaml(session, table), media_type="application/yaml")
    except store.TableRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    return store.table_public(session, table)


@router.post("/tables/{table_id}/resume", response_model=TablePublic, responses=errors(404, 422))
def resume_table(table_id: Id, session: SessionDep, state: StateDep, _: CurrentUser) -> TablePublic:
    """Retry a table's failed blocks or networks; measured entries are kept."""
    table = store.resume_table(session, state.store, _table(session, table_id))
    return store.table_public(session, table)


@router.post(
    "/tables/{table_id}/predict",
    response_model=PredictResponse,
    responses=errors(400, 404, 409, 422),
)
def predict(
    table_id: Id, body: PredictRequest, session: SessionDep, _: CurrentUser
) -> PredictResponse:
    """Predicted latency (best predictor) and plain table sum of each architecture."""
    try:
        return store.predict(
            session, _table(session, table_id), body.architectures, body.resolution
        )
    except store.TableRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
