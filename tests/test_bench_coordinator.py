"""The coordinator load benchmark (bench/coordinator.py) on tiny settings: a real coordinator
subprocess, real simulated agents over HTTP, the database audited afterwards; and its
double-lease detector on hand-made lease logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from bench.coordinator import RunConfig, run_one
from bench.coordinator_env import NotLoopback, private_postgres
from bench.coordinator_report import lease_overlaps, table
from bench.fleet_sim import LeaseEvent, ReportEvent
from tests.conftest import PG_URL

AGENTS, JOBS = 4, 40


def _check_accounting(report: dict) -> None:
    run, audit = report["run"], report["audit"]
    assert not run["collapsed"]
    assert report["enqueue"]["jobs"] == JOBS
    assert run["jobs_reported"] == JOBS
    assert audit["jobs_in_db"] == JOBS and audit["jobs_missing"] == 0
    assert audit["status"] == {"succeeded": JOBS}
    assert audit["results"] == JOBS and audit["results_failed"] == 0
    assert audit["not_finished"] == 0
    assert audit["attempts_over_max"] == 0
    assert audit["jobs_with_several_results"] == 0
    assert audit["results_not_from_last_lessee"] == 0
    assert audit["results_not_from_job_holder"] == 0
    assert report["leases"]["double_leases"] == 0
    assert report["leases"]["second_device_before_expiry"] == 0
    assert report["reports_201_twice"] == 0
    assert report["status_codes"]["lease"]["200"] == run["lease_200"] == JOBS
    assert report["status_codes"]["report"] == {"201": JOBS}
    assert report["status_codes"]["register"] == {"200": AGENTS}
    assert sum(report["completions_per_s"]) == JOBS
    assert run["phase_reached"] == "run"
    assert 0 < run["wall_s"] <= run["phase_s"] and run["jobs_per_s"] > 0
    lat = report["latency_ms"]
    assert lat["lease"]["n"] >= JOBS and 0 < lat["lease"]["p50"] <= lat["lease"]["p99"]
    assert lat["report"]["n"] == JOBS and 0 < lat["report"]["p50"] <= lat["report"]["p99"]
    assert report["server_log"].get("tracebacks", 0) == 0
    assert f"| {report['config']['backend']} | 1 | {AGENTS} | {JOBS} | {JOBS} |" in table([report])


def test_sqlite_run_accounts_for_every_job() -> None:
    report = run_one(RunConfig(backend="sqlite", agents=AGENTS, jobs=JOBS, timeout_s=60))
    _check_accounting(report)
    assert report["coordinator_mode"] == "single"


@pytest.mark.postgres
def test_postgres_run_accounts_for_every_job(postgres_database: str) -> None:
    # the fixture only proves the server is reachable (or skips/fails as the suite does);
    # the benchmark creates and drops a private database of its own through ``test``
    cfg = RunConfig(backend="postgres", agents=AGENTS, jobs=JOBS, timeout_s=60, postgres_url=PG_URL)
    _check_accounting(run_one(cfg))


def test_config_rejects_unknown_keys_and_remote_postgres() -> None:
    with pytest.raises(ValidationError, match="agentz"):
        RunConfig.model_validate({"agentz": 3})
    with (
        pytest.raises(NotLoopback),
        private_postgres("postgresql+psycopg://postgres@db.example.org:5432/test"),
    ):
        pass


def _lease(job: int, device: str, attempt: int, at_s: float, lease_s: float = 60) -> LeaseEvent:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    got = t0 + timedelta(seconds=at_s)
    return LeaseEvent(job, device, attempt, int(at_s * 1e9), got, got + timedelta(seconds=lease_s))


def _report(job: int, device: str, sent_s: float) -> ReportEvent:
    return ReportEvent(job, device, 201, int(sent_s * 1e9), int((sent_s + 0.01) * 1e9))


def test_lease_overlaps_tells_double_leases_from_requeues() -> None:
    leases = [
        _lease(1, "a", 1, 0.0),  # job 1: b gets it while a holds a live lease: double
        _lease(1, "b", 2, 1.0),
        _lease(2, "a", 1, 0.0, lease_s=5),  # job 2: a's lease expired at 5 s: a requeue
        _lease(2, "b", 2, 6.0),
        _lease(3, "a", 1, 0.0),  # job 3: a had sent its report, then c got it: not double,
        _lease(3, "c", 1, 2.0),  # but still a live lease given to a second device (same attempt)
        _lease(4, "a", 1, 0.0, lease_s=1),  # job 4: the same device again after expiry: fine
        _lease(4, "a", 2, 3.0),
    ]
    reports = [_report(3, "a", 1.0), _report(1, "a", 5.0)]
    assert lease_overlaps(leases, reports) == {
        "double_leases": 1,
        "second_device_before_expiry": 2,
        "requeued_after_expiry": 1,
        "same_attempt_twice": 1,
    }
