"""Repeated measurements in fresh processes and quality flags, end to end on the real
coordinator and agent (SQLite and PostgreSQL): between-run figures, pooled raw times, flags
forced by settings and by a busy host, shown by /benchmarks/{id} and /pareto (hide_flagged),
and flags computed on read for results stored before the column existed."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from agents.measure.repeats import pool
from latencylab.quality import RepeatRun, between_runs
from latencylab.schemas import LatencyStats, MeasureResult
from tests.conftest import FAST, Live


def _upload(live: Live, path: Path, top1: float) -> int:
    with live.client() as c:
        name = f"q-{uuid.uuid4().hex[:6]}"
        return c.upload_model(path, name=name, metadata={"accuracy": {"top1": top1}}).id


def test_pool_concatenates_repeats_in_order() -> None:
    def one(times: list[float], reason: str, rss: float) -> MeasureResult:
        lat = LatencyStats(min=min(times), mean=statistics.fmean(times), p50=statistics.median(times),
                           p90=None, p95=None, p99=None, max=max(times), std=None)  # fmt: skip
        return MeasureResult(status="succeeded", latency_ms=lat, runs=len(times), times_ms=times,
                             warmup_ms=[9.0], stop_reason=reason, load_ms=rss, memory={"peak_rss_mb": rss},
                             environment={"pid": int(rss)}, warnings=["w"] if reason != "ci_converged" else [])  # fmt: skip

    parts = [[1.0, 1.1, 1.2], [2.0, 2.1], [1.5, 1.6, 1.7, 1.8]]
    out = pool([one(p, r, m) for p, r, m in zip(parts, ["ci_converged", "max_duration", "ci_converged"], [10.0, 30.0, 20.0], strict=True)])  # fmt: skip
    assert out.times_ms == [t for p in parts for t in p] and out.runs == 9
    assert out.warmup_ms == [9.0, 9.0, 9.0] and out.stop_reason == "max_duration"
    assert out.memory == {"peak_rss_mb": 30.0} and out.load_ms == 20.0
    assert out.warnings == ["repeat 2: w"]
    assert out.repeats is not None and [r.runs for r in out.repeats.runs] == [3, 2, 4]
    assert [r.pid for r in out.repeats.runs] == [10, 30, 20]
    assert out.repeats.p50_spread == 2.05 / 1.1 - 1
    assert out.latency_ms is not None and out.latency_ms.p50 == statistics.median(out.times_ms)


def test_a_report_whose_repeats_do_not_cover_its_times_is_refused() -> None:
    summary = between_runs([RepeatRun(index=0, runs=2, p50_ms=1.0, mean_ms=1.0),
                            RepeatRun(index=1, runs=2, p50_ms=1.1, mean_ms=1.1)])  # fmt: skip
    lat = LatencyStats(min=1.0, mean=1.0, p50=1.0, p90=None, p95=None, p99=None, max=1.1, std=None)
    ok = {"status": "succeeded", "latency_ms": lat, "runs": 4, "repeats": summary}
    assert MeasureResult(**ok, times_ms=[1.0, 1.0, 1.1, 1.1]).repeats == summary
    with pytest.raises(ValueError, match=r"repeats\.runs add up to 4 runs but times_ms holds 3"):
        MeasureResult(**ok, times_ms=[1.0, 1.0, 1.1])


def test_repeats_run_in_fresh_processes_and_report_between_run_figures(
    live: Live, model_files: dict[str, Path]
) -> None:
    model_id = _upload(live, model_files["mlp"], 50.0)
    with live.client() as c:
        bench = c.benchmark(model_id, [{"runtime": "onnxruntime", "device": "local"}],
                            {**FAST, "repeats": 3})  # fmt: skip
        done = c.wait(bench.id, timeout=240)
        assert done.status == "succeeded", done.jobs
        (r,) = done.results
        raw = c.raw_times(bench.id, r.id)
    rep = r.repeats
    assert rep is not None and rep.count == 3 and [x.index for x in rep.runs] == [0, 1, 2]
    assert len({x.pid for x in rep.runs}) == 3  # three distinct fresh processes
    assert all(x.runs >= FAST["min_runs"] and x.host_load for x in rep.runs)
    # the pooled raw times: one per run of each repeat, in repeat order
    assert len(raw.times_ms) == r.runs == sum(x.runs for x in rep.runs)
    assert raw.repeat_runs == [x.runs for x in rep.runs]
    assert len(raw.warmup_ms) == 3 * FAST["warmup_runs"]
    at = 0
    for x in rep.runs:  # each repeat's own median, recomputed from its slice of the raw times
        assert x.p50_ms == pytest.approx(statistics.median(raw.times_ms[at : at + x.runs]))
        at += x.runs
    medians = [x.p50_ms for x in rep.runs]
    assert all(m is not None for m in medians)
    ms = [float(m) for m in medians if m is not None]
    assert rep.p50_spread == max(ms) / min(ms) - 1
    assert abs(rep.p50_cov - statistics.stdev(ms) / statistics.fmean(ms)) < 1e-12
    assert rep.p50_ci95_low is not None and rep.p50_ci95_high is not None
    assert rep.p50_ci95_low <= statistics.fmean(ms) <= rep.p50_ci95_high
    assert r.mode == "custom"  # FAST + repeats matches no preset
    codes = {f.code for f in r.flags}
    assert "within_process_ci" not in codes  # several processes: the CI spans runs
    assert r.latency_ms is not None
    assert r.latency_ms.p50 == pytest.approx(statistics.median(raw.times_ms))


def test_forced_flags_show_in_the_result_and_on_the_pareto_front(
    live: Live, model_files: dict[str, Path]
) -> None:
    model_id = _upload(live, model_files["mlp"], 51.0)
    # A steady state capped at 0.1 s, far below min_runs and a CI target it cannot reach.
    short = {**FAST, "min_runs": 100_000, "min_duration_s": 0.0, "max_duration_s": 0.1,
             "target_rel_ci": 0.0001}  # fmt: skip
    with live.client() as c:
        done = c.wait(c.benchmark(model_id, [{"runtime": "onnxruntime"}], short).id, timeout=180)
    assert done.status == "succeeded", done.jobs
    with live.http(live.user_token) as h:
        body = h.get(f"/benchmarks/{done.id}").json()
        (r,) = body["results"]
        flags = {f["code"]: f for f in r["flags"]}
        assert r["stop_reason"] == "max_duration" and r["mode"] == "custom"
        assert flags["too_few_runs"]["severity"] == "warning"
        assert f"{r['runs']}" in flags["too_few_runs"]["message"]
        assert flags["too_few_runs"]["threshold"] == 100_000
        assert flags["ci_not_converged"]["severity"] == "warning"
        assert "max_duration" in flags["ci_not_converged"]["message"]
        assert flags["within_process_ci"]["severity"] == "info"

        params = {"device": live.agent_name, "runtime": "onnxruntime", "model_ids": model_id}
        shown = h.get("/pareto", params=params).json()
        (point,) = shown["points"]
        assert point["result_id"] == r["id"] and point["mode"] == "custom"
        assert {f["code"] for f in point["flags"]} >= {"too_few_runs", "ci_not_converged"}
        hidden = h.get("/pareto", params={**params, "hide_flagged": "true"}).json()
        assert hidden["points"] == [] and hidden["front"] == [] and hidden["hidden_flagged"] == 1
        assert h.get("/pareto", params={**params, "hide_flagged": "maybe"}).status_code == 422


def test_a_busy_host_is_flagged_and_recorded(live: Live, model_files: dict[str, Path]) -> None:
    model_id = _upload(live, model_files["mlp"], 52.0)
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        with live.client() as c:
            done = c.wait(c.benchmark(model_id, [{"runtime": "onnxruntime"}], FAST).id, 180)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert done.status == "succeeded", done.jobs
    (r,) = done.results
    host = r.environment["host_load"]
    assert host["method"] == "psutil" and host["other_share"] >= 0.25, host
    busy = next(f for f in r.flags if f.code == "busy_host")
    assert busy.severity == "warning" and "other processes used" in busy.message


def test_flags_of_results_stored_before_are_computed_on_read(
    live: Live, model_files: dict[str, Path]
) -> None:
    model_id = _upload(live, model_files["mlp"], 53.0)
    with live.client() as c:
        done = c.wait(c.benchmark(model_id, [{"runtime": "onnxruntime"}], FAST).id, 180)
    assert done.status == "succeeded", done.jobs
    (before,) = done.results
    engine = create_engine(live.database_url)
    try:
        with engine.begin() as db:  # as a result stored before migration 0006 looks
            db.execute(text("UPDATE results SET quality = NULL WHERE id = :id"), {"id": before.id})
        with live.client() as c:
            (after,) = c.get_benchmark(done.id).results
        assert after.flags == before.flags and after.mode == before.mode == "quick"
        with engine.connect() as db:
            kept = db.execute(
                text("SELECT quality FROM results WHERE id = :id"), {"id": before.id}
            ).scalar()
        assert kept is not None  # computed once, then kept
    finally:
        engine.dispose()
