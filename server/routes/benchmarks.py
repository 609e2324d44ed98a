from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, status

from db.models import ResultSeries
from latencylab.checks import BenchmarkCheck, BenchmarkCheckPublic
from latencylab.errors import default_code
from latencylab.fields import Id
from latencylab.schemas import (
    BenchmarkCreate,
    BenchmarkPublic,
    LayerProfile,
    ProfilePublic,
    RawTimes,
)
from server.deps import CurrentUser, SessionDep, StateDep
from server.errors import ApiError
from server.openapi import AUTH, errors
from server.store import benchmarks as store

router = APIRouter(prefix="/benchmarks", tags=["benchmarks"], responses=AUTH)


@router.post(
    "",
    response_model=BenchmarkPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(400, 404, 422),
)
def create_benchmark(
    body: BenchmarkCreate, session: SessionDep, state: StateDep, token: CurrentUser
) -> BenchmarkPublic:
    """Queue one measurement job per target; devices pick them up."""
    try:
        bench = store.create_benchmark(session, body, token.id, state.settings.max_attempts)
    except store.BenchmarkRejected as exc:
        raise _refused(exc) from exc
    session.refresh(bench)
    return store.benchmark_public(session, bench)


def _refused(exc: store.BenchmarkRejected) -> ApiError:
    return ApiError(
        exc.status_code, default_code(exc.status_code), exc.message, errors=exc.errors or None
    )


@router.post(
    "/check",
    response_model=BenchmarkCheckPublic,
    responses=errors(400, 404, 422),
)
def check_benchmark(
    body: BenchmarkCheck, session: SessionDep, _: CurrentUser
) -> BenchmarkCheckPublic:
    """Dry run of `POST /benchmarks`: check targets before (or without) uploading a model.

    The same rules as `POST /benchmarks` (runtime, precision and options of each target; a
    registered device matching the selector that offers the runtime; a converter where the
    runtime needs a conversion of `model_format` or of the stored `model_id`). 200: every
    target is accepted, with the devices that could take it; 422: the message
    `POST /benchmarks` would give in `detail` (the first refused target) and every refused
    target in `errors`. Nothing is created."""
    try:
        return store.check_benchmark(session, body)
    except store.BenchmarkRejected as exc:
        raise _refused(exc) from exc


@router.get("", response_model=list[BenchmarkPublic], responses=errors(422))
def list_benchmarks(
    session: SessionDep,
    _: CurrentUser,
    model_id: Id | None = None,
    limit: int = Query(200, ge=1, le=2000),
) -> list[BenchmarkPublic]:
    """List benchmarks, newest first (optionally of one model)."""
    return [
        store.benchmark_public(session, b) for b in store.list_benchmarks(session, model_id, limit)
    ]


@router.get("/{bench_id}", response_model=BenchmarkPublic, responses=errors(404, 422))
def get_benchmark(bench_id: Id, session: SessionDep, _: CurrentUser) -> BenchmarkPublic:
    """A benchmark with its jobs (status, progress) and results."""
    bench = store.get_benchmark(session, bench_id)
    if bench is None:
        raise HTTPException(404, f"benchmark {bench_id} does not exist")
    return store.benchmark_public(session, bench)


def _series(session: SessionDep, bench_id: int, result_id: int) -> ResultSeries:
    if store.get_result(session, bench_id, result_id) is None:
        raise HTTPException(404, f"benchmark {bench_id} has no result {result_id}")
    series = store.get_series(session, result_id)
    if series is None:
        raise HTTPException(404, f"result {result_id} has no stored series")
    return series


@router.get(
    "/{bench_id}/results/{result_id}/raw", response_model=RawTimes, responses=errors(404, 422)
)
def get_raw(bench_id: Id, result_id: Id, session: SessionDep, _: CurrentUser) -> RawTimes:
    """Every measured steady-state iteration time (ms), in order; warmup times apart."""
    series = _series(session, bench_id, result_id)
    return store.raw_times(session, result_id, series)


@router.get(
    "/{bench_id}/results/{result_id}/profile",
    response_model=ProfilePublic,
    responses=errors(404, 422),
)
def get_profile(bench_id: Id, result_id: Id, session: SessionDep, _: CurrentUser) -> ProfilePublic:
    """Per-layer times from the runtime's profiler (a separate pass after the steady state)."""
    series = _series(session, bench_id, result_id)
    if not series.profile:
        raise HTTPException(404, f"result {result_id} has no per-layer profile")
    return ProfilePublic(layers=[LayerProfile(**p) for p in series.profile])
