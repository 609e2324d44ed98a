from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, status

from db.models import ResultSeries
from latencylab.schemas import (
    BenchmarkCreate,
    BenchmarkPublic,
    LayerProfile,
    ProfilePublic,
    RawTimes,
)
from server.deps import CurrentUser, SessionDep, StateDep
from server.store import benchmarks as store

router = APIRouter(prefix="/benchmarks", tags=["benchmarks"])


@router.post("", response_model=BenchmarkPublic, status_code=status.HTTP_202_ACCEPTED)
def create_benchmark(
    body: BenchmarkCreate, session: SessionDep, state: StateDep, token: CurrentUser
) -> BenchmarkPublic:
    """Queue one measurement job per target; devices pick them up."""
    try:
        bench = store.create_benchmark(session, body, token.id, state.settings.max_attempts)
    except store.BenchmarkRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    session.refresh(bench)
    return store.benchmark_public(session, bench)


@router.get("", response_model=list[BenchmarkPublic])
def list_benchmarks(
    session: SessionDep,
    _: CurrentUser,
    model_id: int | None = None,
    limit: int = Query(200, ge=1, le=2000),
) -> list[BenchmarkPublic]:
    """List benchmarks, newest first (optionally of one model)."""
    return [
        store.benchmark_public(session, b) for b in store.list_benchmarks(session, model_id, limit)
    ]


@router.get("/{bench_id}", response_model=BenchmarkPublic)
def get_benchmark(bench_id: int, session: SessionDep, _: CurrentUser) -> BenchmarkPublic:
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


@router.get("/{bench_id}/results/{result_id}/raw", response_model=RawTimes)
def get_raw(bench_id: int, result_id: int, session: SessionDep, _: CurrentUser) -> RawTimes:
    """Every measured steady-state iteration time (ms), in order; warmup times apart."""
    series = _series(session, bench_id, result_id)
    return RawTimes(times_ms=series.times_ms, warmup_ms=series.warmup_ms)


@router.get("/{bench_id}/results/{result_id}/profile", response_model=ProfilePublic)
def get_profile(
    bench_id: int, result_id: int, session: SessionDep, _: CurrentUser
) -> ProfilePublic:
    """Per-layer times from the runtime's profiler (a separate pass after the steady state)."""
    series = _series(session, bench_id, result_id)
    if not series.profile:
        raise HTTPException(404, f"result {result_id} has no per-layer profile")
    return ProfilePublic(layers=[LayerProfile(**p) for p in series.profile])
